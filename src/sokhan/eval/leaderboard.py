"""The leaderboard: every trained run on one scale, bits per character of the same held-out text.

For each run folder: family, size, training tokens, wall time and throughput (from its
checkpoint), and the bits per character of its data's whole validation split, scored
exactly (every token once, each family the way it reads; see `sequence_nll`). A masked-LM
encoder has no left-to-right likelihood, so it reports masked-token loss and accuracy in
columns of its own. The figures are cached in the run folder, keyed by checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from sokhan.api import LanguageModel
from sokhan.data.shards import TokenData
from sokhan.errors import SokhanError
from sokhan.eval.bpc import bits_per_char, sequence_nll
from sokhan.inspect.curves import read_metrics
from sokhan.train.checkpoint import resolve_model_dir

CACHE = "leaderboard.json"


@dataclass
class RunSummary:
    run: str
    family: str
    size: str                    # layers × width, or the n-gram order
    parameters: int              # weights; for an n-gram, stored n-gram entries
    tokens: int                  # training tokens seen (an n-gram: counted once)
    seconds: float               # training wall time
    val_bpc: float | None        # causal families: bits per character of the whole val split
    masked_loss: float | None    # bert: masked-token cross-entropy (nats) on val
    masked_accuracy: float | None
    checkpoint: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.inf

    @property
    def train_flops(self) -> float | None:
        """≈ 6 · parameters · tokens (forward + backward; Kaplan et al. 2020); None for counted models."""
        return None if self.family == "ngram" else 6.0 * self.parameters * self.tokens


def summarize(run_dir: str | Path, device: str = "auto") -> RunSummary:
    run_dir = Path(run_dir)
    folder = resolve_model_dir(run_dir)
    cache = run_dir / CACHE
    if cache.is_file():
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("checkpoint") == str(folder):
            return RunSummary(**data)
    lm = LanguageModel.load(folder, device=device)
    cfg, progress = lm.model.config, lm.config.get("progress", {})
    data_dir = lm.config.get("train", {}).get("data")
    if not data_dir or not Path(data_dir).is_dir():
        raise SokhanError(f"{run_dir}: its data folder {data_dir!r} is gone; the leaderboard scores its val split")
    size = f"order {cfg.order}" if cfg.family == "ngram" else f"{cfg.n_layer}×{cfg.n_embd}"
    val_bpc = masked_loss = masked_accuracy = None
    if cfg.family == "bert":
        row = last_val_row(run_dir)
        masked_loss, masked_accuracy = row.get("loss"), row.get("accuracy")
    else:
        val = TokenData(data_dir, "val")
        nll, _ = sequence_nll(lm.model, np.asarray(val.tokens), cfg.block_size)
        val_bpc = bits_per_char(nll, val.num_chars)
    summary = RunSummary(run_dir.name, cfg.family, size, int(lm.model.num_parameters()), int(progress.get("tokens", 0)),
                         float(progress.get("elapsed", 0.0)), val_bpc, masked_loss, masked_accuracy, str(folder))
    cache.write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    return summary


def last_val_row(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    vals = [r for r in read_metrics(path) if r.get("split") == "val"] if path.is_file() else []
    if not vals:
        raise SokhanError(f"{run_dir} has no validation row in metrics.jsonl")
    return vals[-1]


def table(summaries: list[RunSummary], title: str = "leaderboard") -> Table:
    """Causal families first, best bits per character on top; masked encoders after, in their own columns."""
    t = Table(title=title)
    for name in ("run", "family", "size", "params", "tokens", "time", "tok/s", "val bpc", "MLM loss", "MLM acc"):
        t.add_column(name, justify="left" if name in ("run", "family", "size") else "right", no_wrap=True)
    for s in sort_runs(summaries):
        t.add_row(s.run, s.family, s.size, short(s.parameters), short(s.tokens), seconds(s.seconds),
                  short(s.tokens_per_s), fmt(s.val_bpc, 3), fmt(s.masked_loss, 3), fmt(s.masked_accuracy, 3))
    return t


def seconds(t: float) -> str:
    return f"{t:.0f}s" if t >= 10 else f"{t:.2f}s"


def short(n: float) -> str:
    """1234567 → 1.2M: a count that fits a narrow terminal column."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def markdown(summaries: list[RunSummary]) -> str:
    head = ("| run | family | size | parameters | train tokens | wall time | tokens/s | val bits/char | "
            "masked loss | masked acc. |")
    lines = [head, "|" + "---|" * 10]
    for s in sort_runs(summaries):
        lines.append(f"| {s.run} | {s.family} | {s.size} | {s.parameters:,} | {s.tokens:,} | {seconds(s.seconds)} | "
                     f"{s.tokens_per_s:,.0f} | {fmt(s.val_bpc, 3)} | {fmt(s.masked_loss, 3)} | "
                     f"{fmt(s.masked_accuracy, 3)} |")
    return "\n".join(lines) + "\n"


def sort_runs(summaries: list[RunSummary]) -> list[RunSummary]:
    return sorted(summaries, key=lambda s: (s.val_bpc is None, s.val_bpc or 0.0, s.masked_loss or 0.0))


def fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def plot(summaries: list[RunSummary], path: str | Path, title: str = "bits per character on held-out text") -> Path:
    """Bits/char against training compute (≈6·N·D FLOPs) and against wall time; one point per run.

    Counted n-gram models have no FLOP figure: on the compute panel they are dashed
    horizontal lines, so each network can be read against the count-based baselines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    causal = [s for s in summaries if s.val_bpc is not None]
    if not causal:
        raise SokhanError("no left-to-right model among the runs: nothing to plot in bits per character")
    fig, (ax_flops, ax_time) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    colors = {"ngram": "tab:gray", "rnn": "tab:orange", "lstm": "tab:green", "gru": "tab:olive", "gpt": "tab:blue"}
    for s in causal:
        color = colors.get(s.family, "tab:purple")
        if s.train_flops is None:
            ax_flops.axhline(s.val_bpc, color=color, linestyle="--", linewidth=0.8)
            ax_flops.annotate(s.run, (0.01, s.val_bpc), xycoords=("axes fraction", "data"), fontsize=8, color=color,
                              va="bottom")
        else:
            ax_flops.scatter(s.train_flops, s.val_bpc, color=color, s=40, zorder=3)
            ax_flops.annotate(s.run, (s.train_flops, s.val_bpc), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax_time.scatter(max(s.seconds, 1e-2), s.val_bpc, color=color, s=40, zorder=3)
        ax_time.annotate(s.run, (max(s.seconds, 1e-2), s.val_bpc), textcoords="offset points", xytext=(5, 4),
                         fontsize=8)
    ax_flops.set_xscale("log")
    ax_flops.set_xlabel("training compute ≈ 6 · parameters · tokens (FLOPs)")
    ax_flops.set_ylabel("validation bits per character (lower is better)")
    ax_time.set_xscale("log")
    ax_time.set_xlabel("training wall time (s)")
    for ax in (ax_flops, ax_time):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
