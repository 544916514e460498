"""What a run leaves behind: metrics.jsonl, reward_curve.png and summary.json."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Appends one JSON line per training step (and per evaluation, with "event": "eval")."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True, default=float) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def plot_reward_curve(steps: list[dict], evals: list[dict], path: Path) -> Path:
    """Training reward per key (left) and held-out like rate per key (right) over steps."""
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
    for key in sorted({k for e in evals for k in e["by_key"]}):
        right.plot(
            [e["step"] for e in evals],
            [e["by_key"].get(key) for e in evals],
            marker="o",
            label=key or "all",
        )
    right.set(title="held-out like rate", xlabel="step", ylabel="expected like rate", ylim=(0, 1))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


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
