"""Recipe: pretrain a language model on a prepared data folder with the shared engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sokhan.data.shards import load_meta
from sokhan.errors import SokhanError
from sokhan.models import build_model, preset
from sokhan.models.config import ModelConfig
from sokhan.train.checkpoint import read_config, resolve_model_dir
from sokhan.train.engine import Trainer, TrainConfig, TrainResult, resolve_device
from sokhan.train.tasks import CausalLMTask


def model_config_for(cfg: TrainConfig, meta: dict[str, Any], overrides: dict[str, Any]) -> ModelConfig:
    """On resume the checkpoint's model config wins; otherwise preset <- overrides, vocab from the data."""
    if cfg.resume:
        return ModelConfig.from_dict(read_config(resolve_model_dir(cfg.out_dir))["model"])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("vocab_size", meta["vocab_size"]) < meta["vocab_size"]:
        raise SokhanError(f"vocab_size {overrides['vocab_size']} is smaller than the tokenizer's {meta['vocab_size']}")
    overrides.setdefault("vocab_size", meta["vocab_size"])
    return preset(cfg.preset, **overrides)


def pretrain(cfg: TrainConfig, model_overrides: dict[str, Any] | None = None,
             console: Console | None = None) -> TrainResult:
    console = console or Console(stderr=True)
    meta = load_meta(cfg.data)
    model_cfg = model_config_for(cfg, meta, model_overrides or {})
    if model_cfg.family != "gpt":
        raise SokhanError(f"pretrain trains causal language models; family '{model_cfg.family}' is not one")
    torch.manual_seed(cfg.seed)  # the initial weights are part of the recipe too
    model = build_model(model_cfg)
    task = CausalLMTask(cfg.data, cfg.batch_size, model_cfg.block_size, resolve_device(cfg.device))
    run_config = {
        "format": 1,
        "model": model_cfg.to_dict(),
        "train": dataclasses.asdict(cfg),
        "normalizer": meta["normalizer"],
        "data": {"source": meta.get("source"), "tokenizer": meta["tokenizer"], "splits": meta["splits"]},
    }
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"model: {model_cfg.family}, {n_params / 1e6:.2f}M parameters, {model_cfg.n_layer} layers, "
                  f"d_model {model_cfg.n_embd}, context {model_cfg.block_size} tokens")
    tokenizer_json = (Path(cfg.data) / "tokenizer.json").read_text(encoding="utf-8")
    return Trainer(model, task, cfg, run_config, tokenizer_json, console).fit()
