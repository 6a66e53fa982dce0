"""The fingerprint of a scored text: which characters a bits-per-character figure divides by.

Two figures in bits per character compare only when they score the same characters: a
dataset prepared with another seed, validation fraction, source or normalizer option holds
another validation text, and a figure on it is not better or worse, just elsewhere. So
`sokhan prepare` records, for each split, a blake2b hash of exactly the characters that
bits per character divides by (each normalized document and its boundary, the eos, counted
as one character), and `sokhan eval` computes the same hash of the documents it scores
(`sokhan.eval.bpc.score_documents`); the leaderboard ranks together only runs whose
validation texts hash alike.

Each document enters the hash as its UTF-8 length (8 bytes) and then its bytes, so where
one document ends is part of what is hashed: "ab" + "c" and "a" + "bc" differ, as their
scores do (the boundary is a predicted token).
"""

from __future__ import annotations

import hashlib

SHORT = 8  # hex digits shown in tables and messages: 32 bits, plenty to tell a handful of texts apart


class TextFingerprint:
    """Fed one normalized document at a time; `digest` is the same however the documents are batched."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.documents = 0
        self.chars = 0

    def add(self, document: str) -> None:
        data = document.encode("utf-8")
        self._hash.update(len(data).to_bytes(8, "little") + data)
        self.documents += 1
        self.chars += len(document) + 1  # +1: the boundary (eos), as bits per character counts it

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


def short_fingerprint(fingerprint: str) -> str:
    """The first `SHORT` hex digits, as tables and messages show a fingerprint."""
    return fingerprint[:SHORT]
