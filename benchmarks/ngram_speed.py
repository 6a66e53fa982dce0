"""N-gram counting speed: sokhan's numpy Kneser–Ney against NLTK's `KneserNeyInterpolated`.

The data is real Persian text at character level: `../shared/data/fa-corpus/modern_news.train.txt`
(then the other `*.train.txt` files of that folder if `--tokens` asks for more), normalized
by sokhan's `PersianNormalizer`, each document (blank-line separated) written as
`bos chars… eos`, every distinct character one id, as `sokhan prepare --tokenizer char`
would. Without that folder: random Zipfian ids over a 200-token vocabulary.

Measured in one run, on the same tokens:

* sokhan: `NGramLM.fit` of an order-`--order` model on `--tokens` tokens (default 10M),
  in a freshly spawned process reading the tokens from a memmap (as `sokhan train` reads a
  prepared split) — seconds, tokens/s, and that process's peak RSS (`resource.getrusage`)
  before and after the fit; then `log_probs` on the next 1M tokens (the bpc fast path).
* both, on the first `--nltk-tokens` tokens (default 100k): sokhan's fit and NLTK's
  `KneserNeyInterpolated(order, discount).fit` of the same stream as one sentence of everygrams. NLTK's
  time is also extrapolated linearly to `--tokens` (its counting is one Counter update per
  n-gram, linear in the tokens), and the ratio NLTK / sokhan is printed for both sizes.
* scoring: NLTK's `score` of `--nltk-scores` tokens against sokhan's `log_probs` of the whole
  slice (NLTK recomputes continuation counts by scanning its n-gram table on every call).

    python benchmarks/ngram_speed.py                     # 5-gram, 10M characters
    python benchmarks/ngram_speed.py --order 3 --tokens 2000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from sokhan.config import ModelConfig
from sokhan.models.ngram import NGramLM
from sokhan.text.normalize import PersianNormalizer

CORPUS = Path(__file__).resolve().parents[2] / "shared/data/fa-corpus"
FIRST = "modern_news.train.txt"
BOS, EOS = "\x02", "\x03"  # stand-ins for the document markers while mapping characters to ids
SCORE_FROM = 1000  # NLTK's scores are timed and compared from this position on


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def corpus_tokens(n: int) -> tuple[np.ndarray, int, str]:
    """(ids, vocab size, description): real characters when the corpus is here, else Zipfian ids."""
    if not (CORPUS / FIRST).is_file():
        rng = np.random.default_rng(0)
        p = 1.0 / np.arange(1, 201)
        return rng.choice(200, size=n, p=p / p.sum()).astype(np.uint16), 200, "random Zipfian ids, vocab 200"
    files = [CORPUS / FIRST] + sorted(p for p in CORPUS.glob("*.train.txt") if p.name != FIRST)
    normalize = PersianNormalizer()
    pieces, size, used = [], 0, []
    for path in files:
        for doc in path.read_text(encoding="utf-8").split("\n\n"):
            doc = normalize(doc)
            if doc:
                pieces.append(BOS + doc + EOS)
                size += len(doc) + 2
            if size >= n:
                break
        used.append(path.name)
        if size >= n:
            break
    text = "".join(pieces)[:n]
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    chars, ids = np.unique(codepoints, return_inverse=True)
    return ids.astype(np.uint16), len(chars), f"{' + '.join(used)}, characters (vocab {len(chars)})"


def time_nltk(tokens: np.ndarray, order: int, discount: float, n_scores: int) -> tuple[float, float, list[float]]:
    """(fit seconds, seconds per score, p(token i | context) for n_scores tokens from SCORE_FROM on).

    Not from the start: NLTK divides by zero on a lower-order context that occurs only at
    the very start of the stream (its continuation count is 0 while its raw count is not).
    """
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams

    words = [str(t) for t in tokens.tolist()]
    t0 = time.perf_counter()
    lm = KneserNeyInterpolated(order, discount=discount)
    lm.fit([everygrams(words, max_len=order)], vocabulary_text=words)
    fit = time.perf_counter() - t0
    scores = []
    t0 = time.perf_counter()
    for i in range(SCORE_FROM, SCORE_FROM + n_scores):
        scores.append(lm.score(words[i], words[i - order + 1: i]))
    per_score = (time.perf_counter() - t0) / max(n_scores, 1)
    return fit, per_score, scores


def fit_in_fresh_process(cfg: dict, train_path: str, held_path: str) -> dict:
    """Fit on the memmapped train tokens and score the held-out ones; timings and this process's peak RSS."""
    import torch

    torch.set_num_threads(1)  # counting is numpy; keep torch's thread pool out of the RSS
    train = np.load(train_path, mmap_mode="r")
    held_out = np.load(held_path, mmap_mode="r")
    model = NGramLM(ModelConfig.from_dict(cfg))
    out = {"rss_before": peak_rss_gb()}
    t0 = time.perf_counter()
    model.fit(train)
    out["fit_s"] = time.perf_counter() - t0
    out["rss_after"] = peak_rss_gb()
    out["entries"] = model.num_parameters()
    if held_out.size > 1:
        t0 = time.perf_counter()
        lp = model.log_probs(held_out)
        out["log_probs_s"] = time.perf_counter() - t0
        out["bits"] = float(-lp.mean() / np.log(2))
        out["zero"] = int(np.count_nonzero(~np.isfinite(lp)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--tokens", type=int, default=10_000_000, help="tokens counted by sokhan")
    p.add_argument("--nltk-tokens", type=int, default=100_000, help="the slice both libraries count")
    p.add_argument("--nltk-scores", type=int, default=20, help="NLTK score() calls to time (0: skip)")
    p.add_argument("--smoothing", default="modified", choices=("modified", "interpolated"))
    p.add_argument("--no-nltk", action="store_true")
    args = p.parse_args()

    # The big fit runs in a spawned process reading a memmap, as `sokhan train` reads a prepared
    # split. The process is started before the corpus is loaded here: Linux carries the peak RSS
    # over fork and exec, so a child started later would inherit the loader's peak.
    with multiprocessing.get_context("spawn").Pool(1) as pool, tempfile.TemporaryDirectory() as tmp:
        pool.apply(peak_rss_gb)  # wait until it runs
        score_tokens = 1_000_000
        tokens, vocab, source = corpus_tokens(args.tokens + score_tokens)
        train, held_out = tokens[: args.tokens], tokens[args.tokens:]
        cfg = ModelConfig(family="ngram", order=args.order, vocab_size=vocab, smoothing=args.smoothing)
        print(f"data: {source}; {train.size:,} tokens counted, {held_out.size:,} held out; order {args.order}, "
              f"{args.smoothing} Kneser-Ney")
        train_path, held_path = Path(tmp) / "train.npy", Path(tmp) / "held_out.npy"
        np.save(train_path, train)
        np.save(held_path, held_out)
        big = pool.apply(fit_in_fresh_process, (cfg.to_dict(), str(train_path), str(held_path)))
    fit_s = big["fit_s"]
    print(f"\nsokhan fit:      {fit_s:8.2f} s  {train.size / fit_s:12,.0f} tokens/s  {big['entries']:,} n-gram entries")
    print(f"peak RSS:        {big['rss_after']:8.2f} GB in the fitting process "
          f"({big['rss_before']:.2f} GB before the fit: Python, numpy, torch)")
    if held_out.size > 1:
        lp_s, bits, zero = big["log_probs_s"], big["bits"], big["zero"]
        print(f"sokhan log_probs: {lp_s:7.2f} s  {(held_out.size - 1) / lp_s:12,.0f} tokens/s  "
              f"held-out {bits:.3f} bits/token")
        if zero:
            print(f"  ({zero:,} held-out tokens have probability 0: interpolated Kneser-Ney, as NLTK's, "
                  f"ends in the undiscounted continuation unigram)")

    if args.no_nltk:
        return
    try:
        import nltk  # noqa: F401
    except ImportError:
        print("\nNLTK is not installed: pip install nltk for the comparison")
        return
    small = train[: args.nltk_tokens]
    ours_small = NGramLM(cfg)
    t0 = time.perf_counter()
    ours_small.fit(small)
    ours_small_s = time.perf_counter() - t0
    nltk_fit, nltk_score, nltk_scores = time_nltk(small, args.order, cfg.discount, args.nltk_scores)
    extrapolated = nltk_fit * train.size / small.size
    print(f"\non the first {small.size:,} tokens:")
    print(f"  sokhan fit      {ours_small_s:8.3f} s  {small.size / ours_small_s:12,.0f} tokens/s")
    print(f"  NLTK fit        {nltk_fit:8.3f} s  {small.size / nltk_fit:12,.0f} tokens/s")
    print(f"  NLTK / sokhan:  {nltk_fit / ours_small_s:8.1f}× slower on the same slice")
    print(f"NLTK extrapolated to {train.size:,} tokens: {extrapolated:,.0f} s (linear), "
          f"{extrapolated / fit_s:,.0f}× sokhan's {fit_s:.1f} s")
    if args.nltk_scores:
        t0 = time.perf_counter()
        ours_lp = ours_small.log_probs(small)
        ours_per = (time.perf_counter() - t0) / max(ours_lp.size, 1)
        print(f"scoring: NLTK {nltk_score * 1e3:,.1f} ms per token ({args.nltk_scores} tokens), sokhan "
              f"{ours_per * 1e6:.2f} µs per token ({ours_lp.size:,} tokens): {nltk_score / ours_per:,.0f}×")
        if args.smoothing == "interpolated":  # the same estimator: the first scores must agree
            ours_p = np.exp(ours_lp[SCORE_FROM - 1: SCORE_FROM - 1 + len(nltk_scores)])
            print(f"  largest |p_sokhan − p_NLTK| over those tokens: {np.abs(ours_p - nltk_scores).max():.2e}")


if __name__ == "__main__":
    main()
