"""Recipe: a scaling sweep. Several GPT sizes, each trained at each of a few compute budgets, one fit.

Budgets are training FLOPs (≈ 6 · parameters · tokens, as the leaderboard counts compute), not
seconds: a size of N parameters trains for budget / (6 · N) tokens, rounded up to whole steps,
with its cosine ending where its budget does (Chinchilla's lesson: a schedule cut short by a
budget it was not set for understates the run). So the figures are the same on every machine
with the same seed and thread count; only the wall time differs. Every run reads the same
prepared data and is scored on the whole validation split (`eval/leaderboard.py: summarize`);
the best run per budget gives the fit of `eval/scaling.py`. Written to out_dir: sweep.json (the
runs and the fit), sweep.md and sweep.png / sweep.html, besides the runs and the data.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sokhan.config import ModelConfig, PrepareConfig, SweepConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.data.shards import load_meta
from sokhan.eval.leaderboard import seconds, short, summarize
from sokhan.eval.scaling import ScalingFit, SweepPoint, fit_scaling, flops_label, scaling_picture
from sokhan.inspect.save import save_picture
from sokhan.models import build_model
from sokhan.recipes.pretrain import pretrain


@dataclass
class SweepRun:
    """One (size, budget) run, as sweep.json and the table list it."""

    run: str
    size: str
    parameters: int
    budget: float       # FLOPs asked for
    steps: int
    tokens: int
    flops: float        # FLOPs spent: 6 · parameters · tokens
    epochs: float       # passes over the train split
    seconds: float      # training wall time
    val_bpc: float

    def point(self) -> SweepPoint:
        return SweepPoint(self.run, self.size, self.budget, self.flops, self.parameters, self.val_bpc)


def run_sweep(cfg: SweepConfig, console: Console) -> tuple[list[SweepRun], ScalingFit]:
    out = Path(cfg.out_dir)
    t0 = time.perf_counter()
    console.rule("[bold]prepare: the same text, the same tokenizer, for every run")
    data = prepare(PrepareConfig(source=cfg.source, out_dir=str(out / "data"), tokenizer=cfg.tokenizer,
                                 vocab_size=cfg.vocab_size, seed=cfg.seed), progress=cfg.progress)
    meta = load_meta(data)
    sizes = sorted(((s, parameters(cfg, s, meta["vocab_size"])) for s in cfg.sizes), key=lambda s: s[1])
    tokens_per_step = cfg.batch_size * cfg.block_size
    runs = []
    for budget in sorted(cfg.budgets):
        for size, n in sizes:
            steps = math.ceil(budget / (6 * n * tokens_per_step))
            name = f"{size}-{flops_label(budget)}"
            console.rule(f"[bold]{name}: {n:,} parameters, {flops_label(budget)} FLOPs = {steps:,} steps "
                         f"of {tokens_per_step:,} tokens")
            summary = summarize(train_run(cfg, data, out / name, size, steps, console), device=cfg.device)
            assert summary.val_bpc is not None and summary.train_flops is not None  # a GPT: causal, trained
            runs.append(SweepRun(name, size, summary.parameters, budget, steps, summary.tokens, summary.train_flops,
                                 summary.tokens / meta["splits"]["train"]["tokens"], summary.seconds,
                                 summary.val_bpc))
    fit = fit_scaling([r.point() for r in runs])
    write_sweep(cfg, runs, fit, out, console, time.perf_counter() - t0)
    return runs, fit


def parameters(cfg: SweepConfig, size: str, vocab_size: int) -> int:
    """The weights of one size on this vocabulary, counted as the leaderboard counts them (the model built)."""
    return build_model(ModelConfig.create(**cfg.model(size), vocab_size=vocab_size)).num_parameters()


def train_run(cfg: SweepConfig, data: Path, run_dir: Path, size: str, steps: int, console: Console) -> Path:
    """One run of `steps` steps, its cosine ending there; evaluated and saved once, at the end."""
    if run_dir.exists():  # a fresh sweep each time: never mix two runs
        shutil.rmtree(run_dir)
    train_cfg = TrainConfig(data=str(data), out_dir=str(run_dir), batch_size=cfg.batch_size, max_steps=steps,
                            lr=cfg.lr, min_lr=cfg.lr / 10, warmup_steps=min(50, steps // 10), eval_interval=steps,
                            eval_iters=5, device=cfg.device, seed=cfg.seed, progress=cfg.progress,
                            keep_checkpoints=1)
    result = pretrain(train_cfg, cfg.model(size), console)
    if result.interrupted:  # Ctrl-C stops the sweep, not only this run (its checkpoint is saved)
        raise KeyboardInterrupt
    return result.run_dir


def write_sweep(cfg: SweepConfig, runs: list[SweepRun], fit: ScalingFit, out: Path, console: Console,
                elapsed: float) -> None:
    """Print the table and the fit; write sweep.json, sweep.md and sweep.png / sweep.html."""
    best = {p.run for p in fit.frontier}
    t = Table(title=f"sokhan sweep: {cfg.source}, {cfg.tokenizer} tokens (* best at its budget)")
    for name in ("run", "parameters", "budget", "steps", "tokens", "epochs", "time", "val bpc"):
        t.add_column(name, justify="left" if name == "run" else "right", no_wrap=True)
    for r in runs:
        t.add_row(r.run, short(r.parameters), flops_label(r.budget), f"{r.steps:,}", short(r.tokens),
                  f"{r.epochs:.2f}", seconds(r.seconds), f"{r.val_bpc:.3f}" + (" *" if r.run in best else "  "))
    wide = Console(file=console.file, width=max(console.width, 120), quiet=console.quiet)  # whole rows, even in a log
    wide.print(t)
    for line in fit_lines(fit):
        console.print(line, highlight=False, soft_wrap=True)
    out.mkdir(parents=True, exist_ok=True)
    record = {"config": cfg.to_dict(), "seconds": round(elapsed, 1), "runs": [asdict(r) for r in runs],
              "fit": fit.to_dict()}
    (out / "sweep.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "sweep.md").write_text(markdown(runs, fit), encoding="utf-8")
    title = f"sokhan sweep: {cfg.source}, {cfg.tokenizer} tokens, GPT {', '.join(dict.fromkeys(r.size for r in runs))}"
    picture = save_picture(scaling_picture([r.point() for r in runs], fit, title), out)
    console.print(f"sweep: {out / 'sweep.json'}   table: {out / 'sweep.md'}   plot: {picture.png} "
                  f"({elapsed:.0f}s in all)", soft_wrap=True)


def fit_lines(fit: ScalingFit) -> list[str]:
    """The fit in words: the law, how well it holds, and the best size at each budget."""
    best = ", ".join(f"{flops_label(p.budget)}: {p.size} ({short(p.parameters)})" for p in fit.frontier)
    return [f"frontier fit: bits/char ≈ {fit.a:.4g} · C^(−{fit.b:.4f}) over {len(fit.frontier)} budgets "
            f"(rms residual {fit.rms_log:.4f} in log2 bits/char)",
            f"compute-optimal size among those trained: {best}; fit N_opt ≈ {fit.k:.3g} · C^{fit.c:.3f}"]


def markdown(runs: list[SweepRun], fit: ScalingFit) -> str:
    best = {p.run for p in fit.frontier}
    lines = ["| run | parameters | budget (FLOPs) | steps | train tokens | epochs | wall time | val bits/char |",
             "|" + "---|" * 8]
    for r in runs:
        bpc = f"**{r.val_bpc:.3f}**" if r.run in best else f"{r.val_bpc:.3f}"
        lines.append(f"| {r.run} | {r.parameters:,} | {flops_label(r.budget)} | {r.steps:,} | {r.tokens:,} | "
                     f"{r.epochs:.2f} | {seconds(r.seconds)} | {bpc} |")
    return "\n".join(lines) + "\n\n" + "\n\n".join(fit_lines(fit)) + "\n\nBold: the best run at its budget.\n"
