"""Configs of training: the engine's `TrainConfig`, fine-tuning's `FinetuneConfig` with its gentler defaults, and
what a fine-tune records to be read back (`LoraConfig`, `ClassifierConfig`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option
from sokhan.errors import SokhanError

LORA_TARGETS = ("qkv", "out", "up", "down")  # the Transformer's linear layers an adapter can wrap
FINETUNE_TASKS = ("chat", "classify")
POOLINGS = ("first", "mean", "last")  # what a classifier's head reads (`sokhan.models.classifier`)
PAIR_TEMPLATES = ("sokhan-pair-v1",)  # how a text or a pair is laid out (`sokhan.text.pair_template`)
PAIR_ENCODINGS = ("joint", "separate")  # a pair read in one pass, or each text alone (`sokhan.models.classifier`)
MAX_LABELS = 65536
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_HELP = "where to run: auto (a GPU if there is one, else the CPU), cpu, cuda, cuda:N or mps"


OPTIMIZERS = ("adamw", "muon")  # `sokhan.train.optim.make_optimizer`
# What a model preset brings to training, below the --config values and flags typed (`sokhan train --preset NAME`):
# the speedrun is a model and its optimizer together (benchmarks/README.md, "speedrun.py", says what each bought).
PRESET_TRAINING: dict[str, dict[str, Any]] = {"speedrun": dict(optimizer="muon", lr=8e-3)}


def check_device(device: str) -> None:
    if not DEVICE_PATTERN.fullmatch(device):
        raise SokhanError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class TrainConfig(Config):
    section: ClassVar[str] = "train"
    moved: ClassVar[dict[str, str]] = {"preset": "a model option: --preset, or preset in the [model] table"}

    data: str = option("runs/data/hafez", "a data folder written by `sokhan prepare`")
    out_dir: str = option("runs/pretrain", "the run folder: checkpoints/, metrics.jsonl, loss.png")
    batch_size: int = option(16, "sequences per micro-batch", low=1)
    grad_accum: int = option(1, "micro-batches per optimizer step (gradient accumulation)", low=1)
    max_steps: int = option(1000, "optimizer steps to train for", low=1)
    lr_decay_steps: int = option(0, "step at which the cosine reaches min_lr; 0: max_steps (on --resume: where the "
                                 "run's own cosine ends)", low=0)
    max_time: float = option(0.0, "wall-clock budget in seconds (0: none): stops early and saves, and the cosine "
                             "follows it", low=0)
    optimizer: str = option("auto", "adamw for every weight, or muon: Muon (orthogonalized momentum) for the "
                            "hidden matrices and AdamW for embeddings, read-outs, biases and gains, at one learning "
                            "rate (Muon's step scaled to AdamW's size); auto: adamw for a new run, and on --resume "
                            "the one the run was trained with", choices=("auto", *OPTIMIZERS))
    lr: float = option(1e-3, "peak learning rate", low=0, low_open=True)
    min_lr: float = option(1e-4, "learning rate at the end of the cosine", low=0)
    warmup_steps: int = option(50, "steps of linear warmup from 0 to lr", low=0)
    lr_schedule: str = option("cosine", "after warmup: a cosine down to min_lr, or the 2017 paper's inverse square "
                              "root of the step (lr is its peak)", choices=("cosine", "inverse-sqrt"))
    weight_decay: float = option(0.1, "AdamW's decoupled weight decay, on matrices and embeddings only", low=0)
    beta1: float = option(0.9, "AdamW's β₁ (momentum)", low=0, high=1, high_open=True)
    beta2: float = option(0.99, "AdamW's β₂ (second-moment decay)", low=0, high=1, high_open=True)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: off)", low=0)
    eval_interval: int = option(100, "evaluate validation loss and bits/char, and save a checkpoint, every N steps",
                                low=1)
    eval_iters: int = option(20, "batches per evaluation", low=1)
    log_interval: int = option(10, "write a training row to metrics.jsonl every N steps", low=1)
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep (0: every one)", low=0)
    seed: int = option(1337, "seed of the initial weights, dropout and the order of batches", low=SEED_MIN,
                       high=SEED_MAX)
    device: str = option("auto", DEVICE_HELP)
    dtype: str = option("auto", "precision: auto (bf16 autocast on a CUDA GPU, float32 elsewhere), float32, or "
                        "bfloat16 (autocast; pays off on AMX CPUs from width 384)",
                        choices=("auto", "float32", "bfloat16"))
    compile: bool = option(False, "torch.compile the model for training")
    resume: bool = option(False, "continue the run in out_dir exactly where it stopped")
    progress: bool = option(True, "show a progress bar (on a terminal)")
    fsdp: bool = option(False, "under torchrun: shard parameters, gradients and optimizer state across the "
                        "processes (FSDP2) instead of copying the model to each (DDP)")
    dist_timeout: float = option(600.0, "under torchrun: seconds a process waits for the others at a collective "
                                 "before it gives up (a rank that dies ends the job at once)", low=1)

    def check(self) -> None:
        check_device(self.device)
        if self.optimizer == "muon" and self.fsdp:
            raise SokhanError("--optimizer muon cannot run under --fsdp: Muon orthogonalizes each whole matrix, and "
                              "FSDP gives every process a shard of it; use DDP (leave --fsdp off)")


# Fine-tuning starts from a trained model: a gentler, shorter schedule than pretraining.
FINETUNE_DEFAULTS = TrainConfig(out_dir="runs/chat", max_steps=300, lr=3e-4, min_lr=3e-5, warmup_steps=20,
                                eval_interval=100, eval_iters=10)


@dataclass(frozen=True)
class FinetuneConfig(Config):
    section: ClassVar[str] = "finetune"

    task: str = option("chat", "what to fine-tune for: chat (conversations, the loss on the replies) or classify "
                       "(a label for each text or text pair, with a classification head)", choices=FINETUNE_TASKS,
                       what="fine-tuning task")
    base: str = option("runs/demo/pretrain", "the pretrained model: a run or checkpoint folder")
    data: str = option("chatterbot", "chat: conversations, a .jsonl file ({\"messages\": […]} or {\"prompt\", "
                       "\"response\"} per line), hf:NAME[:SPLIT], chatterbot (the Persian dialogs of "
                       "chatterbot-corpus), or several joined with commas; classify: a .jsonl file of labelled "
                       "records")
    val_data: str = option("", "a separate validation set, in the same forms; empty: hold out val_fraction of data")
    val_fraction: float = option(0.05, "share of conversations (or records) held out for validation", low=0,
                                 high=0.5, low_open=True)
    text_field: str = option("text", "classify: the field of a record holding its text")
    pair_field: str = option("", "classify: the field holding the second text of a pair (premise → hypothesis, "
                             "question → question); empty: single texts")
    label_field: str = option("label", "classify: the field holding the label (a string or an integer); the labels "
                              "are those the data holds")
    pooling: str = option("auto", "classify: what the head reads: first (the <|bos|> position, BERT's [CLS]), mean "
                          "(every real token), last (the last token, GPT-1's; a GPT's only position that has read "
                          "everything); auto: mean when the texts of a pair are read separately, else first for "
                          "bert and last for gpt", choices=("auto", *POOLINGS), what="pooling")
    pair_encoding: str = option("joint", "classify, pairs: joint (one pass over <|bos|> text <|eos|> pair <|eos|>, "
                                "GPT-1's and BERT's) or separate (each text read alone, the head reads (u, v, |u-v|, "
                                "u*v) of their pooled states, InferSent's and Sentence-BERT's; measured better for a "
                                "small model on little data, see the README)", choices=PAIR_ENCODINGS,
                                what="pair encoding")
    lora: bool = option(False, "train low-rank adapters (LoRA) instead of every weight")
    lora_rank: int = option(8, "rank r of each adapter", low=1)
    lora_alpha: float = option(16.0, "LoRA's α: the update is scaled by α / r", low=0, low_open=True)
    lora_dropout: float = option(0.0, "dropout on the adapters' input", low=0, high=1, high_open=True)
    lora_targets: list[str] = option(help="the Transformer's linear layers to adapt: attention in (qkv) and out, "
                                     "feed-forward up and down", choices=LORA_TARGETS,
                                     factory=lambda: ["qkv", "out"], what="LoRA target")
    merge: bool = option(False, "LoRA: also write the merged model to out_dir/merged")

    def check(self) -> None:
        if self.merge and not self.lora:
            raise SokhanError("--merge folds LoRA adapters into the base; it needs --lora")
        if not self.lora_targets:
            raise SokhanError("lora_targets is empty; name at least one linear layer (qkv, out, up, down)")
        if self.task == "classify":
            self._check_classify()
        else:
            changed = [name for name in ("text_field", "pair_field", "label_field", "pooling", "pair_encoding")
                       if getattr(self, name) != getattr(FinetuneConfig, name)]
            if changed:
                raise SokhanError(f"{changed[0]} is an option of --task classify (the task is {self.task})")

    def _check_classify(self) -> None:
        if self.data == FinetuneConfig.data or self.data.startswith("hf:") or "," in self.data:
            raise SokhanError("--task classify reads one .jsonl file of labelled records: give --data FILE.jsonl")
        fields = [f for f in (self.text_field, self.pair_field, self.label_field) if f]
        if not self.text_field or not self.label_field:
            raise SokhanError("--task classify needs a --text-field and a --label-field")
        if len(set(fields)) < len(fields):
            raise SokhanError(f"the text, pair and label fields must differ, got {', '.join(fields)}")
        if self.pair_encoding == "separate" and not self.pair_field:
            raise SokhanError("--pair-encoding separate reads the two texts of a pair apart; name the second one "
                              "with --pair-field")


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """What makes a model folder a classifier, as its config.json records it (`classifier`): the labels (the
    head's rows, in order), what the head reads, the fields it was trained on (`sokhan evaluate` reads the
    same ones by default) and the layout of its input. Read back before the weights load (no TOML table)."""

    labels: list[str] = option(help="the labels, in the order of the head's outputs", what="label")
    pooling: str = option(help="what the head reads", choices=POOLINGS, what="pooling")
    text_field: str = option(help="the field of a record holding its text")
    pair_field: str = option(help="the field holding a pair's second text; empty: single texts")
    label_field: str = option(help="the field holding the label")
    template: str = option(help="how a text or pair is laid out in tokens", choices=PAIR_TEMPLATES,
                           what="pair template")
    pair_encoding: str = option("joint", "a pair read in one pass (joint) or each text alone (separate); "
                                "classifiers saved before this field read pairs jointly", choices=PAIR_ENCODINGS,
                                what="pair encoding")

    def check(self) -> None:
        if not 2 <= len(self.labels) <= MAX_LABELS:
            raise SokhanError(f"a classifier has 2 to {MAX_LABELS:,} labels, got {len(self.labels):,}")
        if len(set(self.labels)) < len(self.labels):
            raise SokhanError("the labels of a classifier must differ from one another")
        if self.pair_encoding == "separate" and not self.pair_field:
            raise SokhanError("a classifier that reads pairs separately needs its pair_field")


@dataclass(frozen=True)
class LoraConfig(Config):
    """The adapters of a LoRA fine-tune, as its config.json records them (`lora`): read back to rebuild the
    model before its weights load, so every field is required (no TOML table, no flags: `FinetuneConfig`'s
    lora_* options make them)."""

    targets: list[str] = option(help="the linear layers wrapped", choices=LORA_TARGETS, what="LoRA target")
    rank: int = option(help="rank r of each adapter", low=1)
    alpha: float = option(help="LoRA's α: the update is scaled by α / r", low=0, low_open=True)

    def check(self) -> None:
        if not self.targets:
            raise SokhanError("lora targets is empty; a LoRA model wraps at least one linear layer")
