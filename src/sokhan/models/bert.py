"""BERT: the same Transformer stack as GPT, attending both ways, trained as a masked LM.

Devlin et al. 2019 (§3.1, "Masked LM"): a bidirectional encoder cannot be trained to predict
the next token (every position would see its own answer), so a fraction of the input tokens
is hidden and the model predicts the originals from both sides. Here the encoder is the
shared `TransformerLM` with the look-ahead mask off (padding is still masked); the masking
lives in `sokhan.train.masking`, and `targets` hold the original id at masked positions and
IGNORE_INDEX everywhere else. As in RoBERTa (Liu et al. 2019) there is no next-sentence
task and no segment embedding. The output head is the (tied) final linear, like GPT's,
so both families share one state-dict layout.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from sokhan.constants import IGNORE_INDEX
from sokhan.models.gpt import TransformerLM
from sokhan.models.protocol import Capabilities


class BERT(TransformerLM):
    """Encoder-only: every real token sees every other; the loss counts masked positions only."""

    capabilities: ClassVar[Capabilities] = Capabilities(causal=False, attention=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the masked positions (targets ≠ IGNORE_INDEX).

        Unlike the plain mean, a batch where nothing happened to be masked gives 0, not NaN
        (0/0), so a short or unlucky batch cannot stop training with a "loss became nan".
        """
        flat = targets.flatten()
        total = F.cross_entropy(logits.flatten(0, 1).float(), flat, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (flat != IGNORE_INDEX).sum().clamp(min=1)
