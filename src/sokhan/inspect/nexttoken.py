"""What a left-to-right model expects: the next token's top candidates, and how surprised it was by each token.

Surprisal is −log₂ p(token | the tokens before it), in bits: 0 for a certain guess, 1 for a
coin toss, more for a surprise. Its mean over a text, per character, is the text's bits per
character. Both views come from one forward pass over the text (the model's own logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.inspect.picture import CHAR_INCHES, LINE_INCHES, Bars, Picture, Tokens
from sokhan.inspect.render import is_rtl, model_name, shorten, token_texts
from sokhan.inspect.save import save_picture
from sokhan.models.trained import TrainedModel
from sokhan.units import LN2


@dataclass
class NextToken:
    ids: list[int]                  # the tokens read (after <|bos|>; a long text keeps its end)
    tokens: list[str]               # their text, made visible
    surprisal: np.ndarray           # bits per token; NaN where nothing came before it in the window
    top: list[tuple[str, float]]    # the k likeliest next tokens after the text, with probabilities
    cut: int                        # tokens dropped from the text's beginning to fit the window


@torch.inference_mode()
def next_token_view(lm: TrainedModel, text: str, k: int = 10, max_tokens: int | None = None) -> NextToken:
    """Run `lm` over `text` once: surprisal of every token and the top-k next tokens.

    A Transformer reads at most its context (block_size tokens; or `max_tokens`), so a long
    text keeps its end, whose continuation is the question.
    """
    lm.require_causal("the next-token picture")
    if not text.strip():
        raise SokhanError("give a text to look at")
    if k < 1:
        raise SokhanError("--top-k must be ≥ 1")
    ids = lm.encode_prompt(text)
    limit = lm.block_size if lm.capabilities.windowed else None  # recurrent and n-gram models read any length
    if max_tokens:
        limit = min(limit or max_tokens, max_tokens)
    cut = max(0, len(ids) - limit) if limit else 0
    ids = ids[cut:]
    logits = lm.model(torch.tensor([ids], device=model_device(lm.model))).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1).cpu()
    surprisal = np.full(len(ids), np.nan)
    if len(ids) > 1:
        picked = logp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
        surprisal[1:] = (-picked / LN2).double().numpy()
    probs, top = logp[-1].exp().topk(min(k, logp.size(-1)))
    names = token_texts(lm.tokenizer, top.tolist())
    return NextToken(ids, token_texts(lm.tokenizer, ids), surprisal, list(zip(names, probs.tolist())), cut)


def next_token_picture(view: NextToken, title: str, rtl: bool) -> Picture:
    k = len(view.top)
    finite = view.surprisal[np.isfinite(view.surprisal)]
    mean = f"mean {finite.mean():.2f} bits per token" if finite.size else "no token has a context"
    notes = [f"p = {2.0 ** -s:.2%}" if np.isfinite(s) else "first token: nothing before it" for s in view.surprisal]
    panels = [
        Bars([t for t, _ in view.top], np.array([p for _, p in view.top]),
             f"the {k} likeliest next tokens after the text", "next token", "probability"),
        Tokens(view.tokens, view.surprisal, f"surprisal of each token given the ones before it ({mean})",
               "surprisal −log₂ p(token | before) (bits)", rtl=rtl, notes=notes),
    ]
    width = 10.0
    lines = len(panels[1].lines(width / CHAR_INCHES))
    heights = [max(0.32 * k + 1.4, 2.5), LINE_INCHES * lines + 1.2]
    return Picture("next", title, panels, columns=1, panel_size=(width, heights[0]), row_heights=heights)


def plot_next_token(lm: TrainedModel, text: str, out_dir: str | Path, k: int = 10,
                    max_tokens: int | None = None) -> Picture:
    """Top-k next tokens (bars) and per-token surprisal (coloured tokens), saved as next.png/.html."""
    view = next_token_view(lm, text, k, max_tokens)
    cut = f" — its last {len(view.ids)} tokens" if view.cut else ""
    picture = next_token_picture(view, f"Next token under {model_name(lm.path)} ({lm.family})", is_rtl(text))
    picture.subtitle = f"«{shorten(text)}»{cut}"
    picture.extra["view"] = view
    return save_picture(picture, out_dir)
