"""The log-likelihood of a text under any causal model: what bits per character divide (`sokhan.units`).

Each family is scored the way it reads (its `capabilities` say which): an n-gram looks up
every token at once; a recurrent model reads the whole sequence in chunks, carrying its
hidden state, so every token sees all of its past; a Transformer, whose context is bounded,
slides a window.

One scoring rule for every text (`score_documents`): the text is cut into documents as
`sokhan prepare` cuts a corpus, each normalized document becomes ``[bos] ids [eos]``, the
documents are joined into one stream and `sequence_nll` scores it; bits per character divide
by Σ (len(document) + 1). That is how the leaderboard scores a dataset's val.bin, so
`sokhan eval` of a file holding exactly the val documents prints the leaderboard's figure.
Scoring a file as one document instead, blank lines included (a model trained on blank-line
documents never saw one), put a character-level GPT trained for 90 s on the first 90 % of tiny
Shakespeare at 4.00 bits/char on the last 10 %, against 3.57 on its own val split; read by
this rule, the last 10 % scores 3.56.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sokhan.config import PrepareConfig
from sokhan.data.fingerprint import TextFingerprint, short_fingerprint
from sokhan.data.sources import normalized_documents
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.text.tokenizers import Tokenizer
from sokhan.units import bits_per_char

__all__ = ["Score", "bits_per_char", "model_doc_split", "model_val_fingerprint", "score_documents", "sequence_nll"]

# What a model saved before its data's doc_split was recorded was prepared with: prepare's default.
DEFAULT_DOC_SPLIT = {f.name: f.default for f in dataclasses.fields(PrepareConfig)}["doc_split"]


@dataclass(frozen=True)
class Score:
    """What a text scored, and on which characters: the figure, what it divides by, and the text's fingerprint."""

    nll: float          # total negative log-likelihood, nats
    tokens: int         # predictions scored (every token but the first, a bos)
    chars: int          # Σ (len(normalized document) + 1): the +1 is the boundary, predicted as eos
    documents: int
    fingerprint: str    # `sokhan.data.fingerprint` of the documents scored, as meta.json records a split's

    @property
    def bits_per_char(self) -> float:
        return bits_per_char(self.nll, self.chars)

    @property
    def text(self) -> str:
        """The short fingerprint tables and messages show."""
        return short_fingerprint(self.fingerprint)


def score_documents(model: nn.Module, tokenizer: Tokenizer, normalize: Callable[[str], str], documents: Iterable[str],
                    block_size: int, stride: int | None = None, what: str = "the text") -> Score:
    """Score raw `documents` by the rule of the module docstring (normalized, stripped, empty ones dropped)."""
    text = TextFingerprint()
    ids: list[int] = []
    for doc in normalized_documents(documents, normalize):
        text.add(doc)
        ids += [tokenizer.bos_id, *tokenizer.encode_plain(doc), tokenizer.eos_id]
    if not text.documents:
        raise SokhanError(f"{what} has nothing to score: no document is left after normalization")
    nll, tokens = sequence_nll(model, ids, block_size, stride)
    return Score(nll, tokens, text.chars, text.documents, text.digest)


def model_doc_split(config: Mapping[str, Any]) -> str:
    """How the model's data cut text files into documents (its config.json, from meta.json); prepare's default
    for a model saved before that was recorded."""
    return config.get("data", {}).get("doc_split") or DEFAULT_DOC_SPLIT


def model_val_fingerprint(config: Mapping[str, Any]) -> str | None:
    """The fingerprint of the model's validation text, or None when its data did not record one."""
    return config.get("data", {}).get("splits", {}).get("val", {}).get("fingerprint")


@torch.inference_mode()
def sequence_nll(model: nn.Module, ids: list[int] | np.ndarray, block_size: int, stride: int | None = None,
                 ) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ids[1:] given what precedes, and how many were scored.

    A Transformer's sliding window re-reads up to `block_size − stride` earlier tokens as
    context and scores only the `stride` new ones, so every token is scored exactly once with
    at least that much context. The stride must lie in [1, block_size], whatever the family:
    a longer one would skip tokens, and one below 1 never reaches the end.
    """
    if stride is not None and not 1 <= stride <= block_size:
        raise SokhanError(f"stride must be between 1 and the model's context of {block_size} tokens, got {stride}")
    caps = model.capabilities
    if caps.lookup:
        return -float(model.log_probs(np.asarray(ids)).sum()), len(ids) - 1
    device = model_device(model)
    seq = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    if caps.carries_state:
        return _carried_nll(model, seq, block_size)
    stride = stride or max(1, block_size // 2)
    total, scored, pos = 0.0, 0, 1
    while pos < len(ids):
        end = min(pos + (block_size if pos == 1 else stride), len(ids))
        begin = max(0, end - 1 - block_size)
        logits = model(seq[begin: end - 1].unsqueeze(0)).logits[0].float()
        total += _nll(logits[pos - 1 - begin:], seq[pos:end])
        scored += end - pos
        pos = end
    return total, scored


def _carried_nll(model: nn.Module, seq: torch.Tensor, chunk: int) -> tuple[float, int]:
    cache = model.new_cache(1)
    total = 0.0
    for begin in range(0, len(seq) - 1, chunk):
        end = min(begin + chunk, len(seq) - 1)
        logits = model(seq[begin:end].unsqueeze(0), cache=cache).logits[0].float()
        total += _nll(logits, seq[begin + 1:end + 1])
    return total, len(seq) - 1


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return -torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).double().sum().item()
