"""Training tasks: what a batch is and how a model's loss on it is computed.

The engine is the same for every model family; a task is the only family-specific part
(causal LM here; masked LM and translation add their own tasks later).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import nn

from sokhan.data.shards import TokenData

Batch = Any


class Task(Protocol):
    """What the engine asks of a family's task. Two optional methods widen it:

    * ``metrics(model, batch) -> dict[str, float]``: evaluation figures for one batch
      (must include "loss"; e.g. masked-LM accuracy); default: the loss alone.
    * ``state_dict() -> dict`` / ``load_state_dict(state)``: task state that must survive a
      resume (e.g. the hidden state a recurrent model carries across batches).
    """

    def sample(self, split: str, generator: torch.Generator) -> Batch: ...
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor: ...
    def tokens_in(self, batch: Batch) -> int: ...
    def bits_per_char(self, split: str, loss: float) -> float | None: ...


class CausalLMTask:
    """Next-token prediction on random windows of the prepared token shards (nanoGPT's sampler)."""

    def __init__(self, data_dir: str, batch_size: int, block_size: int, device: torch.device):
        self.splits = {s: TokenData(data_dir, s) for s in ("train", "val")}
        self.batch_size, self.block_size, self.device = batch_size, block_size, device
        for split, data in self.splits.items():  # fail now with a clear message, not at the first eval
            data.sample_batch(1, block_size, torch.Generator().manual_seed(0))

    def sample(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.splits[split].sample_batch(self.batch_size, self.block_size, generator, self.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return model(x, y)[1]

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[1].numel()

    def bits_per_char(self, split: str, loss: float) -> float:
        """nats/token → bits/char with the split's own token and character counts."""
        data = self.splits[split]
        return loss / math.log(2) * data.num_tokens / data.num_chars
