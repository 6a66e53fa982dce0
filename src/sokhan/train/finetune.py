"""Recipe: supervised fine-tuning of a pretrained GPT on conversations, full or LoRA.

Conversations are rendered with the chat template (`sokhan.infer.chat`), the loss is taken
on the assistant's tokens only, and conversations are packed end to end into rows of
`block_size + 1` tokens so no compute is spent on padding. The engine, checkpoints and
resume are the pretraining ones; the fine-tuned model folder records the chat template
(and the LoRA settings, when adapters are used) in its config.json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from rich.console import Console
from safetensors.torch import save as save_safetensors
from torch import nn

from sokhan.api import LanguageModel
from sokhan.data.conversations import iter_conversations
from sokhan.data.prepare import hash_split
from sokhan.errors import SokhanError
from sokhan.infer.chat import TEMPLATE_NAME, ChatTemplate, Message
from sokhan.models.gpt import IGNORE_INDEX
from sokhan.train.checkpoint import save_folder, weights_bytes
from sokhan.train.engine import TrainConfig, Trainer, TrainResult, resolve_device
from sokhan.train.lora import apply_lora, lora_state_dict, merge_lora


@dataclass
class FinetuneConfig:
    section: ClassVar[str] = "finetune"

    base: str = "runs/demo/pretrain"  # the pretrained model (run or checkpoint folder)
    data: str = "chatterbot"          # conversations: .jsonl (messages or prompt/response), hf:NAME, chatterbot
    val_data: str = ""                # a separate validation set; empty: hold out val_fraction of data
    val_fraction: float = 0.05
    lora: bool = False                # train low-rank adapters instead of every weight
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["qkv", "out"])  # linear layers to adapt
    merge: bool = False               # LoRA: also write the merged model to out_dir/merged


# Fine-tuning starts from a trained model: a gentler, shorter schedule than pretraining.
FINETUNE_DEFAULTS = TrainConfig(out_dir="runs/chat", max_steps=300, lr=3e-4, min_lr=3e-5, warmup_steps=20,
                                eval_interval=100, eval_iters=10)


class SFTTask:
    """Random rows of packed conversations; targets are the assistant's tokens only."""

    def __init__(self, rows: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], batch_size: int,
                 device: torch.device):
        self.rows, self.labels, self.batch_size, self.device = rows, labels, batch_size, device

    def sample(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(self.rows[split]), (self.batch_size,), generator=generator)
        row, lab = self.rows[split][pick], self.labels[split][pick]
        return row[:, :-1].to(self.device), lab[:, 1:].to(self.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(batch[0], batch[1])[1]

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def bits_per_char(self, split: str, loss: float) -> None:
        return None  # the loss covers replies only: not a bits-per-character of any text


def pack(conversations: list[list[Message]], template: ChatTemplate, block_size: int,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate rendered conversations and cut rows of block_size + 1; drop rows with nothing to learn."""
    ids: list[int] = []
    labels: list[int] = []
    for conv in conversations:
        i, lab = template.encode(conv)
        ids += i[: block_size + 1]
        labels += lab[: block_size + 1]
    n = len(ids) // (block_size + 1)
    if n == 0:
        raise SokhanError(f"too little conversation data for one row of {block_size + 1} tokens")
    rows = torch.tensor(ids[: n * (block_size + 1)]).view(n, block_size + 1)
    labs = torch.tensor(labels[: n * (block_size + 1)]).view(n, block_size + 1)
    keep = (labs[:, 1:] != IGNORE_INDEX).any(dim=1)
    return rows[keep], labs[keep]


def load_splits(ft: FinetuneConfig, seed: int) -> dict[str, list[list[Message]]]:
    convs = list(iter_conversations(ft.data))
    if ft.val_data:
        return {"train": convs, "val": list(iter_conversations(ft.val_data))}
    splits: dict[str, list[list[Message]]] = {"train": [], "val": []}
    for conv in convs:
        key = json.dumps([(m.role, m.content) for m in conv], ensure_ascii=False)
        splits[hash_split(key, seed, ft.val_fraction)].append(conv)
    return splits


def finetune(ft: FinetuneConfig, cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    console = console or Console(stderr=True)
    if ft.merge and not ft.lora:
        raise SokhanError("--merge folds LoRA adapters into the base; it needs --lora")
    base = LanguageModel.load(ft.base, device="cpu")
    base.require_family("gpt", "fine-tuning into a chat model")
    model, block = base.model.train(), base.block_size
    template = ChatTemplate(base.tokenizer, base.normalize)
    splits = load_splits(ft, cfg.seed)
    if not splits["val"]:
        raise SokhanError("the validation split is empty; raise --val-fraction or give --val-data")
    packed = {s: pack(c, template, block) for s, c in splits.items()}
    console.print(f"conversations: {len(splits['train'])} train, {len(splits['val'])} val → "
                  f"{len(packed['train'][0])} + {len(packed['val'][0])} rows of {block + 1} tokens")
    run_config = copy.deepcopy(base.config)
    run_config.pop("progress", None)
    run_config.update(train=dataclasses.asdict(cfg), finetune=dataclasses.asdict(ft), chat_template=TEMPLATE_NAME)
    if ft.lora:
        torch.manual_seed(cfg.seed)
        wrapped = apply_lora(model, ft.lora_targets, ft.lora_rank, ft.lora_alpha, ft.lora_dropout)
        run_config["lora"] = {"targets": ft.lora_targets, "rank": ft.lora_rank, "alpha": ft.lora_alpha}
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        console.print(f"LoRA rank {ft.lora_rank} on {len(wrapped)} layers: {trainable:,} trainable parameters")
    task = SFTTask({s: p[0] for s, p in packed.items()}, {s: p[1] for s, p in packed.items()}, cfg.batch_size,
                   resolve_device(cfg.device))
    tokenizer_json = base.tokenizer.hf.to_str()
    result = Trainer(model, task, cfg, run_config, tokenizer_json, console).fit()
    if ft.lora:
        out = Path(cfg.out_dir)
        save_folder(out / "adapter", {
            "adapter.safetensors": save_safetensors(lora_state_dict(model)),
            "adapter_config.json": json.dumps({"base": str(base.path), **run_config["lora"]}, indent=2),
        })
        console.print(f"adapters: {out / 'adapter'}")
        if ft.merge:
            merge_lora(model)
            merged_config = {k: v for k, v in run_config.items() if k != "lora"}
            save_folder(out / "merged", {"model.safetensors": weights_bytes(model),
                                         "config.json": json.dumps(merged_config, indent=2, ensure_ascii=False),
                                         "tokenizer.json": tokenizer_json})
            console.print(f"merged model: {out / 'merged'}")
    return result
