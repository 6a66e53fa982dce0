"""A sequence classifier: a pretrained Transformer (GPT or BERT) and a linear head over one pooled state.

The pretrained stack is kept whole (its token head too, so that its weights keep their names and
load as they were saved); a new linear layer reads one vector per sequence and scores every
label. What that vector is, is the `pooling`:

* ``first``: the final hidden state of the first position, ``<|bos|>``. BERT (Devlin et al. 2019,
  §3 and §4.1) uses the state of [CLS], the first token, as "the aggregate sequence representation"
  and puts a classification layer on it. Only a bidirectional encoder can: in a GPT the first
  position has seen nothing but itself, so a GPT is refused it.
* ``last``: the final hidden state of the last real token. GPT-1 (Radford et al. 2018, §3.3) feeds
  "the last transformer block's activation" at the extract token to an added linear output layer;
  in a left-to-right model it is the only position that has read the whole input. Rows are padded
  on the right, so the last real token of row b is at position length_b − 1.
* ``mean``: the mean of the final states of the real tokens (padding left out): every position
  counts alike.

A post-norm stack ends in a norm already; a pre-norm one gets its final norm before pooling,
as its token head does. Dropout at the model's rate is applied to the pooled vector while
training (GPT-1 §4.1: "dropout to the classifier with a rate of 0.1"; BERT's fine-tuning head
does the same). BERT's pooler (a tanh layer trained by next-sentence prediction) is left out: a
sokhan BERT is pretrained without that task (RoBERTa's recipe), so there is no such layer to reuse.

A pair of texts is read in one of two ways (`pair_encoding`):

* ``joint``: one sequence, ``<|bos|> text <|eos|> pair <|eos|>`` (GPT-1 §3.3, BERT §3): every layer
  can compare the two texts, but it must learn to.
* ``separate``: each text read alone by the same stack and pooled, u and v, and the head reads
  (u, v, |u − v|, u ∗ v): InferSent's matching of two sentence vectors for inference (Conneau et
  al. 2017, §3.1), fine-tuned end to end as Sentence-BERT does (Reimers & Gurevych 2019, §3, whose
  ablation drops u ∗ v; with the demo's GPT on ParsiNLU entailment the product measured better,
  39–41 % against 36.5 % on test_natural). |u − v| and u ∗ v hand the head how far apart and how
  alike the two texts are, which a joint reader has to discover. Measured with the demo's
  1 M-parameter GPT (README, "Task evaluation"): joint stays at the majority class on entailment
  and paraphrase, separate beats it on both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.config import ClassifierConfig, ModelConfig
from sokhan.errors import SokhanError
from sokhan.models.components import dropout
from sokhan.models.gpt import TransformerLM
from sokhan.models.protocol import Capabilities, ModelOutput

BACKBONES = ("gpt", "bert")  # the families a classifier is built on: they share `TransformerLM`'s stack
HEAD_STD = 0.02  # the head's initial weights, as every other weight of the stack (GPT-2's N(0, 0.02))


def check_backbone(family: str, pooling: str) -> None:
    """A classifier is a Transformer's, and reads a position that has seen the whole input (module docstring)."""
    if family not in BACKBONES:
        raise SokhanError(f"a classifier is built on a Transformer (gpt or bert), not on a '{family}' model")
    if family == "gpt" and pooling == "first":
        raise SokhanError("pooling 'first' reads the first position, which in a left-to-right model (gpt) has "
                          "seen only itself; use last or mean")


class TransformerClassifier(TransformerLM):
    """A GPT (look-ahead mask kept) or BERT stack with a label head; `forward` gives (B, labels) scores."""

    capabilities: ClassVar[Capabilities] = Capabilities(causal=False, attention=True, classifies=True)

    def __init__(self, cfg: ModelConfig, classifier: ClassifierConfig):
        check_backbone(cfg.family, classifier.pooling)
        super().__init__(cfg, causal_attention=cfg.family == "gpt")
        self.labels, self.pooling = list(classifier.labels), classifier.pooling
        self.separate = classifier.pair_encoding == "separate"
        self.head = nn.Linear(cfg.n_embd * (4 if self.separate else 1), len(self.labels))
        nn.init.normal_(self.head.weight, mean=0.0, std=HEAD_STD)
        nn.init.zeros_(self.head.bias)

    @property
    def reads_both_ways(self) -> bool:
        return self.config.family != "gpt"

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                padding: torch.Tensor | None = None, pair: torch.Tensor | None = None,
                pair_padding: torch.Tensor | None = None, cache: object = None, need_weights: bool = False,
                last_only: bool = False) -> ModelOutput:
        """Label scores of each row of `idx` (B, T), right-padded, `padding` (B, T) 1 for real tokens (None:
        every token is real); with `targets` (B,) label indices, their mean cross-entropy. A classifier that
        reads pairs separately takes the second texts as `pair` (B, T2) and `pair_padding`; the attention
        pictures read one text alone (`need_weights` without a pair), and score it as paired with itself."""
        if cache is not None:
            raise ValueError("a classifier reads whole sequences; it has no cache")
        pooled, attentions = self.read(idx, padding, need_weights)
        if self.separate:
            if pair is None and not need_weights:
                raise ValueError("this classifier reads the two texts of a pair separately: give the pair")
            other = pooled if pair is None else self.read(pair, pair_padding, False)[0]
            pooled = torch.cat([pooled, other, (pooled - other).abs(), pooled * other], dim=-1)
        logits = self.head(dropout(pooled, self.config.dropout, self.training))
        loss = F.cross_entropy(logits.float(), targets) if targets is not None else None
        return ModelOutput(logits, loss, attentions)

    def read(self, idx: torch.Tensor, padding: torch.Tensor | None,
             need_weights: bool) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """One pooled vector per row of `idx` (B, C), and the attention weights when `need_weights`."""
        real = padding if padding is not None else torch.ones_like(idx)
        # Right padding is never seen by a real token under the look-ahead mask, so a GPT needs no padding mask
        # (and keeps the fused attention kernel); an encoder reads both ways and must be told where text ends.
        x, attentions = self.stack(idx, padding=padding if self.reads_both_ways else None, need_weights=need_weights)
        return self.pool(self.final_norm(x), real), attentions

    def pool(self, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """One vector per row of `hidden` (B, T, C), reading the real positions only (module docstring)."""
        if self.pooling == "first":
            return hidden[:, 0]
        if self.pooling == "last":
            last = real.long().sum(dim=1).clamp(min=1) - 1
            return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        weights = real.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one (N, longest) tensor padded on the right with `pad_id`, and their lengths (N,)."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    idx = torch.full((len(rows), int(lengths.max()) if rows else 0), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        idx[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return idx, lengths


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(N, width) True at the real tokens of rows of these lengths, padded on the right."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
