"""Attention maps: the weights a Transformer actually used on a text, per layer and head.

The weights come from the model's own forward pass on the explicit attention path
(softmax(QKᵀ/√d + mask)), the matrix every picture and the web view draw; nothing is
recomputed apart from the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sokhan.config import TranslateConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.infer.translate import source_ids, translate_batch
from sokhan.inspect.picture import Heatmap, Picture
from sokhan.inspect.render import model_name, shorten, token_texts, visible
from sokhan.inspect.save import save_picture
from sokhan.models.trained import TrainedModel

MASK_LABEL = "masked (−∞ before softmax)"
GRID_MOST = 16  # all layers × heads in one picture up to this many heads in all


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
def attention_maps(lm: TrainedModel, text: str, max_tokens: int | None = None) -> AttentionMaps:
    """Run `lm` on `text` (normalized, after <|bos|>, as in training) and keep every layer's weights.

    Only Transformer families have attention; others get one clear error. The text is cut to
    the model's context (or `max_tokens`), keeping its beginning.
    """
    lm.require_attention("attention maps")
    if not text.strip():
        raise SokhanError("give a text to look at")
    ids = lm.encode_prompt(text)[: min(lm.block_size, max_tokens or lm.block_size)]
    x = torch.tensor([ids], device=model_device(lm.model))
    attentions = lm.model(x, need_weights=True).attentions
    weights = torch.stack([a[0] for a in attentions]).float().cpu()
    return AttentionMaps([lm.tokenizer.decode([i]) for i in ids], weights, lm.capabilities.causal)


@dataclass
class TranslationAttention:
    """The three kinds of attention of an encoder–decoder reading a source and (teacher-forced) a target."""

    source_tokens: list[str]   # what the encoder read: the normalized source and <|eos|>
    target_tokens: list[str]   # what the decoder read: <|bos|> and the target's tokens
    encoder: torch.Tensor      # (layers, heads, S, S): source token over source tokens, both sides
    decoder: torch.Tensor      # (layers, heads, T, T): target token over itself and the target before it
    cross: torch.Tensor        # (layers, heads, T, S): target token over source tokens ("which word it looked at")
    target: str                # the Persian read: as given, or the model's own greedy translation


@torch.inference_mode()
def translation_attention(lm: TrainedModel, source: str, target: str | None = None,
                          max_tokens: int | None = None) -> TranslationAttention:
    """Run the translator `lm` on `source` and `target` (default: its own greedy translation of `source`)
    once, keeping every layer's weights of all three attentions from that forward pass. Each side is cut
    to the model's context (or `max_tokens`), keeping its beginning."""
    lm.require_translator("cross-attention maps")
    if not source.strip():
        raise SokhanError("give a source sentence to look at")
    if target is None:
        target = translate_batch(lm, [source], TranslateConfig(beam=1))[0]
    limit = min(lm.block_size, max_tokens or lm.block_size)
    src = source_ids(lm, source)[:limit]
    tgt = ([lm.tokenizer.bos_id] + lm.tokenizer.encode_plain(lm.normalize(target).strip()))[:limit]
    device = model_device(lm.model)
    out = lm.model(torch.tensor([tgt], device=device), source=torch.tensor([src], device=device), need_weights=True)

    def stacked(weights: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([w[0] for w in weights]).float().cpu()

    decode = lm.tokenizer.decode
    return TranslationAttention([decode([i]) for i in src], [decode([i]) for i in tgt],
                                stacked(out.encoder_attentions), stacked(out.attentions),
                                stacked(out.cross_attentions), target)


def check_index(value: int | None, count: int, what: str) -> None:
    if value is not None and not 0 <= value < count:
        raise SokhanError(f"--{what} {value} is out of range: the model has {count} {what}s (0–{count - 1})")


def _panel(maps: AttentionMaps, labels: list[str], layer: int, head: int | None, colorbar: bool) -> Heatmap:
    weights = maps.mean_over_heads(layer) if head is None else maps.weights[layer, head]
    t = weights.size(0)
    mask = np.triu(np.ones((t, t), dtype=bool), k=1) if maps.causal else None
    name = f"layer {layer} · mean of {maps.heads} heads" if head is None else f"layer {layer} · head {head}"
    return Heatmap(weights.numpy().astype(np.float64), labels, labels, name,
                   row_name="query token (reads)", col_name="key token (is read)",
                   value_name="attention weight (probability)", vmin=0.0, vmax=1.0, mask=mask,
                   mask_label=MASK_LABEL, colorbar=colorbar)


def attention_picture(maps: AttentionMaps, layer: int | None = None, head: int | None = None,
                      title: str = "attention", subtitle: str = "", labels: list[str] | None = None) -> Picture:
    """Heatmaps of the weights (query rows, key columns), chosen by `layer`/`head`.

    Both given: that one head. A layer: its heads and their mean. A head: that head in every
    layer. Neither: every layer × (heads + mean) when the model is small (≤ 16 heads in all),
    else the mean over heads of each layer. `picture.extra["cells"]` says which (layer, head)
    each panel shows (head None = the mean), in panel order. `labels` name the tokens on the
    axes (default: the tokens made visible, ␣ for a space).
    """
    labels = labels or [visible(t) for t in maps.tokens]
    check_index(layer, maps.layers, "layer")
    check_index(head, maps.heads, "head")
    if layer is not None and head is not None:
        cells, columns = [(layer, head)], 1
    elif layer is not None:
        cells, columns = [(layer, h) for h in range(maps.heads)] + [(layer, None)], maps.heads + 1
    elif head is not None:
        cells, columns = [(layer_, head) for layer_ in range(maps.layers)], min(maps.layers, 4)
    elif maps.layers * maps.heads <= GRID_MOST:
        cells = [(layer_, h) for layer_ in range(maps.layers) for h in [*range(maps.heads), None]]
        columns = maps.heads + 1
    else:
        cells, columns = [(layer_, None) for layer_ in range(maps.layers)], min(maps.layers, 4)
    if columns > 6:  # a layer of many heads: wrap into a squarer grid
        columns = math.ceil(math.sqrt(len(cells)))
    single = len(cells) == 1
    panels = [_panel(maps, labels, la, h, colorbar=single or h is None or i % columns == columns - 1)
              for i, (la, h) in enumerate(cells)]
    size = (7.5, 6.8) if single else (3.6, 3.3)
    return Picture("attention", title, list(panels), columns, subtitle, size, extra={"cells": cells})


def plot_attention(lm: TrainedModel, text: str, out_dir: str | Path, layer: int | None = None,
                   head: int | None = None, max_tokens: int | None = 64) -> Picture:
    """Attention heatmaps of `lm` reading `text`, saved as attention*.png/.html in `out_dir`.

    The weights are `attention_maps(lm, text)`: the model's own forward pass. A long text is
    cut to its first `max_tokens` tokens (a readable picture), which the subtitle says.
    """
    maps = attention_maps(lm, text, max_tokens=max_tokens)
    ids = lm.encode_prompt(text)
    total = len(ids)
    kind = "decoder: each token reads itself and the past" if maps.causal else "encoder: each token reads both sides"
    title = f"Attention in {model_name(lm.path)} ({lm.family}, {kind})"
    cut = f" — first {len(maps.tokens)} of {total} tokens" if total > len(maps.tokens) else ""
    picture = attention_picture(maps, layer, head, title, f"«{shorten(text)}»{cut}",
                                token_texts(lm.tokenizer, ids[: len(maps.tokens)]))
    picture.name = "attention" + (f"-layer{layer}" if layer is not None else "") + \
        (f"-head{head}" if head is not None else "")
    picture.extra["maps"] = maps
    return save_picture(picture, out_dir)
