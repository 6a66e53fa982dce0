"""Recipe: the second main job. Language modeling as a history, measured on one scale.

On the embedded Divan of Hafez, with no network: count n-grams of a few orders, then train
a plain RNN, an LSTM, a GRU, a GPT and a BERT-style encoder — each neural family on the same
number of training tokens, on the same data and tokenizer, with the same engine — and print
the leaderboard of bits per character on the same held-out text, with its plot.

The budget is tokens, not seconds, so that the table is the same on every machine: a
two-minute budget gave a GPT 3.6M tokens on one 2-core CPU and 2.1M on another, and the
order of the families changed with the CPU (and with a neighbour's load). In whole steps
and with the learning rate's cosine by steps, a run with the same seed and thread count
takes the same steps on every CPU; wall time and tokens/s stay in the table as what this
machine did, with the machine named. `--budget SECONDS` trains for a time instead.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from sokhan.config import PrepareConfig, TrainConfig, ZooConfig
from sokhan.data.prepare import prepare
from sokhan.eval.leaderboard import RunSummary, summarize, write_leaderboard
from sokhan.recipes.pretrain import pretrain

# One model per family and its training settings: every option that shapes the network is spelled
# out (the default preset fills the rest, which none of these families reads). Sizes and learning rates
# were picked by a one-minute sweep on this corpus and a 2-core CPU when the zoo's budget was time
# (README, "The zoo"): at a budget of minutes throughput decides, so one recurrent layer beats two, and
# dropout (which also turns off the fused attention kernel on a CPU) only slows the Transformers down.
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "rnn": (dict(family="rnn", n_layer=1, n_embd=256, dropout=0.0), dict(lr=2e-3, batch_size=32)),
    "lstm": (dict(family="lstm", n_layer=1, n_embd=256, dropout=0.1), dict(lr=3e-3, batch_size=32)),
    "gru": (dict(family="gru", n_layer=1, n_embd=256, dropout=0.1), dict(lr=3e-3, batch_size=32)),
    # RoPE: with learned positions a small BERT learns little beyond letter frequencies in minutes.
    "gpt": (dict(family="gpt", n_layer=4, n_head=4, n_embd=128, positional="rope", dropout=0.0),
            dict(lr=2e-3, batch_size=16)),
    "bert": (dict(family="bert", n_layer=4, n_head=4, n_embd=128, positional="rope", dropout=0.0),
             dict(lr=1e-3, batch_size=16)),
}


def run_zoo(cfg: ZooConfig, console: Console) -> list[RunSummary]:
    out = Path(cfg.out_dir)
    console.rule("[bold]prepare: the same text, the same tokenizer, for every family")
    data = prepare(PrepareConfig(source=cfg.source, out_dir=str(out / "data"), tokenizer=cfg.tokenizer,
                                 vocab_size=cfg.vocab_size, seed=cfg.seed), progress=cfg.progress)
    runs = []
    for order in cfg.orders:
        console.rule(f"[bold]counting: a {order}-gram model, modified Kneser-Ney")
        runs.append(train_one(cfg, data, out / f"ngram-{order}", dict(family="ngram", order=order), {}, console))
    budget = f"{cfg.budget:g} seconds" if cfg.budget else f"{cfg.tokens:,} tokens"
    for family in cfg.families:
        console.rule(f"[bold]{family}: {budget} of training")
        runs.append(train_one(cfg, data, out / family, *RECIPES[family], console))
    console.rule("[bold]leaderboard: bits per character of the same held-out text")
    summaries = [summarize(run, device=cfg.device) for run in runs]
    write_leaderboard(summaries, out, console, f"sokhan zoo: {cfg.source}, {cfg.tokenizer} tokens, "
                                             f"{budget} of training per network")
    return summaries


def train_one(cfg: ZooConfig, data: Path, run_dir: Path, model: dict[str, Any], train: dict[str, Any],
              console: Console) -> Path:
    if run_dir.exists():  # a fresh zoo each time: never mix two runs
        shutil.rmtree(run_dir)
    lr = train.get("lr", 1e-3)
    batch_size = cfg.batch_size or train.get("batch_size", 16)
    # a time budget: steps without end, the cosine by time; else the steps that read `tokens` (one at least)
    steps = 1_000_000 if cfg.budget else math.ceil(cfg.tokens / (batch_size * cfg.block_size))
    train_cfg = TrainConfig(data=str(data), out_dir=str(run_dir), batch_size=batch_size, max_steps=steps,
                            max_time=cfg.budget, lr=lr, min_lr=lr / 10, warmup_steps=50, eval_interval=500,
                            eval_iters=10, device=cfg.device, seed=cfg.seed, progress=cfg.progress, keep_checkpoints=1)
    result = pretrain(train_cfg, dict(model, block_size=cfg.block_size), console)
    if result.interrupted:  # Ctrl-C stops the zoo, not only this run (its checkpoint is saved)
        raise KeyboardInterrupt
    return result.run_dir
