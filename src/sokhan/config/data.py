"""Configs of the first step: how text is normalized and how `sokhan prepare` turns a corpus into shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option
from sokhan.config.model import MAX_VOCAB
from sokhan.errors import SokhanError

DOC_SPLITS = ("blank-line", "line", "file")    # how a text file is cut into documents (sokhan.data.sources)
DECODE_ERROR_MODES = ("fail", "skip")          # what an undecodable line does
BPE_MIN_VOCAB = 8 + 256 + 1  # sokhan's 8 special tokens and the 256 bytes, and at least one merge (text/tokenizers)


def check_bpe_vocab(tokenizer: str, vocab_size: int) -> None:
    if tokenizer == "bpe" and vocab_size < BPE_MIN_VOCAB:
        raise SokhanError(f"vocab_size must be ≥ {BPE_MIN_VOCAB} for a BPE tokenizer (special tokens + 256 bytes), "
                          f"got {vocab_size}")


# The normalizer's options, declared once: `NormalizerConfig` has them, and `PrepareConfig` (whose
# flags set them for a corpus) too.
def _digits() -> str:
    return option("persian", "which digits numbers are written with: persian (۰–۹), latin (0–9), or keep them "
                  "as they are", choices=("persian", "latin", "keep"), what="digits")


def _remove_diacritics() -> bool:
    return option(False, "remove the vowel signs (fatha … sukun, shadda, tanwin, superscript alef); madda and "
                  "hamza spell letters and stay")


def _join_affixes() -> bool:
    return option(True, "fix the two commonest spacing errors: 'می روم' → 'می‌روم', 'کتاب ها' → 'کتاب‌ها'")


@dataclass(frozen=True)
class NormalizerConfig(Config):
    """Read from a model's config.json; on the command line its options are `prepare`'s (no TOML table of its own)."""

    digits: str = _digits()
    remove_diacritics: bool = _remove_diacritics()
    join_affixes: bool = _join_affixes()


@dataclass(frozen=True)
class PrepareConfig(Config):
    section: ClassVar[str] = "prepare"

    source: str = option("hafez", "where documents come from: hafez or fatol-hafez (the Divan, installed with "
                         "pip), a .txt/.md/.jsonl/.parquet file, a folder of them, hf:NAME_OR_PATH[:SPLIT] (a "
                         "Hugging Face dataset, streamed), or several joined with commas")
    out_dir: str = option("runs/data/hafez", "the data folder to write: the train-NNNNN.bin and val-NNNNN.bin "
                          "shards, tokenizer.json, meta.json")
    tokenizer: str = option("bpe", "byte-level BPE, or one token per character (with byte fallback)",
                            choices=("bpe", "char"), what="tokenizer kind")
    vocab_size: int = option(4096, "BPE vocabulary size, special tokens and the 256 bytes included", low=1,
                             high=MAX_VOCAB)
    val_fraction: float = option(0.05, "share of documents held out for validation (split by a hash of each "
                                 "document's opening, so two editions of a poem land together)",
                                 low=0, high=0.5, low_open=True)
    seed: int = option(1337, "seed of the train/validation split hash", low=SEED_MIN, high=SEED_MAX)
    text_field: str = option("text", "the field that holds the text in .jsonl files and Hugging Face datasets")
    doc_split: str = option("blank-line", "how a .txt/.md file is cut into documents: at blank lines, at every "
                            "line, or the whole file as one", choices=DOC_SPLITS)
    on_decode_error: str = option("fail", "a line that is not valid UTF-8: stop with file:line, or skip it with "
                                  "a warning", choices=DECODE_ERROR_MODES)
    digits: str = _digits()
    remove_diacritics: bool = _remove_diacritics()
    join_affixes: bool = _join_affixes()
    workers: int = option(0, "processes that normalize and tokenize (0: one per CPU core; 1: none, all in this "
                          "process); the output is the same for any number", low=0, high=256)
    shard_tokens: int = option(100_000_000, "tokens per shard file (the last one of a split shorter); 100M "
                               "uint16 tokens are 200 MB", low=1024, high=2**31 - 1)
    tokenizer_max_chars: int = option(0, "train the tokenizer on the first this many characters of the train "
                                      "documents (0: all of them); for corpora larger than the BPE trainer "
                                      "needs", low=0)

    def check(self) -> None:
        check_bpe_vocab(self.tokenizer, self.vocab_size)

    def normalizer_config(self) -> NormalizerConfig:
        return NormalizerConfig(digits=self.digits, remove_diacritics=self.remove_diacritics,
                                join_affixes=self.join_affixes)
