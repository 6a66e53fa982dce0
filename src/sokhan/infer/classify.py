"""A classifier's label probabilities for texts or text pairs, read as in fine-tuning.

Each input is laid out by the pair template the model was trained with (`sokhan.text.pair_template`,
named in its config.json) — a pair as one sequence, or each text alone for a classifier that reads
them separately — and the rows are scored in batches, longest first so that rows of a batch are
alike, padded on the right (the head reads only real positions). The probabilities are
the softmax of the head's scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.models.classifier import pad_right, padding_mask
from sokhan.models.trained import TrainedModel
from sokhan.text.pair_template import PairTemplate


@dataclass
class Probabilities:
    values: torch.Tensor  # (N, labels), each row sums to 1
    labels: list[str]
    cut: int              # inputs cut to fit the context


def check_input(lm: TrainedModel, pair: str | None) -> None:
    """A classifier of pairs reads pairs, one of single texts reads single texts (what it was trained on)."""
    fields = lm.config["classifier"]
    if fields["pair_field"] and pair is None:
        raise SokhanError(f"{lm.path} classifies text pairs ({fields['text_field']}, {fields['pair_field']}): give "
                          f"the second text too")
    if not fields["pair_field"] and pair is not None:
        raise SokhanError(f"{lm.path} classifies single texts ({fields['text_field']}): give one text, not a pair")


@torch.inference_mode()
def label_probabilities(lm: TrainedModel, texts: Sequence[str], pairs: Sequence[str | None] | None = None,
                        batch_size: int = 32) -> Probabilities:
    """The probability of every label for every text (and its pair), in the order given."""
    lm.require_classifier("label probabilities")
    pairs = pairs if pairs is not None else [None] * len(texts)
    template = PairTemplate(lm.tokenizer, lm.normalize, lm.block_size)
    separate = lm.config["classifier"].get("pair_encoding") == "separate"
    encoded = []
    for text, pair in zip(texts, pairs):
        check_input(lm, pair)
        encoded.append(template.encode_record(text, pair, separate))
    order = sorted(range(len(encoded)), key=lambda i: -sum(len(e.ids) for e in encoded[i]))
    values = torch.empty(len(encoded), len(lm.labels))
    device = model_device(lm.model)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        texts_read = [padded([encoded[i][k].ids for i in rows], lm.tokenizer.pad_id, device)
                      for k in range(len(encoded[rows[0]]))]
        idx, padding = texts_read[0]
        pair_idx, pair_padding = texts_read[1] if separate else (None, None)
        logits = lm.model(idx, padding=padding, pair=pair_idx, pair_padding=pair_padding).logits
        values[rows] = torch.softmax(logits.float(), dim=-1).cpu()
    return Probabilities(values, lm.labels, sum(any(e.cut for e in found) for found in encoded))


def padded(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the right and their padding mask, on `device`."""
    idx, lengths = pad_right(rows, pad_id)
    return idx.to(device), padding_mask(lengths, idx.size(1)).to(device)


def classify(lm: TrainedModel, text: str, pair: str | None = None) -> list[tuple[str, float]]:
    """Every label with its probability for one text (or pair), the likeliest first."""
    if not text.strip() or (pair is not None and not pair.strip()):
        raise SokhanError("give a text to classify (and its pair), not an empty one")
    probs = label_probabilities(lm, [text], [pair]).values[0]
    ranked = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
    return [(lm.labels[i], float(probs[i])) for i in ranked]
