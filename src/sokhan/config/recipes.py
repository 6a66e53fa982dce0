"""Configs of the two main jobs: the demo (the whole story on Hafez) and the zoo (every family, one table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option
from sokhan.config.data import check_bpe_vocab
from sokhan.config.model import MAX_BLOCK, MAX_NGRAM_ORDER, MAX_VOCAB, PRESETS
from sokhan.config.train import DEVICE_HELP, check_device

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
    budget: float = option(120.0, "seconds of training per neural network", low=0, low_open=True)
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
