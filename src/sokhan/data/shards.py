"""Token shards on disk: how `sokhan prepare` writes a split and how training and evaluation read it.

A dataset folder holds `meta.json`, `tokenizer.json` and, per split, fixed-size shards
(`train-00000.bin`, `train-00001.bin`, …: raw little-endian uint16/uint32 token ids, documents
as ``bos ids… eos`` written end to end, a document cut where a shard fills up, as nanoGPT's
FineWeb shards are). meta.json lists each split's shards and their token counts. A split reads
as one array (`TokenArray`) over the memory-mapped shards, so a corpus larger than RAM costs
nothing to open and a window may run from one shard into the next; the split's content is the
same whatever the shard size. (Format 1, one `train.bin` per split, is read as one shard.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sokhan.config import NormalizerConfig
from sokhan.config.base import json_kind
from sokhan.config.model import MAX_VOCAB
from sokhan.errors import SokhanError

# torch loads where batches are made: `sokhan prepare`'s worker processes import this module for the writer, and
# torch would add ~200 MB and a second to each.
if TYPE_CHECKING:
    import torch

SUPPORTED_FORMATS = (1, 2)
DTYPES = ("uint16", "uint32")
SHARD_NAME = re.compile(r"^(train|val)-\d{5}\.bin$")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


def shard_files(meta: dict, split: str) -> list[tuple[str, int]]:
    """(file name, tokens) of each shard of `split`, in order (format 1: the one `split.bin`)."""
    info = meta["splits"][split]
    if meta["format"] == 1:
        return [(f"{split}.bin", info["tokens"])]
    return [(shard["file"], shard["tokens"]) for shard in info["shards"]]


def load_meta(data_dir: str | Path) -> dict:
    """The `meta.json` of a prepared dataset, checked; `SokhanError` if missing, unreadable or malformed.

    Every value later steps compute with is checked here, once: the tokenizer.json a model
    trained on it is saved with is there, the vocabulary size is a whole number within
    `ModelConfig`'s ceiling, the tokenizer's kind a string, the normalizer a checked
    `NormalizerConfig`, and each split's counts whole numbers (at least one character: bits
    per character divide by it).
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise SokhanError(f"no such data folder: {d}; run `sokhan prepare --out-dir {d}` first")
    path = d / "meta.json"
    if not path.is_file():
        raise SokhanError(f"{d} is not a prepared dataset (no meta.json); run `sokhan prepare --out-dir {d}` first")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SokhanError(f"{path}: not valid JSON ({e}); prepare the data again") from None
    if not isinstance(meta, dict) or meta.get("format") not in SUPPORTED_FORMATS:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise SokhanError(f"{path}: unsupported dataset format {fmt!r}; prepare the data again with this sokhan")
    if meta.get("dtype") not in DTYPES or not isinstance(meta.get("splits"), dict):
        raise SokhanError(f"{path}: malformed meta.json (dtype/splits); prepare the data again")
    if not (d / "tokenizer.json").is_file():
        raise SokhanError(f"{d} has no tokenizer.json; prepare the data again")
    _check_count(meta, "vocab_size", 1, path, high=MAX_VOCAB)
    if not isinstance(meta.get("tokenizer"), str):
        raise SokhanError(f"{path}: tokenizer must be a string, got {json_kind(meta.get('tokenizer'))}; "
                          f"prepare the data again")
    NormalizerConfig.from_dict(meta.get("normalizer"), f"{path} [normalizer]")
    for split, info in meta["splits"].items():
        if not isinstance(info, dict):
            raise SokhanError(f"{path}: splits.{split} must be an object, got {json_kind(info)}; "
                              f"prepare the data again")
        for key, low in (("documents", 0), ("tokens", 0), ("chars", 1)):
            _check_count(info, key, low, path, where=f"splits.{split}.")
        if not isinstance(info.get("fingerprint", ""), str):
            raise SokhanError(f"{path}: splits.{split}.fingerprint must be a string; prepare the data again")
        if meta["format"] > 1:
            _check_shards(info, split, path)
    return meta


def _check_shards(info: dict, split: str, path: Path) -> None:
    """A split's shard list: file names of this split's form (no path reaches outside the folder), whole
    counts that add up to the split's tokens."""
    shards = info.get("shards")
    bad = f"{path}: splits.{split}.shards must be a list of {{file: '{shard_name(split, 0)}', tokens: N}}"
    if not isinstance(shards, list):
        raise SokhanError(f"{bad}, got {json_kind(shards)}; prepare the data again")
    for shard in shards:
        if not (isinstance(shard, dict) and isinstance(shard.get("file"), str)
                and SHARD_NAME.match(shard["file"]) and shard["file"].startswith(f"{split}-")):
            raise SokhanError(f"{bad}; prepare the data again")
        _check_count(shard, "tokens", 0, path, where=f"splits.{split}.shards.")
    if sum(shard["tokens"] for shard in shards) != info["tokens"]:
        raise SokhanError(f"{path}: the shards of {split} hold {sum(s['tokens'] for s in shards)} tokens but "
                          f"splits.{split}.tokens says {info['tokens']}; prepare the data again")


