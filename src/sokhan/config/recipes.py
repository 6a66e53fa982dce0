"""Configs of the recipes that compose whole jobs: the demo (the whole story on Hafez), the zoo (every family, one
table) and the scaling sweep (GPT sizes × compute budgets, one fit)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option
from sokhan.config.data import check_bpe_vocab
from sokhan.config.model import MAX_BLOCK, MAX_NGRAM_ORDER, MAX_VOCAB, PRESETS, ModelConfig
from sokhan.config.train import DEVICE_HELP, OPTIMIZERS, check_device
from sokhan.errors import SokhanError

ZOO_FAMILIES = ("rnn", "lstm", "gru", "gpt", "bert")  # the networks with a recipe in sokhan.recipes.zoo


@dataclass(frozen=True)
class DemoConfig(Config):
    section: ClassVar[str] = "demo"

    out_dir: str = option("runs/demo", "where the demo writes its data, pretrained model and chat model")
    source: str = option("hafez,fatol-hafez", "the corpus, in any form `sokhan prepare --source` accepts")
    tokenizer: str = option("bpe", "byte-level BPE, or one token per character", choices=("bpe", "char"),
                            what="tokenizer kind")
    vocab_size: int = option(2048, "BPE vocabulary size", low=1, high=MAX_VOCAB)
    preset: str = option("small", "the model to pretrain (see `sokhan train --help`)", choices=tuple(PRESETS),
                         what="model preset")
    # ≈ 15 passes over Hafez; residual dropout 0.1 (the preset's) still helps here
    steps: int = option(2000, "pretraining steps", low=1)
    max_time: float = option(480.0, "seconds of pretraining at most, so the demo fits in ten minutes", low=0)
    batch_size: int = option(16, "sequences per batch, in pretraining and fine-tuning", low=1)
    # AdamW, not the speedrun's Muon (2026-12-06, this corpus, 2 cores): Muon led at short budgets (240 s on one core:
    # 2.431 bits/char against 2.540), but over the demo's whole 2,000 steps AdamW ended lower and sooner: 2.388 in
    # 368 s of training against Muon's (lr 4e-3) 2.410 in 410 s.
    optimizer: str = option("adamw", "pretraining's optimizer (see `sokhan train --help`)", choices=OPTIMIZERS)
    lr: float = option(2e-3, "peak learning rate of pretraining (it decays to a tenth)", low=0, low_open=True)
    eval_interval: int = option(250, "evaluate and save every N pretraining steps", low=1)
    chat_steps: int = option(300, "fine-tuning steps on the Persian dialogs (0: skip the chat model)", low=0)
    device: str = option("auto", DEVICE_HELP)
    seed: int = option(1337, "seed of the data split, the weights, the batches and the samples", low=SEED_MIN,
                       high=SEED_MAX)
    progress: bool = option(True, "show progress bars (on a terminal)")

    def check(self) -> None:
        check_device(self.device)
        check_bpe_vocab(self.tokenizer, self.vocab_size)


@dataclass(frozen=True)
class ZooConfig(Config):
    section: ClassVar[str] = "zoo"

    out_dir: str = option("runs/zoo", "where every run, the data and the leaderboard go")
    source: str = option("hafez,fatol-hafez", "the corpus, in any form `sokhan prepare --source` accepts")
    tokenizer: str = option("char", "the one tokenizer every family shares: character level, or byte-level BPE",
                            choices=("char", "bpe"), what="tokenizer kind")
    vocab_size: int = option(2048, "BPE vocabulary size (tokenizer bpe)", low=1, high=MAX_VOCAB)
    # 3M tokens: the zoo's GPT saw 3.6M in two minutes on the 2-core Xeon (README, "The zoo"); every network reads as
    # many, the slowest (GPT, BERT: ~30k tokens/s there, ~17k on a 2-core EPYC) in about two minutes
    tokens: int = option(3_000_000, "training tokens per neural network, the same for every one (in whole steps): "
                         "the same table on every machine", low=1)
    budget: float = option(0.0, "seconds of training per neural network instead of --tokens (0: off): what this "
                           "machine buys in that time, which differs from machine to machine", low=0)
    families: list[str] = option(help="the networks to train (repeatable, or comma-separated)",
                                 choices=ZOO_FAMILIES, factory=lambda: list(ZOO_FAMILIES), what="zoo family")
    orders: list[int] = option(help="n-gram orders to count (repeatable, or comma-separated)", low=1,
                               high=MAX_NGRAM_ORDER, factory=lambda: [2, 3, 4, 5, 6, 8])
    block_size: int = option(128, "context and BPTT length, the same for every network", low=1, high=MAX_BLOCK)
    batch_size: int = option(0, "sequences per batch; 0: each family's own (see sokhan/recipes/zoo.py)", low=0)
    device: str = option("auto", DEVICE_HELP)
    seed: int = option(1337, "seed of the data split, the weights and the batches", low=SEED_MIN, high=SEED_MAX)
    progress: bool = option(True, "show progress bars (on a terminal)")

    def check(self) -> None:
        check_device(self.device)
        check_bpe_vocab(self.tokenizer, self.vocab_size)


SIZE_PATTERN = re.compile(r"\s*(\d+)\s*[x×]\s*(\d+)\s*")  # layers × width: "4x128" or "4×128"
HEAD_SIZE = 32  # the zoo GPT's 4 heads of 32 at width 128; a width below 64 gets one head


def parse_size(text: str) -> tuple[int, int]:
    """A sweep size, "LAYERSxWIDTH", as (layers, width); anything else is one line naming it."""
    match = SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise SokhanError(f"size '{text}' is not LAYERSxWIDTH (e.g. 4x128)")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class SweepConfig(Config):
    """A scaling sweep: every size trains once at every budget. Budgets are compute, never seconds, so a sweep
    gives the same figures on every machine (with the same seed and thread count); only its wall time differs."""

    section: ClassVar[str] = "sweep"

    out_dir: str = option("runs/sweep", "where every run, the data, sweep.json and the picture go")
    source: str = option("hafez,fatol-hafez", "the corpus, in any form `sokhan prepare --source` accepts")
    tokenizer: str = option("char", "character level, or byte-level BPE", choices=("char", "bpe"),
                            what="tokenizer kind")
    vocab_size: int = option(2048, "BPE vocabulary size (tokenizer bpe)", low=1, high=MAX_VOCAB)
    # 36k, 121k, 367k and 835k parameters on Hafez's 326 characters, each ≈ 3× the last, up to the zoo's GPT. A first
    # grid of 2x64..4x128 at 2e11..6e12 FLOPs had 2x64 best at every budget: the smallest size must be below the
    # optimum for the sweep to find one (Chinchilla's D ≈ 20 N puts it near 30k–160k parameters here).
    sizes: list[str] = option(help="GPT sizes to train, LAYERSxWIDTH (repeatable, or comma-separated; heads of "
                              f"{HEAD_SIZE} dimensions, one head below {2 * HEAD_SIZE} wide; RoPE, no dropout)",
                              factory=lambda: ["2x32", "2x64", "3x96", "4x128"], what="size")
    # 4 sizes × 4 budgets, 1.8e13 FLOPs in all: 12 min 47 s on one core of the 2-core Xeon, shared with other jobs
    # (9.0 CPU-minutes), 2026-12-06; 2x32 best up to 1e12, 2x64 at 3e12, bits/char ≈ 79.1 · C^(−0.119)
    budgets: list[float] = option(help="training compute of each run in FLOPs, ≈ 6 · parameters · tokens (repeatable, "
                                  "or comma-separated): a size trains for budget / (6 · parameters) tokens, in whole "
                                  "steps", low=0, low_open=True, factory=lambda: [1e11, 3e11, 1e12, 3e12])
    block_size: int = option(128, "context of every model, in tokens", low=1, high=MAX_BLOCK)
    batch_size: int = option(16, "sequences per step", low=1)
    lr: float = option(2e-3, "peak learning rate of every run (the zoo GPT's; the cosine ends at a tenth of it "
                       "when the budget does)", low=0, low_open=True)
    device: str = option("auto", DEVICE_HELP)
    seed: int = option(1337, "seed of the data split, the weights and the batches", low=SEED_MIN, high=SEED_MAX)
    progress: bool = option(True, "show progress bars (on a terminal)")

    def check(self) -> None:
        check_device(self.device)
        check_bpe_vocab(self.tokenizer, self.vocab_size)
        # `coerce` splits "a,b" only for lists of numbers: sizes are split here, and each is written 4x128
        shapes = [parse_size(part) for size in self.sizes for part in size.split(",") if part.strip()]
        object.__setattr__(self, "sizes", [f"{layers}x{width}" for layers, width in shapes])  # frozen
        if not shapes:
            raise SokhanError("sizes is empty; name at least one LAYERSxWIDTH, e.g. 4x128")
        if len(set(shapes)) < len(shapes):
            raise SokhanError(f"sizes repeat a size: {', '.join(self.sizes)}")
        if len(set(self.budgets)) < len(self.budgets):
            raise SokhanError(f"budgets repeat a budget: {', '.join(map(str, self.budgets))}")
        if len(self.budgets) < 2:
            raise SokhanError(f"a scaling fit needs two compute budgets or more, got {len(self.budgets)}")
        for size in self.sizes:
            try:
                ModelConfig.create(**self.model(size))
            except SokhanError as e:
                raise SokhanError(f"size {size}: {e}") from None

    def model(self, size: str) -> dict[str, Any]:
        """The `ModelConfig` values of one size: the zoo's GPT recipe (RoPE, no dropout) at that depth and width."""
        layers, width = parse_size(size)
        return dict(family="gpt", n_layer=layers, n_head=max(1, width // HEAD_SIZE), n_embd=width,
                    block_size=self.block_size, positional="rope", dropout=0.0)
