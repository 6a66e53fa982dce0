"""Recipe: supervised fine-tuning of a pretrained GPT on conversations, full or LoRA (`--task classify`: a
classifier, `sokhan.recipes.classify`).

Conversations are rendered with the chat template (`sokhan.text.chat_template`), the loss is
taken on the assistant's tokens only, and conversations are packed end to end into rows
(`sokhan.train.sft`). The engine, checkpoints and resume are the pretraining ones; the
fine-tuned model folder records the chat template (and the LoRA settings, when adapters are
used) in its config.json.

Under torchrun (`torchrun --nproc_per_node N -m sokhan finetune …`) every process runs the recipe
and the engine shares out each step (`SFTTask.split_rows`: `--batch-size` rows per process);
rank 0 alone prints and writes the adapters and the merged model.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import torch
from rich.console import Console

from sokhan.config import FinetuneConfig, TrainConfig, check_out_dir
from sokhan.data.conversations import iter_conversations
from sokhan.data.prepare import hash_split
from sokhan.device import resolve_device
from sokhan.errors import SokhanError
from sokhan.models.lora import apply_lora
from sokhan.models.trained import TrainedModel
from sokhan.recipes.adapters import train_and_save
from sokhan.recipes.classify import finetune_classifier
from sokhan.text.chat_template import TEMPLATE_NAME, ChatTemplate, Message
from sokhan.train.distributed import env_rank
from sokhan.train.engine import TrainResult
from sokhan.train.sft import SFTTask, pack


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
    """Fine-tune `ft.base` on `ft.data` with the engine as `cfg` says (FINETUNE_DEFAULTS: a gentle schedule):
    into a chat model, or with `ft.task` classify into a classifier (`sokhan.recipes.classify`)."""
    console = console or Console(stderr=True)
    if env_rank():  # under torchrun only rank 0 speaks
        console = Console(stderr=True, quiet=True)
    check_out_dir(cfg.out_dir)  # from Python too: one line, not mkdir's traceback after the work
    if ft.task == "classify":
        return finetune_classifier(ft, cfg, console)
    base = TrainedModel.load(ft.base, device="cpu")
    base.require_causal("fine-tuning into a chat model")
    base.require_attention("the layers a chat fine-tune adapts")
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
    return train_and_save(model, task, ft, cfg, run_config, base, console)
