"""The config of sampling: `sokhan sample`, `sokhan chat` and the Python API share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option


@dataclass(frozen=True)
class SampleConfig(Config):
    section: ClassVar[str] = "sample"

    max_new_tokens: int = option(200, "tokens to generate at most", low=0)
    temperature: float = option(0.8, "divide the logits by this before sampling; 0: always the likeliest token",
                                low=0)
    top_k: int = option(0, "sample among the k likeliest tokens only (0: off)", low=0)
    top_p: float = option(1.0, "nucleus sampling: among the likeliest tokens that together reach this "
                          "probability (1: off)", low=0, high=1, low_open=True)
    seed: int | None = option(None, "seed of the sampler, for a repeatable text (unset: a new text each time)",
                              low=SEED_MIN, high=SEED_MAX)
    stop: list[str] = option(help="stop before this text appears (repeatable)", factory=list)
