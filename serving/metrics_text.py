"""`GET /metrics` of `rewardloop serve`: counts and gauges in Prometheus' text format.

Names (all prefixed `rewardloop_serve_`): `requests_total`, `choices_total`, `blocked_total`,
`rejected_queue_full_total`, `timeouts_total`, `errors_total`, `unauthenticated_total`,
`in_flight`, `version{role=stable|canary|pinned}`, `canary_decisions_total{action=...}`,
`version_served_total{version}`, `version_live_reward{version}`, and every response-log
counter as `log_total{name=...}` (responses logged, feedback joined, unknown ids, unrated
defaulted or dropped, stale, trained, forgotten). No text, ids or pseudonyms.
"""

from __future__ import annotations

PREFIX = "rewardloop_serve_"


def _line(name: str, value, labels: dict | None = None) -> str:
    label = ""
    if labels:
        label = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return f"{PREFIX}{name}{label} {float(value)}"


def prometheus_text(server) -> str:
    core = server.core
    snap = core.router.snapshot()
    lines = [
        _line("requests_total", core.counts["requests"]),
        _line("choices_total", core.counts["choices"]),
        _line("blocked_total", core.counts["blocked"]),
        _line("in_flight", server.in_flight),
    ]
    lines += [_line(f"{k}_total", v) for k, v in server.counts.items()]
    for role in ("stable", "canary", "pinned"):
        if snap[role] is not None:
            lines.append(_line("version", snap[role], {"role": role}))
    for action, n in snap["counts"].items():
        lines.append(_line("canary_decisions_total", n, {"action": action}))
    for v in snap["versions"]:
        lines.append(_line("version_served_total", v["served"], {"version": v["version"]}))
        if v["live_reward"] is not None:
            lines.append(_line("version_live_reward", v["live_reward"], {"version": v["version"]}))
    for name, n in sorted(core.log.counters().items()):
        lines.append(_line("log_total", n, {"name": name}))
    return "\n".join(lines) + "\n"
