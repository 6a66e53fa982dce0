"""`sokhan prepare`: a corpus -> normalized, split, tokenized shards of `train` / `val`.

Pipeline (everything streams; neither the corpus nor its token ids are ever held whole, so a
folder or a streamed Hugging Face dataset larger than RAM prepares in the memory of a few
batches):

1. read raw documents (`sokhan.data.sources.iter_documents`) in the main process and hand them,
   `CHUNK` at a time, to `workers` processes that normalize each one (`PersianNormalizer`) and
   pick its split; whitespace-only documents are dropped. Results come back in order, at most
   `IN_FLIGHT_PER_WORKER` chunks per worker ahead of the writer, so the output is the same
   for any number of workers and memory stays bounded whatever the reader's pace;
2. the split, deterministically: blake2b(seed, the document's opening) -> a number in [0, 1);
   below `val_fraction` goes to val. Documents that open alike (duplicates, two editions of one
   ghazal) land in the same split, so no text is in both. (Python's `hash()` is randomized per
   process, so it is not used.) The normalized documents are cached in two temporary JSONL
   files as they go by, so the source is read once (a streamed hub dataset is downloaded once);
3. train the tokenizer on the train documents (the first `tokenizer_max_chars` of them, if set;
   val stays unseen, for honest eval);
4. encode the cached documents in the workers, each as ``[bos] + ids + [eos]`` (as plain text: a
   literal '<|user|>' in a document is characters, not the special token), and write the ids in
   order as fixed-size shards (`sokhan.data.shards.ShardWriter`: little-endian uint16, uint32 if
   the vocabulary does not fit);
5. write `tokenizer.json` and, last, `meta.json`: per split its documents, tokens, characters,
   shards and the fingerprint of its text (`sokhan.data.fingerprint`), and the `doc_split`,
   which `sokhan eval` reuses to cut a file into documents as this corpus was cut (`file` for a
   corpus of records: see `sokhan.data.sources.eval_doc_split`).

Outputs are built in a temporary folder inside `out_dir` and moved into place only when all
of them are complete; the old `meta.json` is removed first (then the old dataset's shards) and
the new one moved in last, so a failed or interrupted prepare never leaves a dataset that looks
complete (and a failure before the final moves leaves the previous dataset untouched). Other
files in `out_dir` are left alone.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sokhan.config import NormalizerConfig, PrepareConfig, check_out_dir
from sokhan.data.fingerprint import TextFingerprint
from sokhan.data.shards import SHARD_NAME, ShardWriter
from sokhan.data.sources import eval_doc_split, iter_documents, letters_key
from sokhan.errors import SokhanError
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import Tokenizer, train_tokenizer

FORMAT = 2
CHUNK = 256                 # documents per task handed to a worker (and per encode_batch call)
IN_FLIGHT_PER_WORKER = 4    # chunks a worker may be ahead of the writer: keeps every worker busy, memory bounded
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


def worker_count(requested: int) -> int:
    """`--workers 0`: one per CPU this process may run on (on 2 cores, 2 workers prepared 20 % faster than none,
    the tokenizer's own threads then encoding in this process: `benchmarks/prepare_speed.py`, README)."""
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(cfg: PrepareConfig, progress: bool = True) -> Path:
    """Run the pipeline of the module docstring; returns `out_dir`."""
    raw_docs = iter_documents(cfg.source, text_field=cfg.text_field, doc_split=cfg.doc_split,
                              on_decode_error=cfg.on_decode_error)  # checks the source now
    check_out_dir(cfg.out_dir)
    out = Path(cfg.out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        with _Progress(progress) as bar, _workers(worker_count(cfg.workers)) as pool:
            meta = _build(cfg, raw_docs, tmp, bar, pool)
        names = [shard["file"] for split in SPLITS for shard in meta["splits"][split]["shards"]]
        install(tmp, out, names + ["tokenizer.json"], stale=_is_shard)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return out


def _is_shard(name: str) -> bool:
    """A token file of a dataset this prepare replaces: a shard, or a format-1 split file."""
    return bool(SHARD_NAME.match(name)) or name in {f"{split}.bin" for split in SPLITS}


# -- the work the processes share ------------------------------------------------------------------------------

class Pool:
    """`map` over chunks, in order: in worker processes, or here when there is one worker (no process to start,
    and the tokenizer's own threads do the encoding)."""

    def __init__(self, executor: Executor | None, workers: int):
        self.executor, self.workers = executor, workers

    def map(self, fn: Callable[..., Any], chunks: Iterable[tuple]) -> Iterator[Any]:
        if self.executor is None:
            yield from (fn(*chunk) for chunk in chunks)
            return
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append(self.executor.submit(fn, *chunk))
                if len(pending) >= IN_FLIGHT_PER_WORKER * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise SokhanError("a worker process of prepare died (out of memory, or killed); run it again, with "
                              "fewer --workers if memory is short") from None


class _workers:
    """A pool of `n` spawned processes (spawned, not forked: the parent's tokenizer threads must not be copied
    mid-flight), shut down on exit; none when n is 1."""

    def __init__(self, n: int):
        self.n = n
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        if self.n > 1:
            self.executor = ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker)
        return Pool(self.executor, self.n)

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)


