"""The model protocol: what every family's model offers, so that one engine, one sampler and one scorer serve all.

Every family (`sokhan.models.FAMILIES`) is an `nn.Module` that reads one `ModelConfig` and

* declares what it can do in a class attribute `capabilities` (a `Capabilities`), which
  callers read instead of probing with `hasattr`: a masked encoder cannot sample, an n-gram
  has no attention maps, a recurrent model scores a long text by carrying its state;
* runs `forward(idx, targets=None, *, padding=None, cache=None, need_weights=False,
  last_only=False) -> ModelOutput`:
  - `idx` (B, T) token ids; `targets` (B, T) the ids to predict, or IGNORE_INDEX where
    nothing is (what a target means — the next token, a masked original — is the family's
    training task, `sokhan.train.tasks`);
  - `padding` (B, T_total) 1 for real tokens (a family that cannot pad refuses it);
  - `cache` from `new_cache(batch)`: continue after the tokens it holds and leave the new
    state there (KV cache, hidden state, n-gram history; `cache.length` counts the tokens);
  - `need_weights`: fill `ModelOutput.attentions` (families with `capabilities.attention`);
  - `positions` (families with `capabilities.batch_decodes` only): (B, T) each token's position
    in its own sequence, when rows of one cache are at different lengths;
  - `last_only`: logits of the last position only (sampling needs nothing else);
* and has `num_parameters()` (what a leaderboard calls its size), `input_embeddings()` (the
  token embedding matrix, or None for a model without one) and, when causal, `new_cache(batch)`.

A family with `capabilities.lookup` (the n-gram) is counted, not trained: `fit(tokens)`
counts a token stream and `log_probs(tokens)` scores one in a single call.

An encoder–decoder family (translation, `capabilities.needs_source`) fits the same shape:
its `forward` also takes `source=` (the source ids; `source_padding=` for a batch) and fills
`ModelOutput.cross_attentions` (and `encoder_attentions`); its cache holds the encoder's output, computed on the first
call with a source and reused for every generated token, so the encoder runs once per
sequence. Callers pass `source=` only to a model whose capabilities say it needs one.

A classifier (`capabilities.classifies`, made by `sokhan finetune --task classify`) is a
Transformer with a label head: its `forward` takes right-padded rows with their `padding` and
gives `logits` of shape (B, labels), its loss the cross-entropy against `targets` of shape (B,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch

from sokhan.config import ModelConfig


class ModelOutput(NamedTuple):
    """What `forward` returns, read by name: `model(x, y).loss`, `model(x).logits`."""

    logits: torch.Tensor                                 # (B, T, V): scores of each token at every position
    loss: torch.Tensor | None = None                     # mean cross-entropy against `targets`, when given
    attentions: list[torch.Tensor] | None = None         # need_weights: per layer, (B, heads, T_query, T_key)
    cross_attentions: list[torch.Tensor] | None = None   # encoder–decoder: target queries over source keys
    encoder_attentions: list[torch.Tensor] | None = None  # encoder–decoder: the encoder's self-attention


@dataclass(frozen=True)
class Capabilities:
    """What a family can do; every caller decides by these flags, never by the family's name or attributes."""

    causal: bool
    """Reads left to right and predicts the next token: it samples, chats and scores bits per character.
    False for a masked encoder (BERT), which sees both sides and fills in blanks."""

    attention: bool = False
    """A Transformer: `need_weights=True` fills `attentions`, it has a positional encoding, and it reads
    at most `block_size` tokens at once (longer texts are scored with a sliding window)."""

    carries_state: bool = False
    """Its cache is a running summary of the whole past (a recurrent hidden state): a text of any
    length is scored exactly by reading it in chunks and carrying the state."""

    lookup: bool = False
    """A table of counts (n-grams): counted by `fit(tokens)` instead of trained by gradients, and scores
    a whole stream by lookup with `log_probs(tokens)`; any context length, no window."""

    needs_source: bool = False
    """Conditions on a source sequence (an encoder–decoder): `forward(…, source=ids)`."""

    classifies: bool = False
    """A sequence classifier (`models/classifier.py`): `forward` gives one row of label scores per sequence,
    (B, labels), not a token distribution per position; it neither samples nor fills in blanks."""

    batch_decodes: bool = False
    """Decodes sequences of different lengths together, one step for all (`infer/batching.py`, a server's
    continuous batching): its cache is a `KVCache` whose rows can be left-padded, moved and shifted, and
    `forward` takes `positions=` (B, T), each token's position in its own sequence, with `padding`
    marking every row's padding."""

    @property
    def windowed(self) -> bool:
        """Its input is bounded by `block_size`: a long text must be cut or read through a sliding window."""
        return not (self.carries_state or self.lookup)


class Cache(Protocol):
    """The state a causal model carries between `forward` calls while sampling."""

    length: int  # tokens consumed so far


class FamilyModel(Protocol):
    """The interface of every family (see the module docstring); `sokhan.models.FAMILIES` holds the classes."""

    config: ModelConfig
    capabilities: ClassVar[Capabilities]

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                 padding: torch.Tensor | None = None, cache: Cache | None = None, need_weights: bool = False,
                 last_only: bool = False) -> ModelOutput: ...

    def new_cache(self, batch: int) -> Cache: ...

    def num_parameters(self) -> int: ...

    def input_embeddings(self) -> torch.Tensor | None: ...
