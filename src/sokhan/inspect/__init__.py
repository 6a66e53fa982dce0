"""Pictures of a model's insides, each saved as NAME.png and a standalone NAME.html.

    >>> from sokhan import LanguageModel
    >>> from sokhan.inspect import plot_attention, plot_positions, plot_next_token, plot_embeddings, plot_curves
    >>> lm = LanguageModel.load("runs/demo/pretrain")
    >>> picture = plot_attention(lm, "دل من", "out/", layer=0)   # picture.png, picture.html, picture.panels
    >>> translator = LanguageModel.load("runs/translate")
    >>> encoder, decoder, cross = plot_translation_attention(translator, "I love books.", "out/")
    >>> plot_curves(["runs/gpt", "runs/lstm"], "out/")

Each `plot_*` returns the `Picture` it drew (its panels hold the very arrays in both files;
`plot_translation_attention` returns three: encoder, decoder, cross); `attention_maps`,
`translation_attention`, `positional_encoding`, `next_token_view`, `embedding_map` and
`read_run` return the numbers without drawing. The layers inside: data → `picture.py` (panels) →
`png.py` (matplotlib) and `html.py` + `view.js` (the page), both written by `save.py`.
"""

from sokhan.inspect.attention import (
    AttentionMaps,
    TranslationAttention,
    attention_maps,
    attention_picture,
    plot_attention,
    plot_translation_attention,
    translation_attention,
)
from sokhan.inspect.curves import RunCurves, curves_picture, draw_loss_curve, plot_curves, read_run
from sokhan.inspect.embeddings import EmbeddingMap, embedding_map, plot_embeddings
from sokhan.inspect.html import read_html_data
from sokhan.inspect.nexttoken import NextToken, next_token_view, plot_next_token
from sokhan.inspect.picture import XY, Bars, Heatmap, Picture, Series, Tokens
from sokhan.inspect.positions import Positions, plot_positions, positional_encoding
from sokhan.inspect.save import save_picture

__all__ = ["XY", "AttentionMaps", "Bars", "EmbeddingMap", "Heatmap", "NextToken", "Picture", "Positions",
           "RunCurves", "Series", "Tokens", "TranslationAttention", "attention_maps", "attention_picture",
           "curves_picture", "draw_loss_curve", "embedding_map", "next_token_view", "plot_attention", "plot_curves",
           "plot_embeddings", "plot_next_token", "plot_positions", "plot_translation_attention", "positional_encoding",
           "read_html_data", "read_run", "save_picture", "translation_attention"]
