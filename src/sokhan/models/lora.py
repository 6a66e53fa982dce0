"""LoRA (Hu et al. 2021): fine-tune a frozen model through low-rank updates W + (α/r)·B·A.

Only A (r × in) and B (out × r) train; B starts at zero, so the wrapped model starts out
exactly equal to the base model. `merge_lora` folds B·A into W and gives back plain
`nn.Linear`s, so a merged model is an ordinary model for every other command.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sokhan.errors import SokhanError


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def apply_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Wrap every nn.Linear whose name ends with one of `targets`; freeze everything else."""
    if rank < 1:
        raise SokhanError(f"LoRA rank must be ≥ 1, got {rank}")
    shared = _shared_parameters(model)
    chosen = [(name, module, child_name, child) for name, module in model.named_modules()
              for child_name, child in module.named_children()
              if isinstance(child, nn.Linear) and child_name in targets]
    for name, _, child_name, child in chosen:
        full = f"{name}.{child_name}" if name else child_name
        others = [n for n in shared.get(id(child.weight), []) if n != full]
        if others:
            raise SokhanError(f"{full} shares its weight with {', '.join(others)} (tied): merging an adapter "
                              f"into it would change that too; leave it out of the LoRA targets")
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name, module, child_name, child in chosen:
        setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
        wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise SokhanError(f"no linear layer named {targets} to adapt; try qkv, out, up, down")
    return wrapped


def _shared_parameters(model: nn.Module) -> dict[int, list[str]]:
    """id → the module names of every parameter held by more than one module (a tied weight, e.g. the
    GPT's lm_head and token embedding)."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name.rpartition(".")[0])
    return {key: found for key, found in names.items() if len(found) > 1}


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRALinear back into a plain nn.Linear (in place)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".lora_" in k}
