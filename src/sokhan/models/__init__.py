"""Model families, built from a `ModelConfig` by name. Later families register here too."""

from __future__ import annotations

from torch import nn

from sokhan.errors import SokhanError
from sokhan.models.config import ModelConfig, preset
from sokhan.models.gpt import GPT

FAMILIES: dict[str, type[nn.Module]] = {"gpt": GPT}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.family not in FAMILIES:
        raise SokhanError(f"unknown model family '{cfg.family}'; choose from {', '.join(FAMILIES)}")
    return FAMILIES[cfg.family](cfg)


__all__ = ["GPT", "ModelConfig", "build_model", "preset", "FAMILIES"]
