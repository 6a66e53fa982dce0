"""Attention maps: the weights a Transformer actually used on a text, per layer and head.

The weights come from the model's own forward pass on the explicit attention path
(softmax(QKᵀ/√d + mask)), the matrix every picture and the web view draw; nothing is
recomputed apart from the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sokhan.errors import SokhanError
from sokhan.models import model_device

if TYPE_CHECKING:
    from sokhan.api import LanguageModel


@dataclass
class AttentionMaps:
    tokens: list[str]        # the text of each position (queries and keys alike)
    weights: torch.Tensor    # (layers, heads, T, T) float32 on the CPU: row i = how query i spreads over keys
    causal: bool             # True for a decoder: the upper triangle is exactly 0

    @property
    def layers(self) -> int:
        return self.weights.size(0)

    @property
    def heads(self) -> int:
        return self.weights.size(1)

    def mean_over_heads(self, layer: int) -> torch.Tensor:
        return self.weights[layer].mean(dim=0)


@torch.inference_mode()
def attention_maps(lm: LanguageModel, text: str, max_tokens: int | None = None) -> AttentionMaps:
    """Run `lm` on `text` (normalized, after <|bos|>, as in training) and keep every layer's weights.

    Only Transformer families have attention; others get one clear error. The text is cut to
    the model's context (or `max_tokens`), keeping its beginning.
    """
    if not hasattr(lm.model, "blocks"):
        raise SokhanError(f"{lm.path} is a '{lm.family}' model: only Transformers (gpt, bert) have attention maps")
    if not text.strip():
        raise SokhanError("give a text to look at")
    ids = lm.encode_prompt(text)[: min(lm.block_size, max_tokens or lm.block_size)]
    x = torch.tensor([ids], device=model_device(lm.model))
    attentions = lm.model(x, need_weights=True)[2]
    weights = torch.stack([a[0] for a in attentions]).float().cpu()
    return AttentionMaps([lm.tokenizer.decode([i]) for i in ids], weights, lm.family != "bert")
