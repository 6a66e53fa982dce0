"""Reading a prepared dataset (`sokhan prepare`'s output) for training and evaluation.

A dataset folder holds `meta.json`, `tokenizer.json` and one flat token file per split
(`train.bin`, `val.bin`: little-endian uint16/uint32, documents as ``bos ids… eos``). The
token files are memory-mapped, so a corpus larger than RAM costs nothing to open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sokhan.config import NormalizerConfig
from sokhan.config.base import json_kind
from sokhan.config.model import MAX_VOCAB
from sokhan.errors import SokhanError

SUPPORTED_FORMATS = (1,)
DTYPES = ("uint16", "uint32")


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
    return meta


def _check_count(values: dict, key: str, low: int, path: Path, where: str = "", high: int | None = None) -> None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"≥ {low}"
        raise SokhanError(f"{path}: {where}{key} must be a whole number {limit}, got {json_kind(value)}; "
                          f"prepare the data again")


class TokenData:
    """One split of a prepared dataset: a flat memory-mapped array of token ids.

    Attributes: `meta` (the dataset's meta.json), `num_tokens`, `num_chars` (see meta.json:
    normalized characters + one per document boundary, for bits per character), `dtype`,
    `tokens` (the read-only np.memmap).
    """

    def __init__(self, data_dir: str | Path, split: str):
        self.data_dir = Path(data_dir)
        self.split = split
        self.meta = load_meta(self.data_dir)
        info = self.meta["splits"].get(split)
        if not isinstance(info, dict):
            raise SokhanError(f"{self.data_dir} has no '{split}' split (splits: {', '.join(self.meta['splits'])})")
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        path = self.data_dir / f"{split}.bin"
        if not path.is_file():
            raise SokhanError(f"{path} is missing; prepare the data again")
        size = path.stat().st_size
        expected = info["tokens"]
        if size % self.dtype.itemsize or size // self.dtype.itemsize != expected:
            raise SokhanError(f"{path} has {size} bytes but meta.json says {expected} {self.meta['dtype']} tokens; "
                              f"prepare the data again")
        # np.memmap cannot map an empty file.
        self.tokens = np.memmap(path, dtype=self.dtype, mode="r") if size else np.zeros(0, dtype=self.dtype)
        self.num_tokens = int(self.tokens.shape[0])
        self.num_chars = info["chars"]
        self.num_documents = info["documents"]
        # One pass over the file, once: an id outside the vocabulary (another dataset's file, or one
        # written at another width) would otherwise stop training at the first batch that holds it.
        highest = int(self.tokens.max()) if self.num_tokens else -1
        if highest >= self.meta["vocab_size"]:
            raise SokhanError(f"{path} holds token id {highest}, outside the vocabulary of {self.meta['vocab_size']} "
                              f"in meta.json (another dataset's file, or written as other than "
                              f"{self.meta['dtype']}); prepare the data again")

    def __len__(self) -> int:
        return self.num_tokens

    def _check_block(self, block_size: int) -> None:
        if block_size < 1:
            raise SokhanError(f"block_size must be at least 1, got {block_size}")
        if self.num_tokens <= block_size:
            raise SokhanError(f"{self.split} split has {self.num_tokens} tokens, fewer than "
                              f"block_size+1={block_size + 1}; lower --block-size or raise --val-fraction")

    def sample_batch(self, batch_size: int, block_size: int, generator: torch.Generator,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` random windows: x = tokens[i:i+T], y = tokens[i+1:i+1+T] (int64).

        The offsets come from `generator` alone (a CPU generator), so its state is the whole
        "data position": saving `generator.get_state()` and restoring it resumes exactly.
        """
        self._check_block(block_size)
        offsets = torch.randint(self.num_tokens - block_size, (batch_size,), generator=generator)
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
    device = torch.device(device)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    if device.type != "cpu":
        return x.to(device), y.to(device)
    return x, y
