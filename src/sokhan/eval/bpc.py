"""The log-likelihood of a text under any causal model: what bits per character divide (`sokhan.units`).

Each family is scored the way it reads (its `capabilities` say which): an n-gram looks up
every token at once; a recurrent model reads the whole sequence in chunks, carrying its
hidden state, so every token sees all of its past; a Transformer, whose context is bounded,
slides a window.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sokhan.device import model_device
from sokhan.units import bits_per_char

__all__ = ["bits_per_char", "sequence_nll"]


@torch.inference_mode()
def sequence_nll(model: nn.Module, ids: list[int] | np.ndarray, block_size: int, stride: int | None = None,
                 ) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ids[1:] given what precedes, and how many were scored.

    A Transformer's sliding window re-reads up to `block_size − stride` earlier tokens as
    context and scores only the `stride` new ones, so every token is scored exactly once with
    at least that much context.
    """
    caps = model.capabilities
    if caps.lookup:
        return -float(model.log_probs(np.asarray(ids)).sum()), len(ids) - 1
    device = model_device(model)
    seq = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    if caps.carries_state:
        return _carried_nll(model, seq, block_size)
    stride = stride or max(1, block_size // 2)
    total, scored, pos = 0.0, 0, 1
    while pos < len(ids):
        end = min(pos + (block_size if pos == 1 else stride), len(ids))
        begin = max(0, end - 1 - block_size)
        logits = model(seq[begin: end - 1].unsqueeze(0)).logits[0].float()
        total += _nll(logits[pos - 1 - begin:], seq[pos:end])
        scored += end - pos
        pos = end
    return total, scored


def _carried_nll(model: nn.Module, seq: torch.Tensor, chunk: int) -> tuple[float, int]:
    cache = model.new_cache(1)
    total = 0.0
    for begin in range(0, len(seq) - 1, chunk):
        end = min(begin + chunk, len(seq) - 1)
        logits = model(seq[begin:end].unsqueeze(0), cache=cache).logits[0].float()
        total += _nll(logits, seq[begin + 1:end + 1])
    return total, len(seq) - 1


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return -torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).double().sum().item()
