"""Training curves: loss and bits per character against steps (and tokens), from runs' metrics.jsonl.

`plot_loss_curve` is the engine's own loss.png, redrawn at every evaluation; `plot_curves`
puts one or several runs on one figure (`sokhan inspect curves`), against optimizer steps and
against training tokens, since runs with different batch sizes only compare on the latter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

from sokhan.errors import SokhanError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from sokhan.inspect.picture import Picture


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


# --- several runs on one figure: `sokhan inspect curves RUN…` ---------------------------------------


@dataclass
class RunCurves:
    """One run's logged figures; val_bpc is NaN where the task has none (BERT, fine-tuning)."""

    name: str
    train: dict[str, np.ndarray]   # step, tokens, loss, bpc (bpc: NaN unless the run reports bits/char)
    val: dict[str, np.ndarray]     # step, tokens, loss, bpc


def _chars_per_token(run: Path) -> float | None:
    """Training characters per token (from the run's config), to put train loss on the bits/char scale."""
    from sokhan.train.checkpoint import read_config, resolve_model_dir

    try:
        split = read_config(resolve_model_dir(run)).get("data", {}).get("splits", {}).get("train", {})
    except SokhanError:
        return None
    tokens, chars = split.get("tokens"), split.get("chars")
    return chars / tokens if tokens and chars else None


def read_run(run: str | Path, name: str | None = None) -> RunCurves:
    """A run folder's metrics.jsonl as arrays. Train bits/char use the engine's own formula for val:
    loss / ln 2 × tokens / characters of the split, and only for runs whose val rows report bits/char."""
    folder = Path(run)
    if not folder.is_dir():
        raise SokhanError(f"no such run folder: {folder}")
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise SokhanError(f"{folder} has no metrics.jsonl (is it a `sokhan train` run folder?)")
    try:
        rows = read_metrics(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SokhanError(f"{path} is not valid JSON lines ({e})") from None

    def columns(split: str) -> dict[str, np.ndarray]:
        picked = [r for r in rows if r.get("split") == split]
        return {key: np.array([np.nan if r.get(key) is None else float(r[key]) for r in picked], dtype=np.float64)
                for key in ("step", "tokens", "loss", "bpc")}

    train, val = columns("train"), columns("val")
    ratio = _chars_per_token(folder)
    if np.isfinite(val["bpc"]).any() and ratio:
        train["bpc"] = train["loss"] / math.log(2) / ratio
    name = name or folder.name
    if any("accuracy" in r for r in rows if r.get("split") == "val"):  # a masked LM's loss is on masked tokens
        name += " (masked tokens)"
    return RunCurves(name, train, val)


def focus(runs: list[RunCurves], metric: str) -> tuple[float, float] | None:
    """A y range for the part worth reading: every validation point, and training after its first tenth
    (the first steps' loss, near ln(vocab), would squash the rest of the curve into a line)."""
    values = [r.val[metric] for r in runs] + [r.train[metric][len(r.train[metric]) // 10:] for r in runs]
    flat = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if flat.size < 2 or flat.max() <= flat.min():
        return None
    pad = 0.06 * (flat.max() - flat.min())
    return float(flat.min() - pad), float(flat.max() + pad)


def curves_picture(runs: list[RunCurves], title: str) -> Picture:
    """Loss and bits per character against optimizer steps and against training tokens, a colour per run."""
    from sokhan.inspect.picture import XY, Picture, Series

    palette = [f"C{i % 10}" for i in range(len(runs))]

    def panel(metric: str, x: str, y_name: str) -> XY:
        series = []
        for run, colour in zip(runs, palette):
            for split, mode, dashed in (("train", "line", False), ("val", "line+markers", True)):
                data = getattr(run, split)
                if np.isfinite(data[metric]).any():
                    # The legend names each run once (by its training line, or its only line).
                    first = split == "train" or not np.isfinite(run.train[metric]).any()
                    series.append(Series(f"{run.name} · {split}", data[x], data[metric], mode, color=colour,
                                         dashed=dashed, legend=first))
        x_name = "optimizer step" if x == "step" else "training tokens seen"
        return XY(series, f"{'loss' if metric == 'loss' else 'bits per character'} against "
                          f"{'steps' if x == 'step' else 'tokens'}", x_name, y_name, y_range=focus(runs, metric))

    nats = "cross-entropy (nats / token)"
    panels = [panel("loss", "step", nats), panel("loss", "tokens", nats)]
    if any(np.isfinite(r.val["bpc"]).any() for r in runs):
        panels += [panel("bpc", "step", "bits per character"), panel("bpc", "tokens", "bits per character")]
    return Picture("curves", title, panels, columns=2, panel_size=(6.4, 4.4))


def unique_names(paths: list[Path]) -> list[str]:
    """Each run's folder name, with as many parent folders as it takes to tell two runs apart."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]  # the same folder twice


def plot_curves(runs: list[str | Path], out_dir: str | Path) -> Picture:
    """Training curves of one or several runs on one figure: curves.png/.html in `out_dir`."""
    if not runs:
        raise SokhanError("name at least one run folder")
    paths = [Path(r) for r in runs]
    names = unique_names(paths)
    curves = [read_run(p, n) for p, n in zip(paths, names)]
    title = "Training curves: " + ", ".join(names)
    picture = curves_picture(curves, title if len(title) < 100 else f"Training curves of {len(names)} runs")
    picture.subtitle = "solid: training batches; dashed with dots: validation (train bits/char = train loss on the " \
                       "train split's characters-per-token)" if any(np.isfinite(c.train["bpc"]).any() for c in curves) \
        else "solid: training batches; dashed with dots: validation"
    picture.extra["runs"] = curves
    return picture.save(out_dir)
