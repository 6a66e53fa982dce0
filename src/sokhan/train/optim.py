"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine learning rate."""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   device_type: str) -> torch.optim.AdamW:
    """Decay 2-D weights (matmuls, embeddings); never biases or norm gains (as GPT-2/nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # One fused kernel per parameter instead of a dozen per list: CUDA, and CPU since torch 2.4.
    fused = device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def lr_at(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int, time_fraction: float = 0.0,
          schedule: str = "cosine") -> float:
    """Linear warmup for `warmup` steps, then cosine decay to `min_lr` at `decay_steps`.

    `time_fraction` (elapsed / wall-clock budget) moves the cosine along too, so a run that
    a time budget will stop before `decay_steps` still ends at `min_lr`, not mid-schedule.

    `schedule="inverse-sqrt"` is the paper's (§5.3): lrate = d_model^-0.5 · min(step^-0.5,
    step · warmup^-1.5), a linear warmup and then a decay with the inverse square root of the
    step, written with its peak `lr` (reached at `warmup`; the paper's base model has
    512^-0.5 · 4000^-0.5 = 7.0e-4) and never below `min_lr`. It has no end, so neither
    `decay_steps` nor the time budget move it.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "inverse-sqrt":
        return max(min_lr, lr * math.sqrt(max(warmup, 1) / (step + 1)))
    progress = max((step - warmup) / max(1, decay_steps - warmup), time_fraction)
    if progress >= 1.0:
        return min_lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
