"""Bits per character: the one scale on which every model family and tokenizer compares.

bpc = −Σ log₂ p(token | context) ÷ number of characters. A BPE model spends fewer, harder
predictions per character than a character-level one; dividing by characters (not
tokens) puts both on the same footing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sokhan.models import model_device


@torch.inference_mode()
def sequence_nll(model: nn.Module, ids: list[int], block_size: int, stride: int | None = None) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ids[1:] given what precedes, and how many were scored.

    Long sequences are scored with a sliding window: each window re-reads up to
    `block_size − stride` earlier tokens as context and scores only the `stride` new ones,
    so every token is scored exactly once with at least that much context.
    """
    stride = stride or max(1, block_size // 2)
    device = model_device(model)
    seq = torch.tensor(ids, dtype=torch.long, device=device)
    total, scored, pos = 0.0, 0, 1
    while pos < len(ids):
        end = min(pos + (block_size if pos == 1 else stride), len(ids))
        begin = max(0, end - 1 - block_size)
        logits = model(seq[begin: end - 1].unsqueeze(0))[0][0].float()
        logp = torch.log_softmax(logits[pos - 1 - begin:], dim=-1)
        targets = seq[pos:end]
        total -= logp.gather(1, targets.unsqueeze(1)).double().sum().item()
        scored += end - pos
        pos = end
    return total, scored


def bits_per_char(nll_nats: float, n_chars: int) -> float:
    return nll_nats / math.log(2) / n_chars
