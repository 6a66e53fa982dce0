"""The n-gram family: counting, Kneser–Ney smoothing (against NLTK and Chen & Goodman), checkpoints, sampling."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sokhan.models.ngram as ngram_module
from sokhan.config import ModelConfig, SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.sampling import generate_ids
from sokhan.models.checkpoint import load_weights, save_checkpoint
from sokhan.models.ngram import NGramLM, modified_discounts


def make(order: int, vocab_size: int, smoothing: str = "modified", **kw) -> NGramLM:
    return NGramLM(ModelConfig(family="ngram", order=order, vocab_size=vocab_size, smoothing=smoothing, **kw))


def zipf_stream(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Random ids with a Zipfian frequency profile, like real text: many singletons and a few frequent ids."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    return rng.choice(vocab, size=n, p=p / p.sum()).astype(np.uint16)


def contexts_of(stream: np.ndarray, order: int) -> list[tuple[int, ...]]:
    """Every distinct context of length 0 … order−1 that occurs in the stream."""
    seq = [int(t) for t in stream]
    out = {()}
    for m in range(1, order):
        out.update(tuple(seq[i:i + m]) for i in range(len(seq) - m + 1))
    return sorted(out, key=lambda c: (len(c), c))


def table(model: NGramLM, k: int) -> dict[tuple[int, ...], int]:
    """Decode the order-k table back into {n-gram tuple: level count} by following the parent rows."""
    v = model.config.vocab_size
    keys = [getattr(model, f"keys{j}").numpy() for j in range(1, k + 1)]
    counts = getattr(model, f"counts{k}").numpy()
    out = {}
    for row, c in enumerate(counts):
        gram, j, r = [], k, row
        while j >= 1:
            key = int(keys[j - 1][r])
            gram.append(key % v)
            r, j = key // v, j - 1
        out[tuple(reversed(gram))] = int(c)
    return out


def reference_counts(seq: list[int], order: int) -> list[dict[tuple[int, ...], int]]:
    """Level counts by brute force: raw at the top order, continuation counts N1+(• g) below."""
    raw = [Counter(tuple(seq[i:i + k]) for i in range(len(seq) - k + 1)) for k in range(1, order + 1)]
    levels = []
    for k in range(1, order + 1):
        if k == order:
            levels.append(dict(raw[k - 1]))
        else:
            cont = Counter(g[1:] for g in raw[k])  # distinct (k+1)-grams per k-gram suffix
            levels.append({g: cont.get(g, 0) for g in raw[k - 1]})
    return levels


# ------------------------------------------------------------------------------------ counting


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_tables_hold_exact_counts(order):
    stream = zipf_stream(400, 9, seed=order)
    model = make(order, 9)
    model.fit(stream)
    expected = reference_counts([int(t) for t in stream], order)
    for k in range(1, order + 1):
        assert table(model, k) == expected[k - 1]
        keys = getattr(model, f"keys{k}").numpy()
        assert np.all(np.diff(keys) > 0)  # sorted and unique: lookups are binary searches
    assert model.num_parameters() == sum(len(e) for e in expected)


def test_fit_rejects_ids_outside_the_vocabulary():
    model = make(3, 5)
    with pytest.raises(SokhanError):
        model.fit(np.array([0, 1, 5], dtype=np.uint16))
    with pytest.raises(SokhanError):
        model.fit(np.zeros((2, 3), dtype=np.int64))


@pytest.mark.parametrize("order", [0, 9, -1])
def test_order_out_of_range_is_a_user_error(order):
    with pytest.raises(SokhanError):
        ModelConfig(family="ngram", order=order)


# ------------------------------------------------------------------------------------ smoothing


def test_interpolated_equals_nltk_kneser_ney():
    """Every (context, word) probability equals nltk.lm.KneserNeyInterpolated(order, discount) to 1e-9.

    NLTK gets the same stream as one sentence of everygrams, so its n-grams cross sentence
    boundaries as ours do. The stream is two sentences repeated twice: every n-gram that
    opens the stream also occurs later, so the number of distinct words after a context
    is the same in raw counts (NLTK's γ) and in continuation counts (ours, which keeps every
    distribution summing to 1; they differ only for n-grams seen nowhere but at the start).
    NLTK's vocabulary adds <UNK>: our vocab_size is the size of NLTK's vocabulary, so <UNK>
    is an id that never occurs, and both give it probability 0 (NLTK's unigram level is the
    undiscounted continuation unigram).
    """
    pytest.importorskip("nltk")
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams

    sentences = [["<s>", "the", "cat", "sat", "on", "the", "mat", "</s>"],
                 ["<s>", "the", "dog", "sat", "on", "the", "cat", "</s>"]]
    words = [w for s in sentences for w in s] * 2
    for order, discount in [(2, 0.75), (3, 0.5), (4, 0.1)]:
        lm = KneserNeyInterpolated(order, discount=discount)
        lm.fit([list(everygrams(words, max_len=order))], vocabulary_text=words)
        vocab = sorted(lm.vocab)
        assert "<UNK>" in vocab
        ids = {w: i for i, w in enumerate(vocab)}
        model = make(order, len(vocab), "interpolated", discount=discount)
        model.fit(np.array([ids[w] for w in words], dtype=np.uint16))
        seen = contexts_of(np.array([ids[w] for w in words]), order)
        unseen = [(ids["mat"], ids["dog"])[: order - 1], (ids["<UNK>"],),
                  (ids["cat"], ids["the"], ids["sat"])[: order - 1]]
        checked = 0
        for ctx in seen + unseen:
            ours = model.next_token_probs(list(ctx))
            assert abs(ours.sum() - 1) < 1e-12
            for w in vocab:
                theirs = lm.unmasked_score(w, tuple(vocab[i] for i in ctx) or None)
                assert ours[ids[w]] == pytest.approx(theirs, abs=1e-9), (order, ctx, w)
                checked += 1
        assert {len(c) for c in seen} == set(range(order))  # contexts of every length were compared
        assert checked >= 100


@pytest.mark.parametrize("smoothing", ["modified", "interpolated"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_every_distribution_sums_to_one(smoothing, order):
    stream = zipf_stream(600, 14, seed=order)
    model = make(order, 16, smoothing)  # ids 14, 15 never occur
    model.fit(stream)
    rng = np.random.default_rng(1)
    ctxs = contexts_of(stream, order)
    ctxs += [tuple(rng.integers(0, 16, size=m)) for m in range(order) for _ in range(5)]  # mostly unseen
    for ctx in ctxs:
        p = model.next_token_probs(list(ctx))
        assert p.shape == (16,)
        assert np.all(p >= 0)
        assert abs(p.sum() - 1.0) < 1e-12
        if smoothing == "modified":
            assert np.all(p > 0)  # interpolation with the uniform: nothing is impossible


def test_modified_discounts_match_chen_goodman():
    """D1, D2, D3+ per order from count-of-counts computed here by brute force (Chen & Goodman §3)."""
    order = 3
    stream = zipf_stream(3000, 300, seed=0)  # a large vocabulary: rare unigrams have continuation counts 1…4
    model = make(order, 300)
    model.fit(stream)
    levels = reference_counts([int(t) for t in stream], order)
    got = model.discounts()
    assert got.shape == (order, 3)
    for k in range(1, order + 1):
        n = [sum(1 for c in levels[k - 1].values() if c == j) for j in (1, 2, 3, 4)]
        assert all(n), f"the test corpus should have every count-of-count at order {k}: {n}"
        y = n[0] / (n[0] + 2 * n[1])
        expected = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
        assert all(0 < d < j for j, d in zip((1, 2, 3), expected))  # no clipping or fallback involved here
        assert got[k - 1] == pytest.approx(expected, abs=1e-12)


def test_degenerate_count_of_counts_fall_back_and_clip():
    assert modified_discounts(0, 0, 0, 0) == (0.5, 1.0, 1.5)
    d1, d2, d3 = modified_discounts(10, 0, 0, 0)  # Y = 1: D1 would be 1; D2, D3+ divide by zero
    assert 0.99 < d1 < 1 and (d2, d3) == (1.0, 1.5)
    d1, d2, d3 = modified_discounts(1, 1, 100, 1)  # D2 = 2 − 3·(1/3)·100 < 0 → 0
    assert d2 == 0.0 and 0 <= d1 < 1 and 0 <= d3 < 3
    model = make(2, 6)
    model.fit(np.array([0, 1, 2, 3, 4, 5], dtype=np.uint16))  # every count is 1
    for row in model.discounts():
        assert all(0 <= d < j for j, d in zip((1, 2, 3), row))
    assert abs(model.next_token_probs([3]).sum() - 1) < 1e-12


def reference_modified_kn(seq: list[int], order: int, vocab: int):
    """A direct, dict-based interpolated modified Kneser–Ney, written from the formulas (Chen & Goodman §3)."""
    levels = reference_counts(seq, order)
    discounts = []
    for k in range(order):
        n = [sum(1 for c in levels[k].values() if c == j) for j in (1, 2, 3, 4)]
        discounts.append((0.0, *modified_discounts(*n)))
    children: list[dict[tuple[int, ...], dict[int, int]]] = [defaultdict(dict) for _ in range(order)]
    for k in range(order):
        for gram, c in levels[k].items():
            children[k][gram[:-1]][gram[-1]] = c

    def prob(word: int, ctx: tuple[int, ...]) -> float:
        lower = prob(word, ctx[1:]) if ctx else 1.0 / vocab
        kids = children[len(ctx)].get(ctx, {})
        total = sum(kids.values())
        if total == 0:
            return lower
        d = discounts[len(ctx)]
        gamma = sum(d[min(c, 3)] for c in kids.values() if c > 0) / total
        c = kids.get(word, 0)
        return max(c - d[min(c, 3)], 0) / total + gamma * lower

    return prob


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_modified_kneser_ney_equals_a_direct_implementation(order):
    stream = zipf_stream(500, 10, seed=3)
    model = make(order, 12)
    model.fit(stream)
    prob = reference_modified_kn([int(t) for t in stream], order, 12)
    rng = np.random.default_rng(0)
    ctxs = contexts_of(stream, order)[:150] + [tuple(rng.integers(0, 12, size=order - 1)) for _ in range(10)]
    for ctx in ctxs:
        ours = model.next_token_probs(list(ctx))
        expected = [prob(w, tuple(int(t) for t in ctx)) for w in range(12)]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=60), st.lists(st.integers(0, 6), max_size=5))
def test_interpolated_order_one_is_uniform(stream, context):
    model = make(1, 7, "interpolated")
    model.fit(np.array(stream, dtype=np.int64))
    assert np.all(model.next_token_probs(context) == 1 / 7)
    if len(stream) > 1:
        np.testing.assert_allclose(model.log_probs(np.array(stream)), math.log(1 / 7), rtol=0, atol=1e-15)


def test_unfitted_model_is_uniform():
    model = make(3, 10)
    assert np.allclose(model.next_token_probs([1, 2]), 0.1)
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 10)
    assert torch.allclose(logits, torch.full_like(logits, math.log(0.1)))


# ------------------------------------------------------------------------------------ module face


@pytest.mark.parametrize("smoothing", ["modified", "interpolated"])
def test_log_probs_equal_forward(smoothing, monkeypatch):
    stream = zipf_stream(2000, 20, seed=5)
    model = make(4, 20, smoothing)
    model.fit(stream)
    held_out = zipf_stream(300, 20, seed=6)
    fast = model.log_probs(held_out)
    assert fast.shape == (299,) and fast.dtype == np.float64
    x = torch.from_numpy(held_out[:-1].astype(np.int64))[None]
    y = torch.from_numpy(held_out[1:].astype(np.int64))[None]
    out = model(x, y)
    logits, loss, extra = out.logits, out.loss, out.attentions
    assert logits.shape == (1, 299, 20) and logits.dtype == torch.float32 and extra is None
    assert torch.allclose(torch.softmax(logits, -1).sum(-1), torch.ones(1, 299))
    gathered = logits[0].double().gather(1, y[0, :, None])[:, 0].numpy()
    finite = np.isfinite(fast)
    np.testing.assert_allclose(gathered[finite], fast[finite], rtol=0, atol=1e-5)
    if finite.all():
        assert float(loss) == pytest.approx(-fast.mean(), abs=1e-5)
    # exact in float64, position by position
    for i in (0, 1, 2, 3, 150, 298):
        p = model.next_token_probs(held_out[: i + 1])[held_out[i + 1]]
        assert fast[i] == pytest.approx(math.log(p), abs=1e-12)
    # chunking (with its order−1 tokens of overlap) changes nothing
    monkeypatch.setattr(ngram_module, "CHUNK", 7)
    np.testing.assert_array_equal(model.log_probs(held_out), fast)
    assert model.log_probs(torch.from_numpy(held_out.astype(np.int64))).tolist() == fast.tolist()


def test_cached_forward_equals_full_forward():
    stream = zipf_stream(1500, 15, seed=8)
    model = make(5, 15)
    model.fit(stream)
    seq = torch.from_numpy(zipf_stream(40, 15, seed=9).astype(np.int64)).view(2, 20)
    full = model(seq).logits
    cache = model.new_cache(2)
    first = model(seq[:, :6], cache=cache).logits
    assert torch.equal(first, full[:, :6])
    assert cache.length == 6
    for t in range(6, 20):
        step = model(seq[:, t:t + 1], cache=cache, last_only=True).logits
        assert step.shape == (2, 1, 15)
        assert torch.equal(step[:, 0], full[:, t])
    assert cache.length == 20
    last = model(seq, last_only=True).logits
    assert torch.equal(last[:, 0], full[:, -1])


@pytest.mark.parametrize("smoothing", ["modified", "interpolated"])
def test_generate_ids_samples_with_a_seed(smoothing):
    stream = zipf_stream(1500, 12, seed=10)
    model = make(3, 14, smoothing, block_size=16)  # ids 12, 13 never occur; block 16 forces a cache restart
    model.fit(stream)
    cfg = SampleConfig(max_new_tokens=40, temperature=1.0, seed=123)
    a = list(generate_ids(model, [1, 2, 3], cfg))
    b = list(generate_ids(model, [1, 2, 3], cfg))
    assert len(a) == 40 and a == b
    assert all(0 <= t < 14 for t in a)
    greedy = list(generate_ids(model, [1, 2], SampleConfig(max_new_tokens=5, temperature=0)))
    assert len(greedy) == 5


def test_save_load_round_trip(tmp_path):
    cfg = ModelConfig(family="ngram", order=4, vocab_size=30, smoothing="modified")
    model = NGramLM(cfg)
    model.fit(zipf_stream(3000, 30, seed=11))
    folder = save_checkpoint(tmp_path / "run", 1, model, {"model": cfg.to_dict()}, "{}", None)
    loaded = NGramLM(ModelConfig.from_dict(cfg.to_dict()))
    assert loaded.num_parameters() == 0
    load_weights(loaded, folder)
    assert loaded.num_parameters() == model.num_parameters()
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    held_out = zipf_stream(500, 30, seed=12)
    np.testing.assert_array_equal(loaded.log_probs(held_out), model.log_probs(held_out))
    x = torch.from_numpy(held_out[:50].astype(np.int64))[None]
    assert torch.equal(loaded(x).logits, model(x).logits)
    np.testing.assert_array_equal(loaded.discounts(), model.discounts())
    with pytest.raises(SokhanError):  # another order has other tables
        load_weights(make(3, 30), folder)


def test_short_stream_round_trip(tmp_path):
    """Orders longer than the stream leave empty tables; they are saved and restored like the rest."""
    cfg = ModelConfig(family="ngram", order=5, vocab_size=8)
    model = NGramLM(cfg)
    model.fit(np.array([1, 2, 3], dtype=np.uint16))
    assert model.keys4.numel() == 0 and model.keys5.numel() == 0
    folder = save_checkpoint(tmp_path / "run", 1, model, {"model": cfg.to_dict()}, "{}", None)
    loaded = NGramLM(cfg)
    load_weights(loaded, folder)
    np.testing.assert_array_equal(loaded.next_token_probs([1, 2, 3, 1]), model.next_token_probs([1, 2, 3, 1]))
    assert abs(model.next_token_probs([1, 2]).sum() - 1) < 1e-12


@pytest.mark.parametrize("bound", [50, 1 << 61])  # packed-sort path, and np.unique when the packing would not fit
def test_unique_both_paths_agree_with_numpy(bound):
    ids = np.random.default_rng(0).integers(0, 50, size=1000).astype(np.int64)
    keys, rows, counts, first = ngram_module._unique(ids, bound)
    ref_keys, ref_first, ref_rows, ref_counts = np.unique(ids, return_index=True, return_inverse=True,
                                                          return_counts=True)
    for got, ref in [(keys, ref_keys), (rows, ref_rows), (counts, ref_counts), (first, ref_first)]:
        np.testing.assert_array_equal(got, ref)
    assert ngram_module._unique(ids, bound, inverse=False)[1] is None
