"""The config of sampling: `sokhan sample`, `sokhan chat` and the Python API share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option

# Temperatures below this sample greedily (see `SampleConfig.greedy`).
GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class SampleConfig(Config):
    section: ClassVar[str] = "sample"

    max_new_tokens: int = option(200, "tokens to generate at most", low=0)
    temperature: float = option(0.8, "divide the logits by this before sampling; 0 (or below "
                                f"{GREEDY_BELOW:g}): always the likeliest token", low=0)
    top_k: int = option(0, "sample among the k likeliest tokens only (0: off)", low=0)
    top_p: float = option(1.0, "nucleus sampling: among the likeliest tokens that together reach this "
                          "probability (1: off)", low=0, high=1, low_open=True)
    seed: int | None = option(None, "seed of the sampler, for a repeatable text (unset: a new text each time)",
                              low=SEED_MIN, high=SEED_MAX)
    stop: list[str] = option(help="stop before this text appears (repeatable)", factory=list)

    @property
    def greedy(self) -> bool:
        """Whether the likeliest token is taken: temperature 0, or one below `GREEDY_BELOW` (1e-5).

        Greedy is the limit of sampling as the temperature falls to 0, and a tiny temperature
        cannot be computed in float32: a logit of 10 divided by 1e-40 is inf (softmax: NaN), and
        5e-324 is 0 in float32 (0/0: NaN). At 1e-5 and above, every logit below 3e33 in size stays
        finite (the n-gram family's −1e30 for "never" included); there a token 1e-3 behind the
        best already has odds of e^-100 against it, so greedy differs only on near-exact ties.
        """
        return self.temperature < GREEDY_BELOW
