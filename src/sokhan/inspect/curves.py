"""Training curves: loss and bits per character against steps (and tokens), from runs' metrics.jsonl.

`plot_curves` puts one or several runs on one figure (`sokhan inspect curves`), against
optimizer steps and against training tokens, since runs with different batch sizes only
compare on the latter; `draw_loss_curve` is a run's own loss.png, which the recipes redraw
at every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sokhan.errors import SokhanError
from sokhan.inspect.picture import XY, Picture, Series
from sokhan.inspect.save import save_picture
from sokhan.models.checkpoint import read_config, resolve_model_dir
from sokhan.train.metrics import read_metrics
from sokhan.units import bits_per_char


@dataclass
class RunCurves:
    """One run's logged figures; val_bpc is NaN where the task has none (BERT, fine-tuning)."""

    name: str
    train: dict[str, np.ndarray]   # step, tokens, loss, bpc (bpc: NaN unless the run reports bits/char)
    val: dict[str, np.ndarray]     # step, tokens, loss, bpc


def _train_split(run: Path) -> tuple[int, int] | None:
    """(tokens, characters) of the run's train split, from its config, to put train loss on the bits/char scale."""
    try:
        split = read_config(resolve_model_dir(run)).get("data", {}).get("splits", {}).get("train", {})
    except SokhanError:
        return None
    tokens, chars = split.get("tokens"), split.get("chars")
    return (tokens, chars) if tokens and chars else None


def read_run(run: str | Path, name: str | None = None) -> RunCurves:
    """A run folder's metrics.jsonl as arrays. Train bits/char convert the train loss as the engine converts
    the val loss (on the split's own tokens and characters), for runs whose val rows report bits/char."""
    folder = Path(run)
    if not folder.is_dir():
        raise SokhanError(f"no such run folder: {folder}")
    rows = read_metrics(folder)

    def columns(split: str) -> dict[str, np.ndarray]:
        picked = [r for r in rows if r.get("split") == split]
        for r in picked:  # the engine's estimate (random windows) and a counted model's exact figure share the plot
            r.setdefault("bpc", r.get("bpc_estimate"))
        return {key: np.array([np.nan if r.get(key) is None else float(r[key]) for r in picked], dtype=np.float64)
                for key in ("step", "tokens", "loss", "bpc")}

    train, val = columns("train"), columns("val")
    split = _train_split(folder)
    if np.isfinite(val["bpc"]).any() and split:
        tokens, chars = split
        train["bpc"] = bits_per_char(train["loss"] * tokens, chars)
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


def curves_picture(runs: list[RunCurves], title: str, against: tuple[str, ...] = ("step", "tokens")) -> Picture:
    """Loss and bits per character against optimizer steps and (or) training tokens, a colour per run."""
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
    panels = [panel("loss", x, nats) for x in against]
    if any(np.isfinite(r.val["bpc"]).any() for r in runs):
        panels += [panel("bpc", x, "bits per character (val: estimate, random windows)") for x in against]
    return Picture("curves", title, panels, columns=len(against) if len(panels) > 2 else len(panels),
                   panel_size=(6.4, 4.4))


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
    picture.subtitle = key(curves)
    picture.extra["runs"] = curves
    return save_picture(picture, out_dir)


def draw_loss_curve(run_dir: Path) -> None:
    """A run's own loss.png (and loss.html): loss and bits/char against steps, redrawn at every checkpoint."""
    run = read_run(run_dir)
    picture = curves_picture([run], f"{run_dir.name}: training curve", against=("step",))
    picture.name, picture.subtitle = "loss", key([run])
    save_picture(picture, run_dir)


def key(runs: list[RunCurves]) -> str:
    """What the lines are: the subtitle of every curves picture."""
    if any(np.isfinite(r.train["bpc"]).any() for r in runs):
        return ("solid: training batches; dashed with dots: validation (train bits/char = train loss on the train "
                "split's characters-per-token)")
    return "solid: training batches; dashed with dots: validation"
