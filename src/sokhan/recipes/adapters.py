"""What a LoRA fine-tune writes besides its checkpoints: the adapters alone, and the model with them merged.

Shared by the chat recipe (`sokhan.recipes.finetune`) and the classifier's (`sokhan.recipes.classify`),
whose adapters carry the classification head too: it is trained whole, and without it the
adapters classify nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from safetensors.torch import save as save_safetensors
from torch import nn

from sokhan.config import FinetuneConfig, TrainConfig
from sokhan.inspect.curves import draw_loss_curve
from sokhan.models.checkpoint import save_folder, weights_bytes
from sokhan.models.lora import lora_state_dict, merge_lora
from sokhan.models.trained import TrainedModel
from sokhan.train.distributed import env_rank
from sokhan.train.engine import Trainer, TrainResult
from sokhan.train.tasks import Task


def train_and_save(model: nn.Module, task: Task, ft: FinetuneConfig, cfg: TrainConfig, run_config: dict[str, Any],
                   base: TrainedModel, console: Console) -> TrainResult:
    """A fine-tune's training on the engine, then (LoRA) its adapters, written once by rank 0 under torchrun."""
    tokenizer_json = base.tokenizer.hf.to_str()
    trainer = Trainer(model, task, cfg, run_config, tokenizer_json, console, on_save=draw_loss_curve)
    result = trainer.fit()
    if ft.lora and not env_rank():
        save_adapters(whole(model, trainer), ft, cfg, run_config, str(base.path), tokenizer_json, console)
    return result


def whole(model: nn.Module, trainer: Trainer) -> nn.Module:
    """The trained model with every weight whole. FSDP left them sharded across processes that have ended (the
    engine leaves the group when training is over); its last checkpoint, gathered whole, is the trained model."""
    if trainer.group is None or not trainer.group.fsdp:
        return model
    return TrainedModel.load(trainer.run_dir, device="cpu").model


def save_adapters(model: nn.Module, ft: FinetuneConfig, cfg: TrainConfig, run_config: dict[str, Any], base: str,
                  tokenizer_json: str, console: Console) -> None:
    """The adapters alone (`adapter/`), and with `ft.merge` the model with them folded in (`merged/`)."""
    out = Path(cfg.out_dir)
    described = {"base": base, **run_config["lora"]}
    if "classifier" in run_config:
        described["classifier"] = run_config["classifier"]
    save_folder(out / "adapter", {
        "adapter.safetensors": save_safetensors(adapter_tensors(model)),
        "adapter_config.json": json.dumps(described, indent=2, ensure_ascii=False),
    })
    console.print(f"adapters: {out / 'adapter'}")
    if ft.merge:
        merge_lora(model)
        merged_config = {k: v for k, v in run_config.items() if k != "lora"}
        save_folder(out / "merged", {"model.safetensors": weights_bytes(model),
                                     "config.json": json.dumps(merged_config, indent=2, ensure_ascii=False),
                                     "tokenizer.json": tokenizer_json})
        console.print(f"merged model: {out / 'merged'}")


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA matrices, and a classifier's head (trained whole beside them)."""
    tensors = lora_state_dict(model)
    if model.capabilities.classifies:
        tensors.update({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                        if k.startswith("head.")})
    return tensors
