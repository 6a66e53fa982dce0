"""The optimizers: AdamW with decoupled weight decay on matrices only, or Muon for the hidden matrices with
AdamW for the rest; and a warmup + cosine learning rate."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

# Modules whose weights are a lookup table or a read-out, not a hidden linear map: Muon's orthogonalized update
# is meant for the matrices between them (Jordan et al. 2024), so these stay with AdamW.
TABLES_AND_READOUTS = ("embed", "positions", "lm_head", "head")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   device_type: str, optimizer: str = "adamw") -> torch.optim.AdamW | MuonAdamW:
    """`optimizer="adamw"`: AdamW, decaying 2-D weights (matmuls, embeddings), never biases or norm gains (as
    GPT-2/nanoGPT). `"muon"`: `MuonAdamW`, Muon on the hidden matrices, that AdamW on everything else."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    hidden = [p for name, p in params if is_hidden_matrix(name, p)]
    if optimizer == "muon" and hidden:  # (a LoRA fine-tune trains adapters only: it has no hidden matrix to give Muon)
        rest = [(name, p) for name, p in params if not is_hidden_matrix(name, p)]
        return MuonAdamW(torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"),
                         adamw([p for _, p in rest], lr, weight_decay, betas, device_type))
    return adamw([p for _, p in params], lr, weight_decay, betas, device_type)


def optimizer_kind(state_dict: object) -> str:
    """Which optimizer wrote `state_dict` (a checkpoint's): "muon" for `MuonAdamW`'s two parts, else "adamw"."""
    return "muon" if isinstance(state_dict, dict) and set(state_dict) == set(MuonAdamW.PARTS) else "adamw"


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float],
          device_type: str) -> torch.optim.AdamW:
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # One fused kernel per parameter instead of a dozen per list: CUDA, and CPU since torch 2.4.
    fused = device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """A 2-D weight of a hidden layer (attention, feed-forward, recurrent), not a table, a read-out or an adapter."""
    module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return p.dim() == 2 and module not in TABLES_AND_READOUTS and "lora_" not in name


class MuonAdamW:
    """Muon (Jordan et al. 2024, `torch.optim.Muon`) on the hidden matrices and AdamW on the rest, stepped as one.

    The engine sees one optimizer: `param_groups` lists both (its learning-rate schedule sets every group), and
    `state_dict` holds both. Muon's step is scaled with `adjust_lr_fn="match_rms_adamw"` (Liu et al. 2025,
    "Muon is Scalable for LLM Training" §2.2: update RMS 0.2·√max(A, B), AdamW's typical RMS), so the two share
    one learning rate and weight decay.
    """

    PARTS = ("muon", "adamw")  # the keys of `state_dict`

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.parts: dict[str, torch.optim.Optimizer] = dict(zip(self.PARTS, (muon, adamw)))

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for part in self.parts.values() for group in part.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:
        return {p: s for part in self.parts.values() for p, s in part.state.items()}

    def step(self) -> None:
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != set(self.parts):
            raise ValueError("the checkpoint's optimizer state is not Muon + AdamW (was the run trained with "
                             "another --optimizer?)")
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])


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
