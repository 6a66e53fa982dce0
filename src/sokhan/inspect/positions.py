"""Positional encodings: how a Transformer tells position 3 from position 30.

Attention alone is blind to order, so a Transformer adds (sinusoidal, learned) or applies
(RoPE) something that depends on the position. The picture shows that matrix, a few of its
dimensions as curves, and how alike two positions look to the model (cosine similarity).
For RoPE nothing is added: each pair of query/key dimensions is rotated by pos·θᵢ, so the
picture shows cos(pos·θᵢ), the frequencies θᵢ, and the score RoPE gives a pair of positions,
the mean of cos((m − n)·θᵢ), which depends only on their distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sokhan.errors import SokhanError
from sokhan.inspect.picture import XY, Heatmap, Picture, Series
from sokhan.inspect.render import model_name
from sokhan.inspect.save import save_picture
from sokhan.models.trained import TrainedModel


@dataclass
class Positions:
    kind: str                        # sinusoidal | learned | rope
    matrix: np.ndarray               # (positions, dims): added to the embeddings; RoPE: cos(pos·θᵢ) per pair i
    similarity: np.ndarray           # (positions, positions): cosine similarity of the position vectors
    frequencies: np.ndarray | None   # RoPE: θᵢ in radians per token, one per dimension pair


def _cosine(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def positional_encoding(lm: TrainedModel) -> Positions:
    """The model's own positional encoding, read from its weights and buffers (nothing recomputed)."""
    model = lm.model
    lm.require_attention("a positional encoding (a recurrent model or an n-gram knows order by reading in sequence)")
    kind = model.config.positional
    if kind == "none":
        raise SokhanError(f"{lm.path} was trained with positional='none': it has no positional encoding to show")
    if kind == "rope":
        half = model.config.head_size // 2
        cos = model.rope.cos[:, :half].double().cpu().numpy()  # "rotate half": pair i is dims (i, i + d/2)
        sin = model.rope.sin[:, :half].double().cpu().numpy()
        theta = np.arctan2(sin[1], cos[1]) if len(cos) > 1 else np.zeros(half)  # angle after one token
        # [cos, sin] per pair: their dot product between positions m and n is Σᵢ cos((m − n)·θᵢ).
        return Positions(kind, cos, _cosine(np.concatenate([cos, sin], axis=1)), theta)
    source = model.positions.table if kind == "sinusoidal" else model.positions.weight
    matrix = source.detach().double().cpu().numpy()
    return Positions(kind, matrix, _cosine(matrix), None)


def _some(count: int, even: bool) -> list[int]:
    """A handful of dimensions from fast to slow: first, second, a quarter, a half, the last."""
    picks = [0, 1, count // 4, count // 2, count - 1]
    if even:  # sinusoids come in (sin, cos) pairs: take the sin of each
        picks = [0, 1] + [min(p - p % 2, count - 2) for p in picks[2:]]
    return sorted({p for p in picks if 0 <= p < count})


def positions_picture(pos: Positions, title: str) -> Picture:
    n, dims = pos.matrix.shape
    places = [str(i) for i in range(n)]
    limit = float(np.abs(pos.matrix).max()) or 1.0
    what = {"sinusoidal": ("sinusoidal table: PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(…)",
                           "dimension of d_model", "value added to the embedding"),
            "learned": ("learned position embeddings (trained weights)", "dimension of d_model",
                        "value added to the embedding"),
            "rope": ("RoPE: cos(pos · θᵢ), the rotation of each query/key dimension pair",
                     "dimension pair i (dims i and i + head_size/2)", "cos(pos · θᵢ)")}[pos.kind]
    picks = _some(dims, even=pos.kind == "sinusoidal")
    label = "pair" if pos.kind == "rope" else "dim"
    panels = [
        Heatmap(pos.matrix, places, [str(j) for j in range(dims)], what[0], "position (tokens)", what[1], what[2],
                cmap="RdBu_r", vmin=-limit, vmax=limit),
        XY([Series(f"{label} {j}", np.arange(n), pos.matrix[:, j]) for j in picks],
           "a few of them against position" + ("" if pos.kind == "learned" else " (fast to slow)"),
           "position (tokens)", what[2]),
        Heatmap(pos.similarity, places, places,
                "RoPE's score of two positions: mean of cos((m − n) · θᵢ)" if pos.kind == "rope" else
                "cosine similarity between the position vectors", "position m (tokens)", "position n (tokens)",
                "cosine similarity", cmap="RdBu_r", vmin=-1.0, vmax=1.0),
    ]
    if pos.frequencies is not None:
        theta = pos.frequencies
        panels.append(XY([Series("θᵢ", np.arange(len(theta)), theta, "line+markers",
                                 labels=[f"wavelength 2π/θ = {2 * np.pi / t:,.1f} tokens" if t > 0 else "θ = 0"
                                         for t in theta])],
                         "rotation frequency of each dimension pair", "dimension pair i",
                         "θᵢ (radians per token, log scale)", log_y=True, legend=False))
    return Picture("positions", title, panels, columns=2, panel_size=(5.6, 4.6))


def plot_positions(lm: TrainedModel, out_dir: str | Path) -> Picture:
    """The positional encoding of `lm` as positions.png/.html in `out_dir`."""
    pos = positional_encoding(lm)
    n, dims = pos.matrix.shape
    title = f"Positional encoding of {model_name(lm.path)} ({lm.family}, {pos.kind}, {n} positions × {dims} " \
            f"{'dimension pairs per head' if pos.kind == 'rope' else 'dimensions'})"
    picture = positions_picture(pos, title)
    picture.extra["positions"] = pos
    return save_picture(picture, out_dir)
