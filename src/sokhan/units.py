"""Bits per character: the one scale on which every model family and tokenizer compares.

bpc = −Σ log₂ p(token | context) ÷ number of characters. A BPE model spends fewer, harder
predictions per character than a character-level one; dividing by characters (not tokens)
puts both on the same footing. Training, evaluation, the leaderboard and the curves all
convert with this one function; `sokhan.eval.bpc` computes the log-likelihood it divides.
"""

from __future__ import annotations

import math

LN2 = math.log(2)  # nats per bit


def bits_per_char(nats: float, chars: int) -> float:
    """Total negative log-likelihood in nats (natural log) → bits per character of a text of `chars` characters."""
    return nats / LN2 / chars
