"""Parallel data for translation: English–Persian sentence pairs -> a prepared folder.

`read_parallel(spec)` reads raw pairs, per split, from

* a folder of line-aligned files, ``train.en`` / ``train.fa`` (the suffixes are the two
  languages), optionally ``valid.*`` (or ``dev.*``) and ``test.*``; or ``train.tsv`` (optional
  ``valid.tsv`` / ``dev.tsv``, ``test.tsv``) in the same folder layout;
* a ``.tsv`` file of ``source<TAB>target`` lines: all of it is train;
* a file prefix ``DIR/NAME`` whose ``NAME.en`` and ``NAME.fa`` align (fairseq's ``--trainpref``
  form): all of it is train;
* ``hf:NAME_OR_PATH[:SPLIT]`` — a Hugging Face dataset with a ``translation`` column of
  ``{"en": …, "fa": …}`` rows (the OPUS layout). A named SPLIT is train; without one, a saved
  DatasetDict's (or a hub dataset's) train / validation (valid, dev) / test splits are read.

More training pairs may come from other sources (`prepare_parallel(add_train=…)`, a small
general-domain set beside a large in-domain one): only their train split is read, a pair whose
source sentence is in the valid or test split is left out (those sets score the model), and
each may be repeated — upsampled — so a small set is not drowned by a large one.

`clean_pairs` normalizes both sides (the Persian one with the project's `PersianNormalizer`)
and drops pairs with an empty side or a character-length ratio above `max_ratio` (the idea of
Moses' clean-corpus-n: such a pair is almost always misaligned). `prepare_parallel` then holds
out a valid split from train when there is none (`hold_out`: a source sentence is never in
both), trains one byte-level BPE on both languages of train (the model ties its embeddings
across encoder and decoder, so they share one vocabulary) and writes into `out_dir`:

* ``tokenizer.json``;
* ``{split}.safetensors``: int32 ``source_ids`` / ``target_ids`` (every sentence of the split,
  concatenated, no special tokens) and int64 ``source_offsets`` / ``target_offsets`` (n + 1
  each: sentence i is ``ids[offsets[i]:offsets[i + 1]]``);
* ``{split}.en`` / ``{split}.fa``: the cleaned sentences, one per line, as a person reads them
  and as BLEU's references;
* ``meta.json``, last: the languages, the vocabulary size and per split its pairs, tokens and
  filter counts.

As with `sokhan prepare`, everything is built in a temporary folder inside `out_dir` and moved
into place with the old ``meta.json`` removed first and the new one moved in last, so a failed
prepare never leaves a folder that looks complete. `ParallelData` opens such a folder and
checks what it reads (ids inside the vocabulary, offsets in bounds) before training sees it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy
from rich.console import Console

from sokhan.config import check_out_dir
from sokhan.config.base import json_kind
from sokhan.config.data import DECODE_ERROR_MODES
from sokhan.config.model import MAX_VOCAB
from sokhan.data.prepare import install
from sokhan.data.sources import iter_hf_rows, iter_lines, parse_hf
from sokhan.errors import SokhanError
from sokhan.text.normalize import normalize_source
from sokhan.text.tokenizers import Tokenizer, train_bpe

SPLITS = ("train", "valid", "test")
Pair = tuple[str, str]  # (source English, target Persian)

FORMAT = 1
KIND = "parallel"
# The file names each split may have in a folder, and a DatasetDict's names for it.
SPLIT_STEMS = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
HF_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}
# A language code names files ({split}.{lang}): letters, then optional -/_ parts (en, fa, pt-BR, zh_Hant).
LANG = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")
HOLD_OUT_MAX_FRACTION = 0.1
ENCODE_BATCH = 10_000  # sentences per encode_batch call: bounds the memory the encodings take
TENSORS = {"source_ids": np.int32, "target_ids": np.int32, "source_offsets": np.int64, "target_offsets": np.int64}


def _valid_forms(source_lang: str = "en", target_lang: str = "fa") -> str:
    return (f"a folder with line-aligned train.{source_lang}/train.{target_lang} (optional valid.* or dev.*, "
            f"test.*) or train.tsv, a .tsv file of source<TAB>target lines, a PREFIX of line-aligned "
            f"PREFIX.{source_lang}/PREFIX.{target_lang}, or hf:NAME_OR_PATH[:SPLIT]")


# --------------------------------------------------------------------------- reading

def read_parallel(spec: str, *, source_lang: str = "en", target_lang: str = "fa",
                  on_decode_error: str = "fail") -> dict[str, list[Pair]]:
    """The raw (source, target) pairs of each split `spec` has (see the module docstring); train always."""
    _check_langs(source_lang, target_lang)
    if on_decode_error not in DECODE_ERROR_MODES:
        raise SokhanError(f"unknown on_decode_error '{on_decode_error}' (choose {', '.join(DECODE_ERROR_MODES)})")
    if spec.startswith("hf:"):
        splits = _read_hf(spec[3:], source_lang, target_lang)
    else:
        p = Path(spec).expanduser()
        if p.is_dir():
            splits = _read_folder(p, source_lang, target_lang, on_decode_error)
        elif p.is_file() and p.suffix.lower() == ".tsv":
            splits = {"train": _read_tsv(p, on_decode_error)}
        elif any(Path(f"{p}.{lang}").is_file() for lang in (source_lang, target_lang)):
            splits = {"train": _read_aligned(Path(f"{p}.{source_lang}"), Path(f"{p}.{target_lang}"), on_decode_error)}
        else:
            why = "not a folder or a .tsv file" if p.exists() else "no such file, folder or file prefix"
            raise SokhanError(f"{spec}: {why}; valid forms: {_valid_forms(source_lang, target_lang)}")
    if "train" not in splits:
        raise SokhanError(f"{spec} has no train split; valid forms: {_valid_forms(source_lang, target_lang)}")
    return splits


def _check_langs(source_lang: str, target_lang: str) -> None:
    for lang in (source_lang, target_lang):
        if not LANG.fullmatch(lang):
            raise SokhanError(f"language code {lang!r} is not a code like 'en', 'fa' or 'pt-BR'")
    if source_lang == target_lang:
        raise SokhanError(f"source and target language are both '{source_lang}'")


def _read_folder(folder: Path, src: str, tgt: str, on_decode_error: str) -> dict[str, list[Pair]]:
    splits = {}
    for split, stems in SPLIT_STEMS.items():
        present = [s for s in stems if any((folder / f"{s}.{ext}").is_file() for ext in (src, tgt, "tsv"))]
        if len(present) > 1:
            raise SokhanError(f"{folder} has both {present[0]}.* and {present[1]}.* files; keep one {split} split")
        if not present:
            continue
        stem = present[0]
        tsv, src_file, tgt_file = (folder / f"{stem}.{ext}" for ext in ("tsv", src, tgt))
        if tsv.is_file() and (src_file.is_file() or tgt_file.is_file()):
            raise SokhanError(f"{folder} has both {tsv.name} and {stem}.{src}/{stem}.{tgt}; keep one form")
        splits[split] = _read_tsv(tsv, on_decode_error) if tsv.is_file() else \
            _read_aligned(src_file, tgt_file, on_decode_error)
    if "train" not in splits:
        raise SokhanError(f"{folder} has no train.{src}/train.{tgt} or train.tsv; "
                          f"valid forms: {_valid_forms(src, tgt)}")
    return splits


def _read_aligned(src_file: Path, tgt_file: Path, on_decode_error: str) -> list[Pair]:
    """Line i of one file with line i of the other.

    With on_decode_error='skip' an undecodable line is dropped by `iter_lines`; its partner is
    dropped too (pairs are joined on line numbers), so a bad byte never shifts the alignment.
    The line counts compared are the files' own, bad lines included.
    """
    for missing, present in ((src_file, tgt_file), (tgt_file, src_file)):
        if not missing.is_file():
            raise SokhanError(f"{missing} is missing: {present.name} needs its line-aligned translation")
    counts = [_count_lines(f) for f in (src_file, tgt_file)]
    if counts[0] != counts[1]:
        raise SokhanError(f"{src_file} has {counts[0]:,} lines but {tgt_file} has {counts[1]:,}: "
                          f"the files must be line-aligned")
    sources, targets = (dict(iter_lines(f, on_decode_error)) for f in (src_file, tgt_file))
    return [(sources[i], targets[i]) for i in range(1, counts[0] + 1) if i in sources and i in targets]


def _count_lines(path: Path) -> int:
    """Lines as `iter_lines` numbers them (cut at b'\\n'; a last line without one counts)."""
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _read_tsv(path: Path, on_decode_error: str) -> list[Pair]:
    """One pair per line, 'source<TAB>target'; blank lines are no pairs."""
    pairs = []
    for lineno, line in iter_lines(path, on_decode_error):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise SokhanError(f"{path}:{lineno}: expected 'source<TAB>target', found {len(parts) - 1} tabs")
        pairs.append((parts[0], parts[1]))
    return pairs


def _read_hf(rest: str, src: str, tgt: str) -> dict[str, list[Pair]]:
    name, split = parse_hf(rest)
    # parse_hf reads a whole existing path as the dataset (a path may hold ':'), else NAME:SPLIT,
    # and answers "train" when no split is named: here no split means "every split it has".
    named = not Path(rest).expanduser().exists() and bool(rest.partition(":")[2])
    if named:
        return {"train": _hf_pairs(name, split, src, tgt)}
    present = _hf_split_names(name)
    if present is None:  # one saved Dataset, no splits: all of it is train
        return {"train": _hf_pairs(name, "train", src, tgt)}
    splits = {}
    for ours, theirs in HF_SPLITS.items():
        found = [s for s in theirs if s in present]
        if len(found) > 1:
            raise SokhanError(f"hf:{name} has both '{found[0]}' and '{found[1]}' splits; "
                              f"name the one to train on: hf:{name}:SPLIT")
        if found:
            splits[ours] = _hf_pairs(name, found[0], src, tgt)
    if "train" not in splits:
        raise SokhanError(f"hf:{name} has no train split (splits: {', '.join(present)}); "
                          f"name the one to train on: hf:{name}:SPLIT")
    return splits


def _hf_split_names(name: str) -> list[str] | None:
    """The split names of a saved DatasetDict or a hub dataset; None for one saved Dataset."""
    import datasets  # slow to import: only when a hf: source is actually read

    local = Path(name).expanduser()
    try:
        if local.is_dir():
            ds = datasets.load_from_disk(str(local))
            return list(ds) if isinstance(ds, datasets.DatasetDict) else None
        return list(datasets.get_dataset_split_names(name))
    except Exception as e:  # the library raises many kinds; the user needs its first line
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SokhanError(f"hf:{name}: cannot load dataset ({reason})") from None


def _hf_pairs(name: str, split: str, src: str, tgt: str) -> list[Pair]:
    """The pairs of one split; a missing text (a null in Arrow's struct) is an empty side, cleaned away later."""
    pairs = []
    for i, row in enumerate(iter_hf_rows(name, split)):
        where = f"hf:{name}:{split} row {i}"
        if "translation" not in row:
            raise SokhanError(f"{where}: no column 'translation' (columns: {', '.join(map(str, row))}); "
                              f"expected rows like {{'translation': {{'{src}': …, '{tgt}': …}}}}")
        translation = row["translation"]
        if not isinstance(translation, dict):
            raise SokhanError(f"{where}: translation is {type(translation).__name__}, not a dict of languages")
        texts = []
        for lang in (src, tgt):
            if lang not in translation:
                raise SokhanError(f"{where}: translation has no '{lang}' "
                                  f"(keys: {', '.join(sorted(map(str, translation))) or 'none'})")
            text = translation[lang]
            if text is not None and not isinstance(text, str):
                raise SokhanError(f"{where}: translation['{lang}'] is {type(text).__name__}, not a string")
            texts.append(text or "")
        pairs.append((texts[0], texts[1]))
    return pairs


# --------------------------------------------------------------------------- cleaning

@dataclass
class FilterCounts:
    """What `clean_pairs` did to one split: pairs read, kept, dropped for an empty side, for the length ratio."""

    read: int
    kept: int
    empty: int
    ratio: int
    max_ratio: float = 3.0

    def __str__(self) -> str:
        ratio = ""
        if math.isfinite(self.max_ratio):  # valid and test are not filtered by ratio (`prepare_parallel`)
            ratio = f", {self.ratio:,} with a length ratio above {self.max_ratio:g}"
        return f"{self.read:,} pairs read: {self.kept:,} kept, {self.empty:,} with an empty side{ratio}"

    def to_dict(self) -> dict[str, int]:
        return {"read": self.read, "kept": self.kept, "empty": self.empty, "ratio": self.ratio}


def clean_pairs(pairs: Iterable[Pair], normalize_target: Callable[[str], str], *,
                max_ratio: float = 3.0) -> tuple[list[Pair], FilterCounts]:
    """Normalize both sides and drop the pairs that cannot be a translation; the order is kept.

    A pair goes when a side is empty after normalizing, or when the longer side has more than
    `max_ratio` times the characters of the shorter (clean-corpus-n's rule, on characters).
    A line break inside a target (from a TSV cell, a dataset, U+2028) becomes a space before
    the normalizer sees it: one sentence is one line of `{split}.fa`.
    """
    if not max_ratio >= 1:
        raise SokhanError(f"max_ratio must be at least 1 (a length ratio is never below 1), got {max_ratio}")
    kept: list[Pair] = []
    read = empty = ratio = 0
    for source, target in pairs:
        read += 1
        s, t = normalize_source(source), normalize_target(" ".join(target.splitlines())).strip()
        if not s or not t:
            empty += 1
        elif max(len(s), len(t)) / min(len(s), len(t)) > max_ratio:
            ratio += 1
        else:
            kept.append((s, t))
    return kept, FilterCounts(read, len(kept), empty, ratio, max_ratio)


def hold_out(pairs: list[Pair], size: int, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, valid): up to `size` pairs moved to valid, chosen by a hash of their source sentence.

    All pairs of one source sentence go together, so valid never holds a sentence train has.
    Sources are ranked by blake2b(seed, source) and taken in that order while their pairs fit
    in `size`: the same pairs on every machine and run (`prepare.hash_split` draws a fraction
    by the same hash; here a count is wanted).
    """
    groups = Counter(source for source, _ in pairs)
    chosen: set[str] = set()
    taken = 0
    for source in sorted(groups, key=lambda s: _rank(s, seed)):
        if taken == size:
            break
        if taken + groups[source] <= size:
            chosen.add(source)
            taken += groups[source]
    return [p for p in pairs if p[0] not in chosen], [p for p in pairs if p[0] in chosen]


def _rank(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00".encode() + key.encode("utf-8"), digest_size=8).digest(),
                          "little")


# --------------------------------------------------------------------------- preparing

def prepare_parallel(spec: str, out_dir: str | Path, normalize_target: Callable[[str], str], *,
                     vocab_size: int = 8000, max_ratio: float = 3.0, valid_size: int = 500, seed: int = 1337,
                     on_decode_error: str = "fail", source_lang: str = "en", target_lang: str = "fa",
                     add_train: Sequence[str] = (), add_repeat: int = 1, console: Console | None = None) -> Path:
    """Read, clean, split, tokenize and write `spec` into `out_dir` (the module docstring); returns `out_dir`.

    `add_train`: more sources whose train pairs join train, each pair `add_repeat` times."""
    console = console or Console(stderr=True)
    if valid_size < 1:
        raise SokhanError(f"valid_size must be at least 1, got {valid_size}")
    if add_repeat < 1:
        raise SokhanError(f"add_repeat must be at least 1, got {add_repeat}")
    raw = read_parallel(spec, source_lang=source_lang, target_lang=target_lang, on_decode_error=on_decode_error)
    added_raw = {extra: read_parallel(extra, source_lang=source_lang, target_lang=target_lang,
                                      on_decode_error=on_decode_error)["train"] for extra in add_train}
    check_out_dir(out_dir)
    out = Path(out_dir)
    if Path(spec).expanduser().is_dir() and Path(spec).expanduser().resolve() == out.resolve():
        raise SokhanError(f"out_dir {out} is the data folder itself (its train.{source_lang} would be overwritten); "
                          f"choose another out_dir")

    splits: dict[str, list[Pair]] = {}
    counts: dict[str, FilterCounts] = {}
    for split in (s for s in SPLITS if s in raw):
        # The ratio filter drops misaligned training pairs; a valid or test set is scored as published, whole.
        ratio = max_ratio if split == "train" else math.inf
        splits[split], counts[split] = clean_pairs(raw[split], normalize_target, max_ratio=ratio)
        console.print(f"{split}: {counts[split]}", markup=False, highlight=False, soft_wrap=True)
        if not splits[split]:
            raise SokhanError(f"{split}: no pair is left after cleaning ({counts[split]})")
    held_out = "valid" not in splits
    if held_out:
        size = min(valid_size, int(len(splits["train"]) * HOLD_OUT_MAX_FRACTION))
        splits["train"], splits["valid"] = hold_out(splits["train"], size, seed)
        if not splits["valid"]:
            raise SokhanError(f"cannot hold out a valid split from train's {len(splits['train']):,} pairs (at most "
                              f"10% of them, a source sentence's pairs together); add valid.{source_lang}/"
                              f"valid.{target_lang} or more data")
        console.print(f"valid: {len(splits['valid']):,} pairs held out from train (seed {seed})",
                      markup=False, highlight=False, soft_wrap=True)
        counts["valid"] = FilterCounts(len(splits["valid"]), len(splits["valid"]), 0, 0, max_ratio)
    added, added_info = _added_pairs(added_raw, splits, normalize_target, max_ratio, console)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-parallel-", dir=out))
    try:
        tok = train_bpe((text for pair in splits["train"] + added for text in pair), vocab_size)
        splits["train"] = splits["train"] + added * add_repeat
        info = {}
        for split in (s for s in SPLITS if s in splits):
            info[split] = _write_split(tok, splits[split], tmp, split, source_lang, target_lang)
            info[split]["filtered"] = counts[split].to_dict()
        if held_out:
            info["valid"]["held_out_from"] = "train"
        if added_info:
            info["train"]["added"] = [{**a, "repeat": add_repeat} for a in added_info]
        tok.save(tmp / "tokenizer.json")
        meta = {"format": FORMAT, "kind": KIND, "source": spec, "source_lang": source_lang,
                "target_lang": target_lang, "vocab_size": tok.vocab_size, "max_ratio": max_ratio, "seed": seed,
                "splits": info}
        _write(tmp / "meta.json", (json.dumps(meta, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        install(tmp, out, sorted(p.name for p in tmp.iterdir() if p.name != "meta.json"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return out


def _added_pairs(added_raw: dict[str, list[Pair]], splits: dict[str, list[Pair]],
                 normalize_target: Callable[[str], str], max_ratio: float, console: Console,
                 ) -> tuple[list[Pair], list[dict]]:
    """The cleaned pairs of each added source, less those whose source sentence is in valid or test."""
    scored = {source for split in ("valid", "test") for source, _ in splits.get(split, ())}
    added: list[Pair] = []
    info = []
    for extra, pairs in added_raw.items():
        cleaned, counts = clean_pairs(pairs, normalize_target, max_ratio=max_ratio)
        kept = [p for p in cleaned if p[0] not in scored]
        leaked = len(cleaned) - len(kept)
        note = f", {leaked:,} left out: their source is in valid or test" if leaked else ""
        console.print(f"train + {extra}: {counts}{note}", markup=False, highlight=False, soft_wrap=True)
        if not kept:
            raise SokhanError(f"{extra}: no pair is left to add to train ({counts}{note})")
        added += kept
        info.append({"source": extra, "pairs": len(kept), "overlap_left_out": leaked})
    return added, info


def _write_split(tok: Tokenizer, pairs: list[Pair], tmp: Path, split: str, src: str, tgt: str) -> dict:
    tensors: dict[str, np.ndarray] = {}
    for side, lang, texts in (("source", src, [s for s, _ in pairs]), ("target", tgt, [t for _, t in pairs])):
        tensors[f"{side}_ids"], tensors[f"{side}_offsets"] = _encode(tok, texts)
        _write(tmp / f"{split}.{lang}", "".join(text + "\n" for text in texts).encode("utf-8"))
    _write(tmp / f"{split}.safetensors", safetensors.numpy.save(tensors))
    return {"pairs": len(pairs), "source_tokens": int(tensors["source_ids"].size),
            "target_tokens": int(tensors["target_ids"].size)}


def _encode(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids of all texts concatenated as int32, int64 offsets of length len(texts) + 1)."""
    chunks, lengths = [], []
    for start in range(0, len(texts), ENCODE_BATCH):
        encoded = tok.encode_batch(texts[start:start + ENCODE_BATCH])  # as plain text: '<|eos|>' is characters
        lengths += [len(ids) for ids in encoded]
        chunks.append(np.fromiter((i for ids in encoded for i in ids), dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(chunks), offsets


def _write(path: Path, data: bytes) -> None:
    """Write and fsync: meta.json is moved in only over files that are on disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- reading a prepared folder

class ParallelData:
    """A prepared parallel folder opened for training/evaluation.

    meta.json is checked when the folder opens; a split's ids and offsets when it is read
    (`pairs`), so a tampered or mixed-up file is one line naming it, not an index error deep
    in training.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "meta.json"
        again = "prepare the data again (`sokhan translate-train` prepares it)"
        if not path.is_file():
            raise SokhanError(f"{self.folder} is not prepared parallel data (no meta.json); "
                              f"run `sokhan translate-train` to prepare it")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SokhanError(f"{path}: not valid JSON ({e}); {again}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise SokhanError(f"{path}: unsupported format {json_kind(fmt)}; {again}")
        if meta.get("kind") != KIND:
            raise SokhanError(f"{path}: kind is {json_kind(meta.get('kind'))}, not 'parallel' (a language-model "
                              f"dataset from `sokhan prepare`?); {again}")
        for key in ("source_lang", "target_lang"):
            if not isinstance(meta.get(key), str) or not LANG.fullmatch(meta[key]):
                raise SokhanError(f"{path}: {key} must be a language code, got {json_kind(meta.get(key))}; {again}")
        _check_int(meta, "vocab_size", 1, path, again, high=MAX_VOCAB)
        splits = meta.get("splits")
        if not isinstance(splits, dict) or "train" not in splits or not set(splits) <= set(SPLITS):
            raise SokhanError(f"{path}: splits must be an object with train (and valid, test); {again}")
        for split, info in splits.items():
            if not isinstance(info, dict):
                raise SokhanError(f"{path}: splits.{split} must be an object, got {json_kind(info)}; {again}")
            for key in ("pairs", "source_tokens", "target_tokens"):
                _check_int(info, key, 0, path, again, where=f"splits.{split}.")
        if not self.tokenizer_path.is_file():
            raise SokhanError(f"{self.folder} has no tokenizer.json; {again}")
        self.meta = meta

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / "tokenizer.json"

    def splits(self) -> list[str]:
        return [s for s in SPLITS if s in self.meta["splits"]]

    def _info(self, split: str) -> dict:
        if split not in self.meta["splits"]:
            raise SokhanError(f"{self.folder} has no '{split}' split (splits: {', '.join(self.splits())})")
        return self.meta["splits"][split]

    def pairs(self, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The token ids (int64 arrays) of each sentence of `split`: (sources, targets)."""
        info = self._info(split)
        path = self.folder / f"{split}.safetensors"
        again = "prepare the data again"
        if not path.is_file():
            raise SokhanError(f"{path} is missing; {again}")
        try:
            tensors = safetensors.numpy.load_file(str(path))
        except Exception as e:  # safetensors raises its own error type (and OSError, ValueError) on a bad file
            raise SokhanError(f"{path}: not a readable safetensors file ({e}); {again}") from None
        for name, dtype in TENSORS.items():
            t = tensors.get(name)
            if t is None or t.dtype != dtype or t.ndim != 1:
                what = "missing" if t is None else f"{t.dtype} of shape {tuple(t.shape)}"
                raise SokhanError(f"{path}: {name} must be a 1-D {np.dtype(dtype).name} tensor, got {what}; {again}")
        sides = []
        for side in ("source", "target"):
            ids, offsets = tensors[f"{side}_ids"], tensors[f"{side}_offsets"]
            if ids.size != info[f"{side}_tokens"] or offsets.size != info["pairs"] + 1:
                raise SokhanError(f"{path}: {ids.size} {side} ids and {offsets.size} offsets, but meta.json says "
                                  f"{info[f'{side}_tokens']} ids and {info['pairs']} pairs; {again}")
            if offsets[0] != 0 or offsets[-1] != ids.size or np.any(np.diff(offsets) < 0):
                raise SokhanError(f"{path}: {side}_offsets do not run from 0 up to the {ids.size} ids; {again}")
            if ids.size and (ids.min() < 0 or ids.max() >= self.meta["vocab_size"]):
                bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
                raise SokhanError(f"{path}: {side}_ids holds token id {bad}, outside the vocabulary of "
                                  f"{self.meta['vocab_size']} in meta.json; {again}")
            sides.append(np.split(ids.astype(np.int64), offsets[1:-1]))
        return sides[0], sides[1]

    def texts(self, split: str) -> tuple[list[str], list[str]]:
        """The cleaned sentences of `split` (`{split}.en`, `{split}.fa`): (sources, targets)."""
        info = self._info(split)
        sides = []
        for lang in (self.meta["source_lang"], self.meta["target_lang"]):
            path = self.folder / f"{split}.{lang}"
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise SokhanError(f"{path} is missing; prepare the data again") from None
            except UnicodeDecodeError as e:
                raise SokhanError(f"{path}: not valid UTF-8 ({e.reason}); prepare the data again") from None
            lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
            if len(lines) != info["pairs"]:
                raise SokhanError(f"{path} has {len(lines)} lines but meta.json says {info['pairs']} pairs; "
                                  f"prepare the data again")
            sides.append(lines)
        return sides[0], sides[1]


def _check_int(values: dict, key: str, low: int, path: Path, again: str, where: str = "",
               high: int | None = None) -> None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"≥ {low}"
        raise SokhanError(f"{path}: {where}{key} must be a whole number {limit}, got {json_kind(value)}; {again}")

