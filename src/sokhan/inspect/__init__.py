"""Pictures of a model's insides, each saved as NAME.png and a standalone NAME.html.

    >>> from sokhan import LanguageModel
    >>> from sokhan.inspect import plot_attention, plot_positions, plot_next_token, plot_embeddings, plot_curves
    >>> lm = LanguageModel.load("runs/demo/pretrain")
    >>> picture = plot_attention(lm, "دل من", "out/", layer=0)   # picture.png, picture.html, picture.panels
    >>> plot_curves(["runs/gpt", "runs/lstm"], "out/")

Each `plot_*` returns the `Picture` it drew (its panels hold the very arrays in both files);
the `*_view`/`*_map`/`attention_maps` functions return the numbers without drawing.
Names are imported on first use, so `import sokhan.inspect.attention` (the server's) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AttentionMaps": "attention", "attention_maps": "attention", "attention_picture": "attention",
    "plot_attention": "attention",
    "Positions": "positions", "positional_encoding": "positions", "plot_positions": "positions",
    "NextToken": "nexttoken", "next_token_view": "nexttoken", "plot_next_token": "nexttoken",
    "EmbeddingMap": "embeddings", "embedding_map": "embeddings", "plot_embeddings": "embeddings",
    "RunCurves": "curves", "read_run": "curves", "plot_curves": "curves", "plot_loss_curve": "curves",
    "Picture": "picture", "Heatmap": "picture", "Bars": "picture", "Tokens": "picture", "XY": "picture",
    "Series": "picture",
    "display": "render", "shape": "render", "visible": "render", "token_texts": "render",
    "read_html_data": "html",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sokhan.inspect' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sokhan.inspect.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
