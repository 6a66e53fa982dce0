"""Recipe: pretrain a model of any family on a prepared data folder.

A family is a model module plus its task (what a batch is and how the loss is taken, see
`sokhan.train.TASKS`): GPT → next-token windows; RNN/LSTM/GRU → truncated BPTT with the
hidden state carried; BERT → dynamically masked windows. All train on the one engine with
the same checkpoints. A family that scores by lookup (the n-gram) is not trained by
gradients: it is counted, in one pass, and saved through the same checkpoint code.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from sokhan.config import ModelConfig, TrainConfig, check_out_dir
from sokhan.data.shards import TokenData, load_meta
from sokhan.device import machine, resolve_device
from sokhan.errors import SokhanError
from sokhan.eval.bpc import sequence_nll
from sokhan.inspect.curves import draw_loss_curve
from sokhan.models import build_model
from sokhan.models.checkpoint import latest_checkpoint, read_config, save_checkpoint
from sokhan.train import task_for
from sokhan.train.engine import Trainer, TrainResult
from sokhan.train.metrics import MetricsLog
from sokhan.units import bits_per_char


def model_config_for(cfg: TrainConfig, meta: dict[str, Any], values: dict[str, Any]) -> ModelConfig:
    """On resume the checkpoint's model config wins (a run without a complete checkpoint starts fresh);
    otherwise the preset (default small) <- values, the vocabulary size from the data unless `values`
    sets it (never below the tokenizer's)."""
    found = latest_checkpoint(cfg.out_dir) if cfg.resume else None
    if found is not None:
        resumed = ModelConfig.from_dict(read_config(found)["model"])
        if resumed.vocab_size < meta["vocab_size"]:  # its ids would index past the embedding mid-training
            raise SokhanError(f"{found} has a vocabulary of {resumed.vocab_size}, smaller than the "
                              f"{meta['vocab_size']} tokens of {cfg.data}: resume on the data it was trained on")
        return resumed
    values = {k: v for k, v in values.items() if v is not None}
    if values.get("vocab_size", meta["vocab_size"]) < meta["vocab_size"]:
        raise SokhanError(f"vocab_size {values['vocab_size']} is smaller than the tokenizer's {meta['vocab_size']}")
    values.setdefault("vocab_size", meta["vocab_size"])
    return ModelConfig.create(**values)


def pretrain(cfg: TrainConfig, model: dict[str, Any] | None = None, console: Console | None = None) -> TrainResult:
    """Train (or count) the model that `model` describes (ModelConfig values; `preset` among them) as `cfg` says."""
    console = console or Console(stderr=True)
    check_out_dir(cfg.out_dir)  # from Python too, not only the command line: one line, not mkdir's traceback
    meta = load_meta(cfg.data)
    model_cfg = model_config_for(cfg, meta, model or {})
    torch.manual_seed(cfg.seed)  # the initial weights are part of the recipe too
    net = build_model(model_cfg)
    run_config = {
        "format": 1,
        "model": model_cfg.to_dict(),
        "train": dataclasses.asdict(cfg),
        "normalizer": meta["normalizer"],
        # splits: counts and the fingerprint of each split's text; doc_split: how `sokhan eval` cuts a file
        # (a dataset prepared before it was recorded has none: eval then takes prepare's default)
        "data": {"source": meta.get("source"), "tokenizer": meta["tokenizer"], "splits": meta["splits"],
                 "doc_split": meta.get("doc_split")},
    }
    tokenizer_json = (Path(cfg.data) / "tokenizer.json").read_text(encoding="utf-8")
    if net.capabilities.lookup:
        return count_ngrams(net, cfg, run_config, tokenizer_json, console)
    task = task_for(model_cfg.family, cfg.data, cfg.batch_size, model_cfg.block_size, resolve_device(cfg.device))
    layers = f"{model_cfg.n_layer} layers, d_model {model_cfg.n_embd}"
    console.print(f"model: {model_cfg.family}, {net.num_parameters() / 1e6:.2f}M parameters, {layers}, "
                  f"context {model_cfg.block_size} tokens")
    return Trainer(net, task, cfg, run_config, tokenizer_json, console, on_save=draw_loss_curve).fit()


def count_ngrams(model: nn.Module, cfg: TrainConfig, run_config: dict[str, Any], tokenizer_json: str,
                 console: Console) -> TrainResult:
    """Count an n-gram model on the train split, score the val split exactly, save a checkpoint."""
    run_dir = Path(cfg.out_dir)
    if cfg.resume:
        raise SokhanError("an n-gram model is counted in one pass; there is nothing to resume")
    if latest_checkpoint(run_dir) is not None:
        raise SokhanError(f"{run_dir} already has checkpoints; choose another --out-dir")
    train, val = TokenData(cfg.data, "train"), TokenData(cfg.data, "val")
    order = model.config.order
    if train.num_tokens < order:
        raise SokhanError(f"the train split has {train.num_tokens} tokens, fewer than the order {order}")
    console.print(f"model: ngram, order {order}, {model.config.smoothing} Kneser-Ney; "
                  f"counting {train.num_tokens:,} tokens")
    t0 = time.perf_counter()
    model.fit(np.asarray(train.tokens))
    elapsed = time.perf_counter() - t0
    nll, _ = sequence_nll(model, val.tokens, model.config.block_size)  # as the leaderboard scores it
    val_loss = nll / max(val.num_tokens - 1, 1)
    val_bpc = bits_per_char(nll, val.num_chars)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(run_dir)
    metrics.write({"step": 1, "split": "val", "loss": val_loss, "bpc": val_bpc, "tokens": train.num_tokens,
                   "time": round(elapsed, 3)})
    metrics.close()
    run_config["progress"] = {"step": 1, "tokens": train.num_tokens, "elapsed": round(elapsed, 2),
                              "machine": machine(torch.device("cpu"))}  # counting runs on the CPU
    save_checkpoint(run_dir, 1, model, run_config, tokenizer_json, None, keep=1)
    console.print(f"counted {model.num_parameters():,} n-grams in {elapsed:.1f}s: val loss {val_loss:.4f}, "
                  f"{val_bpc:.3f} bits/char")
    return TrainResult(run_dir, 1, train.num_tokens, elapsed, val_loss, val_bpc, {"loss": val_loss, "bpc": val_bpc})
