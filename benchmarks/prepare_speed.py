"""Prepare throughput: `sokhan prepare` against a plain `tokenizers` `encode_batch` loop over the same text.

The peer is what a user would write without sokhan: read the files line by line, call the Rust tokenizer's
`encode_batch` on 1,000 lines at a time (its own thread pool on every core), keep nothing. It is given the
tokenizer sokhan trained, so both encode with the same vocabulary. sokhan's prepare does more for the same bytes:
it normalizes every document (Python), splits train/val, trains the BPE tokenizer (pass 1), then encodes and
writes the shards (pass 2); each pass is timed, and pass 2 is the like-for-like figure against the peer.

Reported: MB/s of UTF-8 source text (10⁶ bytes) for the peer, for prepare's two passes and for the whole command,
with `--workers 1` and with one worker per core, and ours/peer. Runs are in the order peer, prepare, peer, prepare…
(`--repeats`), the median of each reported.

    python benchmarks/prepare_speed.py                                  # ../shared/data/fa-corpus prose, 39 MB
    python benchmarks/prepare_speed.py --source my_corpus/ --workers 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sokhan.data.prepare as prepare_module
from sokhan.config import PrepareConfig
from sokhan.data.prepare import prepare, worker_count

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fa-corpus"
DEFAULT_SOURCES = [SHARED / "classical_prose.train.txt", SHARED / "modern_news.train.txt"]
LINES_PER_BATCH = 1000


def source_bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def peer(files: list[Path], tokenizer_json: Path) -> float:
    """Seconds for a plain tokenizers loop over the files: read lines, encode_batch 1,000 at a time."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    start = time.perf_counter()
    for path in files:
        with open(path, encoding="utf-8") as f:
            batch = []
            for line in f:
                batch.append(line)
                if len(batch) == LINES_PER_BATCH:
                    tok.encode_batch(batch, add_special_tokens=False)
                    batch = []
            if batch:
                tok.encode_batch(batch, add_special_tokens=False)
    return time.perf_counter() - start


def ours(files: list[Path], out: Path, workers: int, vocab_size: int) -> tuple[float, float]:
    """Seconds of prepare's pass 1 (read, normalize, split, train the tokenizer) and pass 2 (encode, write)."""
    timed = {}
    train = prepare_module.train_tokenizer

    def timed_train(*args, **kwargs):
        result = train(*args, **kwargs)  # the trainer pulls the documents: this is the whole of pass 1
        timed["pass1"] = time.perf_counter() - start
        return result

    prepare_module.train_tokenizer = timed_train
    try:
        start = time.perf_counter()
        prepare(PrepareConfig(source=",".join(map(str, files)), out_dir=str(out), vocab_size=vocab_size,
                              workers=workers), progress=False)
        total = time.perf_counter() - start
    finally:
        prepare_module.train_tokenizer = train
    return timed["pass1"], total - timed["pass1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", nargs="+", type=Path, default=DEFAULT_SOURCES)
    parser.add_argument("--workers", type=int, default=0,
                        help="prepare's workers for the parallel run (0: one per core)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    files = [f for s in args.source for f in (sorted(s.rglob("*.txt")) if s.is_dir() else [s])]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise SystemExit(f"no such text file: {', '.join(missing) or args.source}")
    mb = source_bytes(files) / 1e6
    parallel = worker_count(args.workers)
    print(f"{mb:.1f} MB of text in {len(files)} file(s); prepare with 1 and {parallel} worker(s)")

    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for workers in sorted({1, parallel}):
                p1, p2 = ours(files, Path(tmp) / "data", workers, args.vocab_size)
                runs.setdefault(f"pass1 w{workers}", []).append(p1)
                runs.setdefault(f"pass2 w{workers}", []).append(p2)
                runs.setdefault(f"total w{workers}", []).append(p1 + p2)
                runs.setdefault("peer", []).append(peer(files, Path(tmp) / "data" / "tokenizer.json"))
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    peer_rate = mb / seconds["peer"]
    print(f"{'':52s} {'MB/s':>8s} {'ours/peer':>10s}")
    print(f"{'peer: tokenizers encode_batch loop':52s} {peer_rate:8.2f} {'':>10s}")
    for workers in sorted({1, parallel}):
        for key, what in (("pass2", "encode + write shards (pass 2)"),
                          ("pass1", "normalize + split + train BPE (pass 1)"), ("total", "whole prepare")):
            rate = mb / seconds[f"{key} w{workers}"]
            print(f"{f'{what}, {workers} worker(s)':52s} {rate:8.2f} {rate / peer_rate:9.2f}×")


if __name__ == "__main__":
    main()
