"""Attention maps: the weights a Transformer actually used on a text, per layer and head.

The weights come from the model's own forward pass on the explicit attention path
(softmax(QKᵀ/√d + mask)), the matrix every picture and the web view draw; nothing is
recomputed apart from the model. A language model (gpt, bert) has one attention, its tokens
over themselves; a translator (seq2seq) has three: the encoder's self-attention over the
source, the decoder's masked self-attention over the target, and the cross-attention of each
target token over the source (`translation_attention`, drawn by `plot_translation_attention`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sokhan.config import TranslateConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.infer.translate import SourceTooLong, greedy_decode, max_new_tokens, one_line, source_ids
from sokhan.inspect.picture import Heatmap, Picture
from sokhan.inspect.render import model_name, shorten, token_texts, visible
from sokhan.inspect.save import save_picture
from sokhan.models.trained import TrainedModel
from sokhan.text.normalize import normalize_source

MASK_LABEL = "masked (−∞ before softmax)"
GRID_MOST = 16  # all layers × heads in one picture up to this many heads in all
QUERY_KEY = ("query token (reads)", "key token (is read)")  # a language model's axes: its tokens on both
SIDE_CHARS = 40  # a translation picture's subtitle shows each side up to this many characters


@dataclass
class AttentionMaps:
    tokens: list[str]        # the text of each query position (the rows)
    weights: torch.Tensor    # (layers, heads, T_q, T_k) float32 on the CPU: row i = how query i spreads over keys
    causal: bool             # True for a decoder: the upper triangle is exactly 0
    key_tokens: list[str] | None = None  # the keys' texts when they are not the queries (cross-attention)

    @property
    def keys(self) -> list[str]:
        return self.tokens if self.key_tokens is None else self.key_tokens

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
    if lm.capabilities.needs_source:
        raise SokhanError(f"{lm.path} is a translation model (seq2seq): its attention reads a source sentence and a "
                          f"target; use translation_attention / plot_translation_attention (the CLI does)")
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
    given: bool                # True when the target was given, False when it is the model's own translation
    source_ids: list[int]      # the ids behind source_tokens / target_tokens
    target_ids: list[int]
    source_total: int          # tokens of each side before the cut to the context (or max_tokens)
    target_total: int

    def maps(self, kind: str) -> AttentionMaps:
        """One of the three as `AttentionMaps` (queries are the rows): encoder, decoder or cross."""
        if kind == "encoder":
            return AttentionMaps(self.source_tokens, self.encoder, causal=False)
        if kind == "decoder":
            return AttentionMaps(self.target_tokens, self.decoder, causal=True)
        if kind == "cross":
            return AttentionMaps(self.target_tokens, self.cross, causal=False, key_tokens=self.source_tokens)
        raise ValueError(f"unknown attention kind {kind!r}; one of {', '.join(TRANSLATION_KINDS)}")


TRANSLATION_KINDS = ("encoder", "decoder", "cross")


@torch.inference_mode()
def translation_attention(lm: TrainedModel, source: str, target: str | None = None,
                          max_tokens: int | None = None) -> TranslationAttention:
    """Run the translator `lm` on `source` and `target` (default: its own greedy translation of `source`)
    once, keeping every layer's weights of all three attentions from that forward pass.

    The encoder reads the source as translating does (`source_ids`: normalized, then <|eos|>);
    the decoder reads <|bos|> and the target: a given one normalized as the training targets
    were, or the very ids the model chose when translating greedily. Each side is cut to the
    model's context (or `max_tokens`), keeping its beginning.
    """
    lm.require_translator("cross-attention maps")
    if not source.strip():
        raise SokhanError("give a source sentence to look at")
    if target is not None and not target.strip():
        raise SokhanError("the target is empty: give a translation to read, or leave it out to read the model's own")
    tok = lm.tokenizer
    limit = min(lm.block_size, max_tokens or lm.block_size)
    with warnings.catch_warnings():  # a source longer than the context is cut, which the picture's subtitle says
        warnings.simplefilter("ignore", SourceTooLong)
        full_source = source_ids(lm, source)
    source_total = len(tok.encode_plain(normalize_source(source))) + 1  # the source and <|eos|>, before any cut
    if target is None:
        new = max_new_tokens(len(full_source), TranslateConfig(beam=1), lm.block_size)
        chosen = greedy_decode(lm.model, [full_source], pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id,
                               max_new=[new])[0]
        target_ids, given = [tok.bos_id] + chosen, False
        target = one_line(tok.decode(chosen))  # as `sokhan translate` prints it
    else:
        target_ids, given = [tok.bos_id] + tok.encode_plain(lm.normalize(" ".join(target.splitlines())).strip()), True
    src, tgt = full_source[:limit], target_ids[:limit]
    device = model_device(lm.model)
    out = lm.model(torch.tensor([tgt], device=device), source=torch.tensor([src], device=device), need_weights=True)

    def stacked(weights: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([w[0] for w in weights]).float().cpu()

    return TranslationAttention([tok.decode([i]) for i in src], [tok.decode([i]) for i in tgt],
                                stacked(out.encoder_attentions), stacked(out.attentions),
                                stacked(out.cross_attentions), target, given, src, tgt, source_total,
                                len(target_ids))


def check_index(value: int | None, count: int, what: str) -> None:
    if value is not None and not 0 <= value < count:
        raise SokhanError(f"--{what} {value} is out of range: the model has {count} {what}s (0–{count - 1})")


def _panel(maps: AttentionMaps, rows: list[str], cols: list[str], axes: tuple[str, str], layer: int,
           head: int | None, colorbar: bool) -> Heatmap:
    weights = maps.mean_over_heads(layer) if head is None else maps.weights[layer, head]
    t_query, t_key = weights.shape
    mask = np.triu(np.ones((t_query, t_key), dtype=bool), k=1) if maps.causal else None
    name = f"layer {layer} · mean of {maps.heads} heads" if head is None else f"layer {layer} · head {head}"
    return Heatmap(weights.numpy().astype(np.float64), rows, cols, name, row_name=axes[0], col_name=axes[1],
                   value_name="attention weight (probability)", vmin=0.0, vmax=1.0, mask=mask,
                   mask_label=MASK_LABEL, colorbar=colorbar)


def attention_picture(maps: AttentionMaps, layer: int | None = None, head: int | None = None,
                      title: str = "attention", subtitle: str = "", labels: list[str] | None = None,
                      key_labels: list[str] | None = None, axes: tuple[str, str] = QUERY_KEY,
                      name: str = "attention") -> Picture:
    """Heatmaps of the weights (query rows, key columns), chosen by `layer`/`head`.

    Both given: that one head. A layer: its heads and their mean. A head: that head in every
    layer. Neither: every layer × (heads + mean) when the model is small (≤ 16 heads in all),
    else the mean over heads of each layer. `picture.extra["cells"]` says which (layer, head)
    each panel shows (head None = the mean), in panel order. `labels` name the query tokens
    (rows) and `key_labels` the key tokens (columns; default: the rows' labels when the keys
    are the queries), made visible (␣ for a space) unless given; `axes` name the two axes.
    A causal map masks the cells above the diagonal.
    """
    labels = labels or [visible(t) for t in maps.tokens]
    if key_labels is None:
        key_labels = labels if maps.key_tokens is None else [visible(t) for t in maps.key_tokens]
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
    panels = [_panel(maps, labels, key_labels, axes, la, h, colorbar=single or h is None or i % columns == columns - 1)
              for i, (la, h) in enumerate(cells)]
    size = (7.5, 6.8) if single else (3.6, 3.3)
    return Picture(name, title, list(panels), columns, subtitle, size, extra={"cells": cells})


def _file_name(stem: str, layer: int | None, head: int | None) -> str:
    return stem + (f"-layer{layer}" if layer is not None else "") + (f"-head{head}" if head is not None else "")


def plot_attention(lm: TrainedModel, text: str, out_dir: str | Path, layer: int | None = None,
                   head: int | None = None, max_tokens: int | None = 64) -> Picture:
    """Attention heatmaps of `lm` reading `text`, saved as attention*.png/.html in `out_dir`.

    The weights are `attention_maps(lm, text)`: the model's own forward pass. A long text is
    cut to its first `max_tokens` tokens (a readable picture), which the subtitle says. A
    translator has three attentions: `plot_translation_attention`.
    """
    maps = attention_maps(lm, text, max_tokens=max_tokens)
    ids = lm.encode_prompt(text)
    total = len(ids)
    kind = "decoder: each token reads itself and the past" if maps.causal else "encoder: each token reads both sides"
    title = f"Attention in {model_name(lm.path)} ({lm.family}, {kind})"
    cut = f" — first {len(maps.tokens)} of {total} tokens" if total > len(maps.tokens) else ""
    picture = attention_picture(maps, layer, head, title, f"«{shorten(text)}»{cut}",
                                token_texts(lm.tokenizer, ids[: len(maps.tokens)]),
                                name=_file_name("attention", layer, head))
    picture.extra["maps"] = maps
    return save_picture(picture, out_dir)


def plot_translation_attention(lm: TrainedModel, source: str, out_dir: str | Path, target: str | None = None,
                               layer: int | None = None, head: int | None = None,
                               max_tokens: int | None = 64) -> list[Picture]:
    """The translator `lm`'s three attentions reading `source` → `target` (default: its own greedy
    translation), saved in `out_dir` as attention-encoder, attention-decoder and attention-cross
    (.png/.html, with -layerN/-headN as `plot_attention`'s), returned in that order.

    The weights are `translation_attention(lm, source, target)`: one forward pass of the model.
    Rows are the queries: source tokens (and <|eos|>) for the encoder, target tokens (from <|bos|>)
    for the decoder and the cross-attention, whose columns are the source tokens. Each side is cut
    to its first `max_tokens` tokens, which the subtitle says, as it says whose translation is read.
    """
    tr = translation_attention(lm, source, target, max_tokens)
    check_index(layer, tr.encoder.size(0), "layer")  # before any file is written
    check_index(head, tr.encoder.size(1), "head")
    languages = lm.config.get("translation") or {}
    src_lang, tgt_lang = languages.get("source_lang", "en"), languages.get("target_lang", "fa")
    whose = "the target given" if tr.given else "the model's own translation"
    cuts = [f"{what} cut to its first {len(ids)} of {total} tokens"
            for what, ids, total in (("source", tr.source_ids, tr.source_total),
                                     ("target", tr.target_ids, tr.target_total)) if total > len(ids)]
    subtitle = f"«{shorten(source, SIDE_CHARS)}» → «{shorten(tr.target, SIDE_CHARS)}» ({whose})" + \
        "".join(f" — {c}" for c in cuts)
    src_labels, tgt_labels = token_texts(lm.tokenizer, tr.source_ids), token_texts(lm.tokenizer, tr.target_ids)
    model = f"{model_name(lm.path)} ({lm.family}, {src_lang} → {tgt_lang})"
    # Two title lines in the PNG (one panel is narrow); the HTML page joins them into one heading.
    views = {
        "encoder": (f"Encoder self-attention in {model}:\neach source token reads the whole source",
                    src_labels, src_labels, ("source token (reads)", "source token (is read)")),
        "decoder": (f"Decoder self-attention in {model}:\neach target token reads itself and the target before it",
                    tgt_labels, tgt_labels, ("target token (reads)", "target token (is read)")),
        "cross": (f"Cross-attention in {model}:\nwhich source token each target token looks at",
                  tgt_labels, src_labels, ("target token (reads)", "source token (is read)")),
    }
    pictures = []
    for kind in TRANSLATION_KINDS:
        title, rows, cols, axes = views[kind]
        maps = tr.maps(kind)
        picture = attention_picture(maps, layer, head, title, subtitle, rows, cols, axes,
                                    name=_file_name(f"attention-{kind}", layer, head))
        picture.extra["maps"], picture.extra["translation"] = maps, tr
        pictures.append(save_picture(picture, out_dir))
    return pictures
