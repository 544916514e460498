"""What a run leaves behind: metrics.jsonl, reward_curve.png and summary.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class MetricsLog:
    """Appends one JSON line per training step (and per evaluation, with "event": "eval").

    `append=True` (a resumed run) goes on after the lines already there."""

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if append else "w")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True, default=float) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def iter_raw_records(path: Path) -> Iterator[tuple[bytes, dict]]:
    """(the line, its record) of a JSON-lines file, one at a time, nothing when it is absent; a
    torn or garbled line (not JSON, or not an object) is skipped: the one reader of the run's
    JSONL files (metrics, audits, spool journals)."""
    try:
        f = Path(path).open("rb")
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield raw, record


def iter_records(path: Path) -> Iterator[dict]:
    """The records of a JSON-lines file, one at a time, as `iter_raw_records`."""
    for _, record in iter_raw_records(path):
        yield record


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl or audit file, all at once ([] when absent)."""
    return list(iter_records(path))


def plot_reward_curve(steps: list[dict], evals: list[dict], path: Path) -> Path:
    """Training reward per key (left) and the run's held-out metric per key (right; the task's
    audience dashed beside it when that is a different figure) over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({k for s in steps for k in s.get("reward_by_key", {})})
    for key in keys:
        xs = [s["step"] for s in steps if key in s.get("reward_by_key", {})]
        ys = [s["reward_by_key"][key] for s in steps if key in s.get("reward_by_key", {})]
        left.plot(xs, _smooth(ys), label=key or "all")
    left.set(title="training reward (smoothed)", xlabel="step", ylabel="reward")
    metric = evals[0].get("metric", "reward") if evals else "reward"
    values = _plot_evals(right, evals, lambda e: e, "o", "")
    audience = [e.get("audience") for e in evals]
    if evals and all(audience):
        values += _plot_evals(right, evals, lambda e: e["audience"], "x", " (audience)", "--")
        metric += f" / {evals[0]['audience']['metric']}"
    right.set(title=f"held-out {metric}", xlabel="step", ylabel=metric)
    if values and all(0 <= v <= 1 for v in values):
        right.set_ylim(0, 1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _plot_evals(ax, evals, pick, marker, suffix, style="-") -> list[float]:
    values = []
    for key in sorted({k for e in evals for k in pick(e)["by_key"]}):
        ys = [pick(e)["by_key"].get(key) for e in evals]
        values += [y for y in ys if y is not None and y == y]
        ax.plot([e["step"] for e in evals], ys, style, marker=marker, label=(key or "all") + suffix)
    return values


def _smooth(values: list[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def write_json(path: Path, data: dict) -> Path:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    return Path(path)
