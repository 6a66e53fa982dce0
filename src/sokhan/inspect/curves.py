"""Training curves: loss and bits per character against steps, from a run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path, title: str = "training curve") -> Path:
    """Train loss (every logged step) and val loss (every eval) in nats/token; val bpc on a twin axis."""
    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if r.get("split") == "train"]
    val = [(r["step"], r["loss"], r.get("bpc")) for r in rows if r.get("split") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue", alpha=0.7)
    if val:
        ax.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if val and all(v[2] is not None for v in val):
        ax2 = ax.twinx()
        ax2.plot([v[0] for v in val], [v[2] for v in val], "s--", color="tab:green", label="val bits/char", alpha=0.8)
        ax2.set_ylabel("val bits per character")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
    else:
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return Path(out_png)
