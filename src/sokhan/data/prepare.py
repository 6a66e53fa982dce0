"""`sokhan prepare`: a corpus -> normalized, split, tokenized `train.bin` / `val.bin`.

Pipeline (everything streams; neither the corpus nor its token ids are ever held whole):

1. read raw documents (`sokhan.data.sources.iter_documents`) and normalize each one
   (`PersianNormalizer`); whitespace-only documents are dropped;
2. split by *document*, deterministically: blake2b(seed, the document's opening) -> a number
   in [0, 1); below `val_fraction` goes to val. Documents that open alike (duplicates, two
   editions of one ghazal) land in the same split, so no text is in both. (Python's `hash()` is
   randomized per process, so it is not used.)
   The normalized documents are cached in two temporary JSONL files as they go by, so the
   source is read once (a streamed hub dataset is downloaded once);
3. train the tokenizer on the train documents only (val stays unseen, for honest eval);
4. encode in batches of `ENCODE_BATCH` documents, each as ``[bos] + ids + [eos]`` (as plain
   text: a literal '<|user|>' in a document is characters, not the special token), appending
   to `train.bin` / `val.bin`: raw little-endian uint16 (uint32 if the vocabulary does not
   fit) arrays, readable with `np.memmap` (see `sokhan.data.shards`);
5. write `tokenizer.json` and, last, `meta.json`: per split its documents, tokens, characters
   and the fingerprint of its text (`sokhan.data.fingerprint`), and the `doc_split`, which
   `sokhan eval` reuses to cut a file into documents as this corpus was cut (`file` for a
   corpus of records: see `sokhan.data.sources.eval_doc_split`).

Outputs are built in a temporary folder inside `out_dir` and moved into place only when all
of them are complete; the old `meta.json` is removed first and the new one moved in last, so
a failed or interrupted prepare never leaves a dataset that looks complete (and a failure
before the final moves leaves the previous dataset untouched). Other files in `out_dir` are
left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from sokhan.config import PrepareConfig, check_out_dir
from sokhan.data.fingerprint import TextFingerprint
from sokhan.data.sources import eval_doc_split, iter_documents, letters_key, normalized_documents
from sokhan.errors import SokhanError
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import Tokenizer, train_tokenizer

FORMAT = 1
ENCODE_BATCH = 512          # documents per encode_batch call
UINT16_MAX_VOCAB = 65535    # vocab sizes up to this are stored as uint16, larger as uint32
MIN_VAL_DOCUMENTS = 2
MIN_VAL_TOKENS = 64
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """The on-disk dtype for token ids: little-endian uint16 when every id fits, else uint32."""
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


def dtype_name(dtype: np.dtype) -> str:
    return np.dtype(dtype).name  # "uint16" / "uint32" (byte order is always little-endian on disk)


def split_of(text: str, seed: int, val_fraction: float) -> str:
    """'train' or 'val' for a normalized document: stable across runs, machines, Python versions.

    The hash is of the document's *opening* (its first line reduced to letters, without
    diacritics), not its whole text: two editions of one poem — `hafez` and the diacritized
    `fatol-hafez` — open alike and so land in the same split, so val does not hold a text
    that train holds in another spelling (489 of the 495 ghazals open identically in both).
    """
    return hash_split(letters_key(text.split("\n", 1)[0]), seed, val_fraction)


def hash_split(key: str, seed: int, val_fraction: float) -> str:
    """'val' for a `val_fraction` of keys, by blake2b (never Python's per-process `hash()`)."""
    h = hashlib.blake2b(f"{seed}\x00".encode() + key.encode("utf-8"), digest_size=8).digest()
    return "val" if int.from_bytes(h, "little") / 2.0**64 < val_fraction else "train"


def prepare(cfg: PrepareConfig, progress: bool = True) -> Path:
    """Run the pipeline of the module docstring; returns `out_dir`."""
    normalizer = PersianNormalizer(cfg.normalizer_config())
    raw_docs = iter_documents(cfg.source, text_field=cfg.text_field, doc_split=cfg.doc_split,
                              on_decode_error=cfg.on_decode_error)  # checks the source now
    check_out_dir(cfg.out_dir)
    out = Path(cfg.out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        with _Progress(progress) as bar:
            _build(cfg, normalizer, raw_docs, tmp, bar)
        install(tmp, out, ["train.bin", "val.bin", "tokenizer.json"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return out


def _build(cfg: PrepareConfig, normalizer: PersianNormalizer, raw_docs: Iterator[str], tmp: Path,
           bar: _Progress) -> dict:
    # ---- pass 1: normalize, split, cache; the train documents stream into the tokenizer trainer
    counts = dict.fromkeys(SPLITS, 0)
    caches = {s: tmp / f"{s}.docs.jsonl" for s in SPLITS}
    task = bar.add("reading + training tokenizer")
    with open(caches["train"], "w", encoding="utf-8") as ftrain, open(caches["val"], "w", encoding="utf-8") as fval:
        files: dict[str, IO[str]] = {"train": ftrain, "val": fval}

        def train_docs() -> Iterator[str]:
            for doc in normalized_documents(raw_docs, normalizer):
                split = split_of(doc, cfg.seed, cfg.val_fraction)
                files[split].write(json.dumps(doc, ensure_ascii=False) + "\n")
                counts[split] += 1
                bar.advance(task)
                if split == "train":
                    yield doc

        stream = train_docs()
        tok = train_tokenizer(cfg.tokenizer, stream, cfg.vocab_size)
        for _ in stream:  # the trainers consume everything; this makes sure of it
            pass
    bar.finish(task)
    _check_counts(cfg, counts)

    # ---- pass 2: encode the cached documents, append ids chunk by chunk
    dtype = token_dtype(tok.vocab_size)
    splits = {}
    for split in SPLITS:
        task = bar.add(f"encoding {split}", total=counts[split])
        splits[split] = _encode_split(tok, caches[split], tmp / f"{split}.bin", dtype,
                                      lambda n, t=task: bar.advance(t, n))
        caches[split].unlink()
    _check_val(cfg, splits["val"])

    tok.save(tmp / "tokenizer.json")
    meta = {
        "format": FORMAT,
        "dtype": dtype_name(dtype),
        "vocab_size": tok.vocab_size,
        "tokenizer": cfg.tokenizer,
        "normalizer": cfg.normalizer_config().to_dict(),
        "source": cfg.source,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "pad_id": tok.pad_id,
        # chars = sum over documents of len(normalized document) + 1: the +1 is the document
        # boundary, which the model predicts as the eos token, counted as one character. Then
        # bits per character = (total nats over the split) / ln 2 / chars. fingerprint: a hash
        # of exactly those characters (`sokhan.data.fingerprint`), the same one `sokhan eval`
        # computes, so figures are compared only on one text.
        "splits": splits,
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "doc_split": eval_doc_split(cfg.source, cfg.doc_split),  # how `sokhan eval` cuts a file: as this corpus
    }
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return meta


def _check_counts(cfg: PrepareConfig, counts: dict[str, int]) -> None:
    total = counts["train"] + counts["val"]
    if total == 0:
        raise SokhanError(f"empty corpus: source '{cfg.source}' has no non-empty document after normalization")
    if counts["train"] == 0:
        raise SokhanError(f"train split is empty ({total} document(s), all in val); add data or lower --val-fraction")
    if counts["val"] < MIN_VAL_DOCUMENTS:
        raise SokhanError(f"val split has {counts['val']} document(s) of {total}, need at least {MIN_VAL_DOCUMENTS}; "
                          f"raise --val-fraction (now {cfg.val_fraction}) or add data")


def _check_val(cfg: PrepareConfig, val: dict[str, int | str]) -> None:
    if val["tokens"] < MIN_VAL_TOKENS:
        raise SokhanError(f"val split has {val['tokens']} tokens, need at least {MIN_VAL_TOKENS}; "
                          f"raise --val-fraction (now {cfg.val_fraction}) or add data")


def _read_cache(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _encode_split(tok: Tokenizer, cache: Path, out: Path, dtype: np.dtype, advance) -> dict[str, int | str]:
    tokens = 0
    text = TextFingerprint()
    with open(out, "wb") as f:
        batch: list[str] = []

        def flush() -> None:
            nonlocal tokens
            if not batch:
                return
            flat: list[int] = []
            for ids in tok.encode_batch(batch):  # as text, as `sokhan eval` encodes it (`Tokenizer.encode_plain`)
                flat.append(tok.bos_id)
                flat.extend(ids)
                flat.append(tok.eos_id)
            arr = np.asarray(flat, dtype=dtype)
            f.write(arr.tobytes())
            tokens += int(arr.size)
            for doc in batch:
                text.add(doc)  # counts the document and its characters, +1 for the boundary (eos)
            advance(len(batch))
            batch.clear()

        for doc in _read_cache(cache):
            batch.append(doc)
            if len(batch) >= ENCODE_BATCH:
                flush()
        flush()
        f.flush()
        os.fsync(f.fileno())
    return {"documents": text.documents, "tokens": tokens, "chars": text.chars, "fingerprint": text.digest}


def install(tmp: Path, out: Path, names: list[str]) -> None:
    """Move the finished files `names` from `tmp` into `out`: meta.json is removed first and moved in last, so
    a folder whose meta.json exists is complete (the parallel data of `sokhan.data.parallel` too)."""
    meta = out / "meta.json"
    if meta.exists():
        meta.unlink()
    for name in names:
        os.replace(tmp / name, out / name)
    os.replace(tmp / "meta.json", meta)


class _Progress:
    """A rich progress display on stderr (spinner + count; a bar once the total is known), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress: Progress | None = None

    def __enter__(self) -> _Progress:
        console = Console(stderr=True)
        if self.enabled and console.is_terminal:  # no bar in logs and pipes
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("documents"), TimeElapsedColumn(),
                                     console=console, transient=False)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def add(self, description: str, total: int | None = None) -> TaskID | None:
        return self.progress.add_task(description, total=total) if self.progress is not None else None

    def advance(self, task: TaskID | None, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(task, n)

    def finish(self, task: TaskID | None) -> None:
        """Turn a count-only task (total unknown) into a full bar."""
        if self.progress is not None:
            done = self.progress.tasks[self.progress.task_ids.index(task)].completed
            self.progress.update(task, total=done, completed=done)