def _init_worker() -> None:
    """In a worker: one thread (the processes are the parallelism; the tokenizer's own thread pool would
    oversubscribe the cores), and Ctrl-C left to the main process, which stops the pool (no worker traceback)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_normalizers: dict[str, PersianNormalizer] = {}
_tokenizers: dict[str, Tokenizer] = {}


def normalize_chunk(normalizer: dict, seed: int, val_fraction: float, docs: list[str]) -> list[tuple[str, str]]:
    """(split, normalized document) for each raw document that is not empty after normalizing."""
    key = json.dumps(normalizer, sort_keys=True)
    if key not in _normalizers:
        _normalizers[key] = PersianNormalizer(NormalizerConfig.from_dict(normalizer))
    normalize = _normalizers[key]
    return [(split_of(doc, seed, val_fraction), doc) for raw in docs if (doc := normalize(raw).strip())]


def encode_chunk(tokenizer_path: str, dtype: str, docs: list[str]) -> bytes:
    """The documents' ids end to end, each as bos ids… eos, as little-endian bytes of `dtype`."""
    if tokenizer_path not in _tokenizers:
        _tokenizers[tokenizer_path] = Tokenizer.load(tokenizer_path)
    tok = _tokenizers[tokenizer_path]
    flat: list[int] = []
    for ids in tok.encode_batch(docs):  # as text, as `sokhan eval` encodes it (`Tokenizer.encode_plain`)
        flat.append(tok.bos_id)
        flat.extend(ids)
        flat.append(tok.eos_id)
    return np.asarray(flat, dtype=dtype).tobytes()


def chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


# -- the pipeline ----------------------------------------------------------------------------------------------

def _build(cfg: PrepareConfig, raw_docs: Iterator[str], tmp: Path, bar: _Progress, pool: Pool) -> dict:
    # ---- pass 1: normalize and split (workers), cache; the train documents stream into the tokenizer trainer
    counts = dict.fromkeys(SPLITS, 0)
    caches = {s: tmp / f"{s}.docs.jsonl" for s in SPLITS}
    task = bar.add("reading + training tokenizer")
    normalizer = cfg.normalizer_config().to_dict()
    budget = cfg.tokenizer_max_chars or float("inf")
    with open(caches["train"], "w", encoding="utf-8") as ftrain, open(caches["val"], "w", encoding="utf-8") as fval:
        files: dict[str, IO[str]] = {"train": ftrain, "val": fval}

        def train_docs() -> Iterator[str]:
            fed = 0
            work = ((normalizer, cfg.seed, cfg.val_fraction, chunk) for chunk in chunks(raw_docs))
            for done in pool.map(normalize_chunk, work):
                for split, doc in done:
                    files[split].write(json.dumps(doc, ensure_ascii=False) + "\n")
                    counts[split] += 1
                    if split == "train" and fed < budget:  # past the budget: cached, not fed to the trainer
                        fed += len(doc)
                        yield doc
                bar.advance(task, len(done))

        stream = train_docs()
        tok = train_tokenizer(cfg.tokenizer, stream, cfg.vocab_size)
        for _ in stream:  # the trainers consume everything; this makes sure of it
            pass
    bar.finish(task)
    _check_counts(cfg, counts)
    tok.save(tmp / "tokenizer.json")

    # ---- pass 2: encode the cached documents (workers), write the ids in order as shards
    dtype = token_dtype(tok.vocab_size)
    splits = {}
    for split in SPLITS:
        task = bar.add(f"encoding {split}", total=counts[split])
        splits[split] = _encode_split(cfg, pool, tmp / "tokenizer.json", caches[split], tmp, split, dtype,
                                      lambda n, t=task: bar.advance(t, n))
        caches[split].unlink()
    _check_val(cfg, splits["val"])

    meta = {
        "format": FORMAT,
        "dtype": dtype_name(dtype),
        "vocab_size": tok.vocab_size,
        "tokenizer": cfg.tokenizer,
        "normalizer": normalizer,
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


def _encode_split(cfg: PrepareConfig, pool: Pool, tokenizer: Path, cache: Path, folder: Path, split: str,
                  dtype: np.dtype, advance: Callable[[int], None]) -> dict[str, Any]:
    text = TextFingerprint()
    writer = ShardWriter(folder, split, dtype, cfg.shard_tokens)
    tokens = 0
    sizes: deque[int] = deque()  # documents of each chunk handed out, for the bar as its ids come back

    def work() -> Iterator[tuple[str, str, list[str]]]:
        for docs in chunks(_read_cache(cache)):
            for doc in docs:
                text.add(doc)  # counts the document and its characters, +1 for the boundary (eos)
            sizes.append(len(docs))
            yield str(tokenizer), dtype.str, docs

    for data in pool.map(encode_chunk, work()):
        ids = np.frombuffer(data, dtype=dtype)
        writer.write(ids)
        tokens += int(ids.size)
        advance(sizes.popleft())
    return {"documents": text.documents, "tokens": tokens, "chars": text.chars, "fingerprint": text.digest,
            "shards": writer.close()}


def install(tmp: Path, out: Path, names: list[str], stale: Callable[[str], bool] = lambda name: False) -> None:
    """Move the finished files `names` from `tmp` into `out`: meta.json is removed first and moved in last, so
    a folder whose meta.json exists is complete (the parallel data of `sokhan.data.parallel` too). Files of the
    replaced dataset that the new one does not have (`stale`: a shard past the new last one) go in between."""
    meta = out / "meta.json"
    if meta.exists():
        meta.unlink()
    for old in out.iterdir():
        if stale(old.name) and old.name not in names and old.is_file():
            old.unlink()
    for name in names:
        os.replace(tmp / name, out / name)
    os.replace(tmp / "meta.json", meta)


class DocsPerSecond(ProgressColumn):
    """Documents per second, over rich's recent window."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} docs/s" if task.speed else "", style="progress.data.speed")


class _Progress:
    """A rich progress display on stderr (spinner + count; a bar once the total is known), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress: Progress | None = None

    def __enter__(self) -> _Progress:
        console = Console(stderr=True)
        if self.enabled and console.is_terminal:  # no bar in logs and pipes
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("documents"), DocsPerSecond(),
                                     TimeElapsedColumn(), console=console, transient=False)
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
