"""Model families, built from a `ModelConfig` by name: one module per family, all read one config."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from sokhan.errors import SokhanError
from sokhan.models.bert import BERT
from sokhan.models.config import ModelConfig, preset
from sokhan.models.gpt import GPT
from sokhan.models.ngram import NGramLM
from sokhan.models.recurrent import RecurrentLM

FAMILIES: dict[str, type[nn.Module]] = {"gpt": GPT, "bert": BERT, "rnn": RecurrentLM, "lstm": RecurrentLM,
                                        "gru": RecurrentLM, "ngram": NGramLM}


def model_device(model: nn.Module) -> torch.device:
    """Where a model lives: its first parameter's device, or its first buffer's (n-grams have no parameters)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.family not in FAMILIES:
        raise SokhanError(f"unknown model family '{cfg.family}'; choose from {', '.join(FAMILIES)}")
    return FAMILIES[cfg.family](cfg)


__all__ = ["GPT", "BERT", "NGramLM", "RecurrentLM", "ModelConfig", "build_model", "preset", "FAMILIES", "model_device"]
