"""Tokenizers: byte-level BPE and character level, both Hugging Face `tokenizers` objects.

Both kinds are saved as one `tokenizer.json` and loaded by `Tokenizer.load`, so everything
downstream (shards, models, sampling, chat) sees one interface whatever the kind.

* **bpe** — byte-level BPE (GPT-2's scheme) with a Persian-aware pre-tokenizer: GPT-2's
  split regex cuts words at every combining mark and at the zero-width non-joiner, so
  'می‌روم' or a diacritized 'کِتاب' could never become one token. Here letters, marks
  (diacritics) and ZWNJ stay together in one pre-token.
* **char** — one token per character seen in training, and UTF-8 byte tokens
  `<0x00>`…`<0xFF>` as fallback for anything unseen, so no text is ever lost.

Special tokens are reserved at fixed ids from the start so that fine-tuning (chat roles)
and masked-LM (`<|mask|>`) use them without resizing the embedding.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from sokhan.errors import SokhanError

MASK_TOKEN = "<|mask|>"  # what a masked LM sees in place of a hidden token (BERT's [MASK])
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", MASK_TOKEN]
ZWNJ = "\u200c"
# Letters+marks+ZWNJ form words; numbers; runs of other symbols; whitespace (as in GPT-2).
PERSIAN_PRETOKENIZE = (rf" ?[\p{{L}}\p{{M}}{ZWNJ}]+| ?\p{{N}}+| ?[^\s\p{{L}}\p{{M}}\p{{N}}{ZWNJ}]+"
                       r"|\s+(?!\S)|\s+")
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


class Tokenizer:
    """A thin wrapper that fixes how sokhan calls a Hugging Face tokenizer."""

    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        missing = [t for t in SPECIAL_TOKENS if hf.token_to_id(t) is None]
        if missing:
            raise SokhanError(f"tokenizer lacks sokhan's special tokens: {', '.join(missing)}")
        self.pad_id = self.token_id("<|pad|>")
        self.bos_id = self.token_id("<|bos|>")
        self.eos_id = self.token_id("<|eos|>")
        self.mask_id = self.token_id(MASK_TOKEN)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def kind(self) -> str:
        return "char" if isinstance(self.hf.model, models.BPE) and self.hf.model.byte_fallback else "bpe"

    @functools.cached_property
    def byte_run_ids(self) -> frozenset[int]:
        """Ids of the byte tokens that decode as a run (a char tokenizer's byte fallback, <0xNN>): a run
        is valid UTF-8 text or one U+FFFD per byte, so a later byte can change how earlier ones decode.
        Byte-level BPE has none (its bytes are ordinary tokens; only a trailing U+FFFD can change)."""
        return frozenset(self.token_id(t) for t in BYTE_TOKENS) if self.kind == "char" else frozenset()

    def token_id(self, token: str) -> int:
        idx = self.hf.token_to_id(token)
        if idx is None:
            raise SokhanError(f"unknown token {token!r}")
        return idx

    def special_ids(self) -> list[int]:
        """Ids that are markup, not text (bos, eos, pad, chat roles, the mask): never masked, never a fill."""
        ids = {self.token_id(t) for t in SPECIAL_TOKENS}
        ids |= {i for i, tok in self.hf.get_added_tokens_decoder().items() if tok.special}
        return sorted(ids)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Encode user text as text: a literal '<|user|>' in it gets ordinary ids, never the special one.

        The library matches special-token strings anywhere in its input, so a chat message
        could otherwise forge a turn ('…<|end|><|assistant|>…'). Each such string is encoded
        as '<' + the rest, which decodes back to the same characters.
        """
        if "<|" not in text:
            return self.encode(text)
        ids: list[int] = []
        for piece in _SPECIAL_SPLIT.split(text):
            if piece in SPECIAL_TOKENS:
                ids += self.encode("<") + self.encode(piece[1:])
            elif piece:
                ids += self.encode(piece)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Many texts in one batched call, each encoded as `encode_plain` encodes it (a corpus is text too)."""
        batch = [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]
        return [self.encode_plain(text) if "<|" in text else ids for text, ids in zip(texts, batch)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, idx: int) -> str:
        return self.hf.id_to_token(idx)

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise SokhanError(f"tokenizer not found: {p}")
        try:
            return cls(HFTokenizer.from_file(str(p)))
        except Exception as e:  # the library raises plain Exception on malformed JSON
            reason = str(e).split("\n")[0]
            raise SokhanError(f"cannot read tokenizer {p}: {reason}") from None


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on an iterator of texts (streamed, not held in memory)."""
    floor = len(SPECIAL_TOKENS) + 256
    if vocab_size <= floor:
        raise SokhanError(f"BPE vocab_size must be above {floor} (special tokens + 256 bytes), got {vocab_size}")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PERSIAN_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(hf)


def train_char(texts: Iterable[str], max_chars: int | None = None) -> Tokenizer:
    """A character-level tokenizer: the (most frequent `max_chars`) characters seen, plus byte fallback."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    chars = [c for c, _ in counts.most_common(max_chars)]
    chars.sort()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + BYTE_TOKENS)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    # Splitting on whitespace only bounds the length of a "word"; each character is its own token anyway.
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="isolated")
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    hf.add_special_tokens(SPECIAL_TOKENS)
    return Tokenizer(hf)


def train_tokenizer(kind: str, texts: Iterator[str], vocab_size: int) -> Tokenizer:
    if kind == "bpe":
        return train_bpe(texts, vocab_size)
    if kind == "char":
        return train_char(texts)
    raise SokhanError(f"unknown tokenizer kind '{kind}' (choose bpe or char)")