def _check_count(values: dict, key: str, low: int, path: Path, where: str = "", high: int | None = None) -> None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"≥ {low}"
        raise SokhanError(f"{path}: {where}{key} must be a whole number {limit}, got {json_kind(value)}; "
                          f"prepare the data again")


class ShardWriter:
    """Writes one split's token ids as shards of `shard_tokens` each (the last one shorter), fsynced as each
    one fills; `shards` lists what was written, as meta.json records it."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict[str, int | str]] = []
        self.file = None

    def write(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=self.dtype)
        while ids.size:
            if self.file is None:
                self.shards.append({"file": shard_name(self.split, len(self.shards)), "tokens": 0})
                self.file = open(self.folder / self.shards[-1]["file"], "wb")  # noqa: SIM115 (open until full)
            room = self.shard_tokens - self.shards[-1]["tokens"]
            self.file.write(ids[:room].tobytes())
            self.shards[-1]["tokens"] += int(min(room, ids.size))
            ids = ids[room:]
            if self.shards[-1]["tokens"] == self.shard_tokens:
                self._close()

    def close(self) -> list[dict[str, int | str]]:
        self._close()
        return self.shards

    def _close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None


class TokenArray:
    """The shards of one split as one read-only array of token ids, each shard a memory map.

    Supports what the readers of a split do: `len`, a slice (a contiguous run, across shards where
    it must), an integer array of positions (the random windows of a batch), `max()`, and
    `np.asarray` (the whole split in memory: for counting n-grams). Values come back as stored
    (uint16/uint32); the callers widen them.
    """

    def __init__(self, paths: list[Path], dtype: np.dtype):
        self.dtype = dtype
        # np.memmap cannot map an empty file; an empty shard holds nothing to read.
        self.paths = [p for p in paths if p.stat().st_size]
        self.parts = [np.memmap(p, dtype=dtype, mode="r") for p in self.paths]
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])
        self.shape = (int(self.starts[-1]),)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0][index]
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self))
            if step != 1:
                raise IndexError("a TokenArray is read in contiguous runs")
            return self._run(lo, hi)
        index = np.asarray(index)
        out = np.empty(index.shape, dtype=self.dtype)
        which = np.searchsorted(self.starts, index, side="right") - 1
        for k in np.unique(which):
            chosen = which == k
            out[chosen] = self.parts[k][index[chosen] - self.starts[k]]
        return out

    def _run(self, lo: int, hi: int) -> np.ndarray:
        if not self.parts or hi <= lo:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        pieces = []
        for k in range(first, len(self.parts)):
            start = int(self.starts[k])
            if start >= hi:
                break
            pieces.append(self.parts[k][max(lo - start, 0): hi - start])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def max(self) -> int:
        return max((int(part.max()) for part in self.parts), default=-1)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[0:len(self)] if self.parts else np.zeros(0, dtype=self.dtype)
        return whole.astype(dtype) if dtype is not None else np.asarray(whole)


READ_TOKENS = 1 << 20  # split_documents reads a split this many tokens at a time (8 MiB as int64)


class TokenData:
    """One split of a prepared dataset: its shards read as one array of token ids.

    Attributes: `meta` (the dataset's meta.json), `num_tokens`, `num_chars` (see meta.json:
    normalized characters + one per document boundary, for bits per character), `dtype`,
    `tokens` (the `TokenArray` over the memory-mapped shards).
    """

    def __init__(self, data_dir: str | Path, split: str):
        self.data_dir = Path(data_dir)
        self.split = split
        self.meta = load_meta(self.data_dir)
        info = self.meta["splits"].get(split)
        if not isinstance(info, dict):
            raise SokhanError(f"{self.data_dir} has no '{split}' split (splits: {', '.join(self.meta['splits'])})")
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        paths = []
        for name, expected in shard_files(self.meta, split):
            path = self.data_dir / name
            if not path.is_file():
                raise SokhanError(f"{path} is missing; prepare the data again")
            size = path.stat().st_size
            if size % self.dtype.itemsize or size // self.dtype.itemsize != expected:
                raise SokhanError(f"{path} has {size} bytes but meta.json says {expected} {self.meta['dtype']} "
                                  f"tokens; prepare the data again")
            paths.append(path)
        self.tokens = TokenArray(paths, self.dtype)
        self.num_tokens = len(self.tokens)
        self.num_chars = info["chars"]
        self.num_documents = info["documents"]
        # One pass over the files, once: an id outside the vocabulary (another dataset's file, or one
        # written at another width) would otherwise stop training at the first batch that holds it.
        for path, part in zip(self.tokens.paths, self.tokens.parts):
            highest = int(part.max())
            if highest >= self.meta["vocab_size"]:
                raise SokhanError(f"{path} holds token id {highest}, outside the vocabulary of "
                                  f"{self.meta['vocab_size']} in meta.json (another dataset's file, or written as "
                                  f"other than {self.meta['dtype']}); prepare the data again")

    def __len__(self) -> int:
        return self.num_tokens

    def _check_block(self, block_size: int) -> None:
        if block_size < 1:
            raise SokhanError(f"block_size must be at least 1, got {block_size}")
        if self.num_tokens <= block_size:
            raise SokhanError(f"{self.split} split has {self.num_tokens} tokens, fewer than "
                              f"block_size+1={block_size + 1}; lower --block-size or raise --val-fraction")

    def sample_batch(self, batch_size: int, block_size: int, generator: torch.Generator,
                     device: str | torch.device = "cpu", rows: slice | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` random windows: x = tokens[i:i+T], y = tokens[i+1:i+1+T] (int64).

        The offsets come from `generator` alone (a CPU generator), so its state is the whole
        "data position": saving `generator.get_state()` and restoring it resumes exactly, with
        any number of processes. `rows`: only those windows of the batch are read (a torchrun
        rank's share); the generator draws all of them still, as every rank does.
        """
        import torch

        self._check_block(block_size)
        offsets = torch.randint(self.num_tokens - block_size, (batch_size,), generator=generator)
        if rows is not None:
            offsets = offsets[rows]
        index = offsets.numpy()[:, None] + np.arange(block_size + 1)
        buf = torch.from_numpy(self.tokens[index].astype(np.int64))
        x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
        return _to_device(x, y, device)

    def iter_windows(self, batch_size: int, block_size: int,
                     device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every token once, in order: non-overlapping windows for a full evaluation.

        Windows start at 0, T, 2T, …; window k is x = tokens[kT:(k+1)T], y shifted by one, so
        the y's of all windows together are exactly tokens[1:] (the first token, a bos, is
        never a target). Full windows come in batches of `batch_size` (the last batch may be
        smaller); the remaining r < T tokens, if any, come last as one batch of shape (1, r).
        Weight losses by the number of targets (`y.numel()`) to average over the split.
        """
        import torch

        if batch_size < 1:
            raise SokhanError(f"batch_size must be at least 1, got {batch_size}")
        self._check_block(block_size)
        n_targets = self.num_tokens - 1
        full = n_targets // block_size
        for start in range(0, full, batch_size):
            rows = min(batch_size, full - start)
            lo = start * block_size
            chunk = np.asarray(self.tokens[lo:lo + rows * block_size + 1], dtype=np.int64)
            x = torch.from_numpy(chunk[:-1].reshape(rows, block_size))
            y = torch.from_numpy(chunk[1:].reshape(rows, block_size))
            yield _to_device(x, y, device)
        rest = n_targets - full * block_size
        if rest:
            chunk = torch.from_numpy(np.asarray(self.tokens[full * block_size:], dtype=np.int64))
            yield _to_device(chunk[:-1].reshape(1, rest).contiguous(), chunk[1:].reshape(1, rest).contiguous(), device)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    if device.type != "cpu":
        return x.to(device), y.to(device)
    return x, y


def split_documents(data_dir: str | Path, split: str = "val") -> list[str]:
    """The documents of a prepared split, read back from its shards: the normalized text `sokhan prepare` wrote
    (the "val" split is the held-out text `summarize` scores, which no model of the folder trained on).

    The shards are read `READ_TOKENS` at a time and cut at each ``bos … eos``; each document is decoded with
    the folder's tokenizer.json. A split that is not whole documents, as many as meta.json counts, is refused.
    """
    from sokhan.text.tokenizers import Tokenizer  # the tokenizers library loads only when text is decoded

    data = TokenData(data_dir, split)
    tokenizer = Tokenizer.load(Path(data_dir) / "tokenizer.json")
    broken = SokhanError(f"{data_dir}: its {split} split is not the {data.num_documents} documents meta.json "
                         f"counts; prepare the data again")
    documents: list[str] = []
    carry = np.empty(0, dtype=np.int64)  # the document still open at the end of the last read
    for start in range(0, len(data), READ_TOKENS):
        ids = np.concatenate([carry, np.asarray(data.tokens[start:start + READ_TOKENS], dtype=np.int64)])
        begin = 0
        for end in np.flatnonzero(ids == tokenizer.eos_id):
            if ids[begin] != tokenizer.bos_id:
                raise broken
            documents.append(tokenizer.decode(ids[begin + 1:end].tolist()))
            begin = end + 1
        carry = ids[begin:]
    if len(carry) or len(documents) != data.num_documents:
        raise broken
    return documents
