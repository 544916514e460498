"""`rewardloop status RUN_DIR`: a live run's current figures, scraped from its /metrics.

The run records its endpoints in `<RUN_DIR>/endpoints.json` (`learner_metrics`,
`gateway_metrics`); each recorded one is scraped with a deadline and printed as one table:
the `rewardloop_` prefix dropped, histograms as their count and sum (no buckets). Exit 0 when
every recorded endpoint answered; 1, with a message on stderr, when the file is missing, names
no endpoint, or an endpoint does not answer (the run is not running, or not reachable).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rewardloop.metrics import ENDPOINTS_FILE, PREFIX, ScrapeError, fmt, scrape

SOURCES = (("learner_metrics", "learner"), ("gateway_metrics", "gateway"))


def endpoints(run_dir: str | Path) -> dict[str, str]:
    """{"learner": URL, "gateway": URL} of the recorded, enabled /metrics endpoints."""
    path = Path(run_dir) / ENDPOINTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScrapeError(
            f"{path} not found: no run recorded its endpoints in {run_dir} (is it a run directory "
            "of a run that started?)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ScrapeError(f"{path}: unreadable ({exc})") from None
    found = {label: data[key] for key, label in SOURCES if data.get(key)}
    if not found:
        raise ScrapeError(f"{path} names no metrics endpoint (learner.metrics_port=-1?)")
    return found


def rows(source: str, samples: list[tuple[str, dict, float]]) -> list[tuple[str, str, str, str]]:
    """(source, metric, labels, value) table rows; histogram buckets left out."""
    out = []
    for name, labels, value in samples:
        if name.endswith("_bucket"):
            continue
        label_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        out.append((source, name.removeprefix(PREFIX), label_text, fmt(value)))
    return out


def table(lines: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt_row = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {:>" + str(widths[-1]) + "}"
    return "\n".join(fmt_row.format(*r).rstrip() for r in [header, *lines])


def command(run_dir: str, timeout_s: float = 5.0, out=None, err=None) -> int:
    """Print the table to `out` (stdout), problems to `err` (stderr); the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        found = endpoints(run_dir)
    except ScrapeError as exc:
        print(f"error: {exc}", file=err)
        return 1
    lines, failed = [], []
    for source, url in found.items():
        try:
            lines += rows(source, scrape(url, timeout_s))
        except ScrapeError as exc:
            failed.append(f"{source} metrics at {exc}")
    if lines:
        print(table(lines, ("source", "metric", "labels", "value")), file=out)
    for msg in failed:
        print(f"error: {msg} (is the run still running?)", file=err)
    return 1 if failed else 0
