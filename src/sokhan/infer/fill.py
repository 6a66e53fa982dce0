"""Fill in the blanks with a masked LM: the user writes `<mask>` where a token is missing.

    >>> lm = TrainedModel.load("runs/bert")
    >>> fill_masks(lm, "الا یا ایها الساقی ادر کأسا و <mask>ها")
    [[('ناول', 0.41), ...]]

The text is encoded as documents were in training (normalized, between bos and eos) with
the mask token where each `<mask>` stood, the model runs once, and each mask gets its own
distribution: a masked LM predicts the masks independently of one another (Devlin et al. 2019).
"""

from __future__ import annotations

import re

import torch

from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.models.trained import TrainedModel
from sokhan.text.tokenizers import MASK_TOKEN

USER_MASK = "<mask>"
_MARKER = re.compile(f"{re.escape(USER_MASK)}|{re.escape(MASK_TOKEN)}")


def _piece_text(lm: TrainedModel, piece: str, first: bool, last: bool) -> str:
    """The normalized text of the piece between two masks, keeping its edge whitespace.

    The normalizer strips text (it is meant for whole documents), but 'دل <mask>' and
    'دل<mask>' ask for different things: a word after a space, or the end of this word.
    """
    core = lm.normalize(piece)

    def edge(ws: str) -> str:
        return "\n" if "\n" in ws else " " if ws else ""

    lead = edge(piece[: len(piece) - len(piece.lstrip())]) if not first else ""
    trail = edge(piece[len(piece.rstrip()):]) if not last else ""
    if not core:  # only whitespace between two masks: one separator
        return lead or trail
    return lead + core + trail


def encode_with_masks(lm: TrainedModel, text: str) -> tuple[list[int], list[int]]:
    """(ids, mask positions): bos + the pieces with the mask id between them + eos."""
    pieces = _MARKER.split(text)
    if len(pieces) == 1:
        raise SokhanError(f"no {USER_MASK} in the text; write {USER_MASK} where a word is missing, "
                          f"e.g. 'دل {USER_MASK} ما'")
    tokenizer = lm.tokenizer
    mask_id = tokenizer.mask_id
    ids, positions = [tokenizer.bos_id], []
    for i, piece in enumerate(pieces):
        if i:
            positions.append(len(ids))
            ids.append(mask_id)
        ids += tokenizer.encode_plain(_piece_text(lm, piece, first=i == 0, last=i == len(pieces) - 1))
    ids.append(tokenizer.eos_id)
    return ids, positions


def context_window(length: int, positions: list[int], block_size: int) -> int:
    """Where a window of `block_size` tokens starts so that it holds every mask, with the
    spare context shared between their left and right (a `SokhanError` if they do not fit)."""
    if length <= block_size:
        return 0
    span = positions[-1] - positions[0] + 1
    if span > block_size:
        raise SokhanError(f"the {USER_MASK}s span {span} tokens, more than the model's context of {block_size}; "
                          f"fill them in separate calls")
    start = positions[0] - (block_size - span) // 2
    return max(0, min(start, length - block_size))


@torch.inference_mode()
def fill_masks(lm: TrainedModel, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each `<mask>` in `text`, left to right, the `top_k` (token text, probability) fills, best first.

    `lm` must hold a BERT-family model. The tokenizer's own mask token (`<|mask|>`) is
    accepted as the marker too. Probabilities come from the model's full softmax, but
    special tokens (bos, the mask itself, …) are never offered, so a mask's list sums to ≤ 1.
    """
    lm.require_masked(f"filling in {USER_MASK}s")
    if top_k < 1:
        raise SokhanError(f"top_k must be at least 1, got {top_k}")
    ids, positions = encode_with_masks(lm, text)
    start = context_window(len(ids), positions, lm.block_size)
    window = ids[start:start + lm.block_size]
    logits = lm.model(torch.tensor([window], device=model_device(lm.model))).logits[0]
    probs = torch.softmax(logits[[p - start for p in positions]].float(), dim=-1)
    vocab = min(probs.size(-1), lm.tokenizer.vocab_size)  # ids past the tokenizer's are padding rows
    special = lm.tokenizer.special_ids()
    offered = probs[:, :vocab].clone()
    offered[:, special] = -1.0  # below any probability: never in the top k
    k = min(top_k, vocab - len(special))
    best_p, best_i = offered.topk(k, dim=-1)
    return [[(lm.tokenizer.decode([int(i)]), float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(best_p.cpu(), best_i.cpu())]
