"""N-gram language models: interpolated (modified) Kneser–Ney, counted with numpy.

The n-gram family is the baseline every neural model in sokhan is measured against, so it
has to count a realistic corpus in seconds and plug into the same machinery as the GPT:
`state_dict` / safetensors checkpoints, `forward` returning next-token logits, a cache for
`generate_ids`, and bits per character.

Counting (`fit`) never builds a Python object per n-gram. Each n-gram gets an exact int64
id, built hierarchically: the id of the n-gram starting at position i is

    prefix_index[i] · V + token[i + n − 1]

where prefix_index[i] is the row of its (n−1)-gram prefix in the sorted table of order
n−1. Sorting those ids (np.unique, or a faster equivalent: `_unique`) gives the sorted
table of order n (a trie stored level by level: the children of a context are one
contiguous run of keys), the counts, and the row of every position for the next order.
Ids are below (number of positions) · V, far inside 64 bits, and no hashing is involved.
The continuation count N1+(• w2..wn) of an (n−1)-gram is the number of distinct n-grams
whose suffix it is; the suffix of the n-gram at position i is the (n−1)-gram at i + 1.

Smoothing follows Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for
Language Modeling", TR-10-98. A level is a context length m = 0 … order−1; level m scores
(m+1)-grams. The highest level uses raw counts, the lower ones continuation counts (§2.7,
Kneser–Ney). With c(h w) the level's count of the n-gram h w and c(h •) = Σ_w c(h w):

    p_m(w | h) = max(c(h w) − D(c(h w)), 0) / c(h •) + γ(h) · p_{m−1}(w | h′)     if c(h •) > 0
    p_m(w | h) = p_{m−1}(w | h′)                                                   otherwise

with h′ = h without its first token and p_{−1} the uniform 1/V. γ(h) = Σ_w D(c(h w)) / c(h •)
is exactly the mass the discounts removed, so every distribution sums to 1.

* `smoothing="modified"` (the default; §3, interpolated modified Kneser–Ney): three
  discounts per level, D1, D2 and D3+ for counts 1, 2 and ≥ 3, estimated from that level's
  count-of-counts n1 … n4 (see `modified_discounts`); the unigram level is discounted too
  and interpolated with the uniform distribution, so no token ever has probability 0.
* `smoothing="interpolated"`: plain interpolated Kneser–Ney with the one discount
  `config.discount` at every level with a context, computed exactly like NLTK's
  `nltk.lm.KneserNeyInterpolated` (nltk 3.x: `KneserNey` in `nltk/lm/smoothing.py`,
  `InterpolatedLanguageModel.unmasked_score` in `nltk/lm/models.py`). As in that code, the
  empty context is *not* discounted: for order ≥ 2 it scores the continuation unigram
  N1+(• w) / N1+(• •), so a token that never follows another token has probability 0
  (its logit is `LOG_ZERO` in `forward`, −inf in `log_probs`); for order 1, where NLTK has no
  continuation counts to use, the model is uniform. NLTK's γ counts the distinct words after
  a context in *raw* counts; ours counts those with a continuation count, which differs only
  for n-grams occurring nowhere but at the very start of the stream, and keeps every
  distribution summing to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from sokhan.config import ModelConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.errors import SokhanError
from sokhan.models.protocol import Capabilities, ModelOutput

LOG_ZERO = -1e30           # forward's logit for probability 0: finite (generate_ids checks), exp() is exactly 0
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback: used where a formula divides by zero
CHUNK = 1 << 20            # log_probs scores this many tokens at a time, to bound its memory
DENSE_UNIGRAM_MAX = 1 << 24  # count unigrams with np.bincount (O(V) memory) up to this vocabulary


def modified_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """D1, D2, D3+ from the count-of-counts n_j (how many n-grams were seen exactly j times).

    Chen & Goodman §3 (after Ney et al. 1994): Y = n1 / (n1 + 2 n2), D1 = 1 − 2Y n2/n1,
    D2 = 2 − 3Y n3/n2, D3+ = 3 − 4Y n4/n3. A formula that would divide by zero (tiny or
    degenerate data) takes KenLM's fallback value instead; every discount is then clipped
    into [0, j) (j = 1, 2, 3), so an n-gram always keeps some of its count and γ stays ≤ 1.
    """
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else None
    formulas = ((1, n2, n1), (2, n3, n2), (3, n4, n3))  # D_j = j − (j+1)·Y·n_{j+1}/n_j
    out = []
    for (j, upper, lower), fallback in zip(formulas, FALLBACK_DISCOUNTS):
        d = j - (j + 1) * y * upper / lower if y is not None and lower > 0 else fallback
        out.append(float(min(max(d, 0.0), np.nextafter(j, 0))))
    return out[0], out[1], out[2]


@dataclass
class NGramCache:
    """What `forward` remembers between calls: the last order−1 tokens of every row.

    `length` counts all tokens consumed so far (like `KVCache.length`), which is how
    `generate_ids` decides when its context window is full.
    """

    history: np.ndarray  # (batch, ≤ order−1) int64
    length: int = 0


@dataclass
class _Level:
    """Everything scoring needs at one context length m (the table of (m+1)-grams)."""

    keys: np.ndarray       # sorted int64 ids of the (m+1)-grams: parent row · V + last token
    counts: np.ndarray     # int64 level counts: raw at the top level, continuation counts below
    alpha_num: np.ndarray  # float64 max(c − D(c), 0) per entry: the discounted count
    total: np.ndarray      # float64 c(h •) per context (a row of the m-gram table; one row at m = 0)
    gamma: np.ndarray      # float64 γ(h) per context: the mass passed to the lower level
    discounts: np.ndarray  # float64 (4,): D(c) for c = 0, 1, 2, 3+


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """`t`, or for an empty table a 0-element view of a fresh 1-element storage.

    Checkpoints drop tensors that share storage (tied weights, `unique_state_dict`), and
    every empty tensor has the null data pointer: without this, the empty tables of a fresh
    model (or of orders a short stream never reached) would look tied and be left out.
    """
    return t if t.numel() else torch.empty(1, dtype=t.dtype, device=t.device)[:0]


def _unique(ids: np.ndarray, bound: int, inverse: bool = True,
            ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """np.unique(ids) with return_inverse (None if not `inverse`) and return_counts, plus each id's first position.

    The ids (all < `bound`) are sorted together with their positions packed into the low
    bits of one int64, when that fits: np.sort of plain integers (SIMD, in place) is several
    times faster than the argsort inside np.unique. Otherwise np.unique does it.
    """
    n = ids.size
    shift = max(int(n - 1).bit_length(), 1)
    if bound >= 1 << (62 - shift):
        keys, first, rows, counts = np.unique(ids, return_index=True, return_inverse=True, return_counts=True)
        return keys, rows.reshape(-1) if inverse else None, counts, first
    packed = ids << shift
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    order = packed & ((1 << shift) - 1)  # positions, grouped by id, ascending within an id
    packed >>= shift                      # the sorted ids
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=starts[1:])
    keys = packed[starts]
    del packed
    begin = np.flatnonzero(starts)
    counts = np.diff(begin, append=n)
    first = order[begin]
    del begin
    if not inverse:
        return keys, None, counts, first
    rows = np.empty(n, dtype=np.int64)
    rows[order] = np.cumsum(starts) - 1
    return keys, rows, counts, first


def _lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of each query id in the sorted `keys`, or −1 where absent (negative queries never match)."""
    if keys.size == 0:
        return np.full(query.shape, -1, dtype=np.int64)
    pos = np.searchsorted(keys, query)
    np.minimum(pos, keys.size - 1, out=pos)
    return np.where(keys[pos] == query, pos, -1)


class NGramLM(nn.Module):
    """An order-n Kneser–Ney language model whose tables are buffers of an `nn.Module`.

    The persistent state is, for every order k = 1 … n, `keys{k}` (the sorted n-gram ids) and
    `counts{k}` (the level counts: continuation counts below the top order, raw counts at it).
    Discounts, context totals and γ are derived from them on first use, so a checkpoint holds
    only what was counted and a loaded model scores exactly like the fitted one.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(causal=True, lookup=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "ngram":
            raise SokhanError(f"NGramLM needs model family 'ngram', got '{cfg.family}'")
        self.config = cfg
        for k in range(1, cfg.order + 1):
            self.register_buffer(f"keys{k}", _own_storage(torch.zeros(0, dtype=torch.int64)))
            self.register_buffer(f"counts{k}", _own_storage(torch.zeros(0, dtype=torch.int64)))
        self._levels_cache: list[_Level] | None = None

    # ----------------------------------------------------------------------------- counting

    def fit(self, tokens: np.ndarray) -> None:
        """Count every n-gram of orders 1 … order in a flat token stream (replacing any earlier fit).

        `tokens` is 1-D (e.g. a prepared split's uint16/uint32 memmap: documents as
        `bos … eos` back to back). N-grams cross document boundaries, as the GPT's training
        windows do; the bos/eos ids make those n-grams informative rather than noise.
        """
        toks = self._check_tokens(tokens, "fit")
        v, order, n = self.config.vocab_size, self.config.order, toks.size
        keys: list[np.ndarray] = []
        level_counts: list[np.ndarray] = []
        inv_prev, keys1, raw = self._count_unigrams(toks)
        keys.append(keys1)
        for k in range(2, order + 1):
            if n < k:  # a stream shorter than k has no k-grams: empty tables from here on
                level_counts.append(np.zeros(keys[-1].size, dtype=np.int64))
                keys.append(np.zeros(0, dtype=np.int64))
                raw = np.zeros(0, dtype=np.int64)
                inv_prev = np.zeros(0, dtype=np.int64)
                continue
            ids = inv_prev[: n - k + 1] * v  # the k-gram at i: its (k−1)-gram prefix row, then its last token
            ids += toks[k - 1:]
            keys_k, inv_k, raw, first = _unique(ids, keys[-1].size * v, inverse=k < order)
            del ids
            # Continuation counts of the (k−1)-grams (§2.7): the suffix of each distinct k-gram is
            # the (k−1)-gram one position after (any) occurrence of it; count distinct k-grams per suffix.
            suffix = inv_prev[first + 1]
            del first
            level_counts.append(np.bincount(suffix, minlength=keys[-1].size).astype(np.int64))
            del suffix, inv_prev
            inv_prev = inv_k
            keys.append(keys_k)
        level_counts.append(raw.astype(np.int64, copy=False))  # the top order keeps raw counts
        del inv_prev
        device = self.keys1.device
        for k in range(1, order + 1):
            setattr(self, f"keys{k}", _own_storage(torch.from_numpy(keys[k - 1]).to(device)))
            setattr(self, f"counts{k}", _own_storage(torch.from_numpy(level_counts[k - 1]).to(device)))
        self._levels_cache = None

    def _count_unigrams(self, toks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row of each position in the unigram table, the table's sorted ids, raw counts)."""
        v = self.config.vocab_size
        if v <= DENSE_UNIGRAM_MAX:  # O(n + V), no sort
            counts = np.bincount(toks, minlength=v)
            present = counts > 0
            rank = np.cumsum(present) - 1
            return rank[toks], np.flatnonzero(present).astype(np.int64), counts[present].astype(np.int64)
        keys, inv, counts = np.unique(toks, return_inverse=True, return_counts=True)
        return inv.reshape(-1), keys, counts

    def _check_tokens(self, tokens: np.ndarray | torch.Tensor | Any, what: str) -> np.ndarray:
        """A 1-D int64 array of ids in [0, V): anything else is the user's data not fitting the model."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise SokhanError(f"n-gram {what} needs a flat 1-D token stream, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise SokhanError(f"n-gram {what} needs integer token ids, got {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.config.vocab_size):
            raise SokhanError(f"token ids must be in [0, {self.config.vocab_size}) for this model's vocab_size, "
                              f"got {arr.min()}…{arr.max()}")
        return arr

    # ----------------------------------------------------------------------------- smoothing

    def _levels(self) -> list[_Level]:
        """Derive discounts, context totals and γ from the counted tables (cached until refit/reload)."""
        if self._levels_cache is not None:
            return self._levels_cache
        cfg = self.config
        v, order = cfg.vocab_size, cfg.order
        keys = [getattr(self, f"keys{k}").detach().cpu().numpy() for k in range(1, order + 1)]
        counts = [getattr(self, f"counts{k}").detach().cpu().numpy() for k in range(1, order + 1)]
        levels = []
        for m in range(order):
            c = counts[m]
            if cfg.smoothing == "interpolated" and m == 0 and order == 1:
                c = np.zeros_like(c)  # no continuation counts to use: uniform (see the module docstring)
            discounts = self._discount_table(c, m)
            parents = keys[m] // v if m else np.zeros(c.size, dtype=np.int64)
            n_ctx = keys[m - 1].size if m else 1
            total = np.bincount(parents, weights=c, minlength=n_ctx).astype(np.float64)
            removed = discounts[np.minimum(c, 3)]
            alpha_num = np.maximum(c - removed, 0.0)
            mass = np.bincount(parents, weights=c - alpha_num, minlength=n_ctx)  # Σ_w D(c(h w)), c(h w) > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(total > 0, mass / total, 1.0)
            levels.append(_Level(keys[m], c, alpha_num, total, gamma, discounts))
        self._levels_cache = levels
        return levels

    def _discount_table(self, counts: np.ndarray, m: int) -> np.ndarray:
        """D(c) for c = 0, 1, 2, 3+ at level m."""
        cfg = self.config
        if cfg.smoothing == "modified":
            n1, n2, n3, n4 = (int(np.count_nonzero(counts == j)) for j in (1, 2, 3, 4))
            return np.array([0.0, *modified_discounts(n1, n2, n3, n4)])
        if m == 0:  # NLTK: the empty context is the undiscounted continuation unigram (γ = 0)
            return np.zeros(4)
        return np.array([0.0, cfg.discount, cfg.discount, cfg.discount])

    def discounts(self) -> np.ndarray:
        """(order, 3) float64: D1, D2, D3+ used for n-grams of order k at row k−1."""
        return np.stack([lvl.discounts[1:] for lvl in self._levels()])

    # ----------------------------------------------------------------------------- scoring

    def _dense_probs(self, ctx: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """(n, V) float64 next-token distributions.

        ctx: (n, order−1) int64 contexts, right-aligned (the last column is the latest token);
        lens: (n,) how many of those trailing tokens are real. Level by level, p ← γ·p + α:
        the α's of a context are its children in the next table, one contiguous run of keys.
        """
        levels = self._levels()
        v = self.config.vocab_size
        n, width = ctx.shape
        probs = np.full((n, v), 1.0 / v)
        self._interpolate(probs, np.arange(n), np.zeros(n, dtype=np.int64), levels[0])
        for m in range(1, width + 1):
            rows = np.flatnonzero(lens >= m)
            if rows.size == 0:
                break
            row_ids = self._walk(ctx[rows, width - m:])  # the m-gram of the last m tokens
            found = row_ids >= 0
            self._interpolate(probs, rows[found], row_ids[found], levels[m])
        return probs

    def _walk(self, grams: np.ndarray) -> np.ndarray:
        """(r, m) token rows → row of each m-gram in the order-m table, or −1: m lookups down the trie."""
        levels = self._levels()
        v = self.config.vocab_size
        rows = _lookup(levels[0].keys, grams[:, 0])
        for j in range(1, grams.shape[1]):
            rows = _lookup(levels[j].keys, rows * v + grams[:, j])  # rows −1 give negative ids: no match
        return rows

    def _interpolate(self, probs: np.ndarray, rows: np.ndarray, ctx: np.ndarray, level: _Level) -> None:
        """probs[rows] ← γ(ctx)·probs[rows] + α(· | ctx) for the seen contexts; unseen ones pass everything down."""
        v = self.config.vocab_size
        total = level.total[ctx]
        seen = total > 0
        rows, ctx, total = rows[seen], ctx[seen], total[seen]
        if rows.size == 0:
            return
        probs[rows] *= level.gamma[ctx][:, None]
        lo = np.searchsorted(level.keys, ctx * v)
        hi = np.searchsorted(level.keys, (ctx + 1) * v)
        sizes = hi - lo
        entries = np.repeat(lo - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        probs[np.repeat(rows, sizes), level.keys[entries] % v] += level.alpha_num[entries] / np.repeat(total, sizes)

    def next_token_probs(self, context: list[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """(V,) float64 p(· | context), using the last order−1 tokens of `context` (which may be empty)."""
        width = self.config.order - 1
        ctx = self._check_tokens(context, "context")[-width:] if width else np.zeros(0, dtype=np.int64)
        row = np.full((1, width), -1, dtype=np.int64)
        if ctx.size:
            row[0, width - ctx.size:] = ctx
        return self._dense_probs(row, np.array([ctx.size]))[0]

    @torch.no_grad()
    def log_probs(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """log p(tokens[i] | tokens[:i]) for i = 1 … n−1 (float64, natural log): the fast path for bpc.

        Never builds a V-sized vector: for every position and level it looks up two rows
        (the context's and the n-gram's) with `np.searchsorted`. The ids of the j-grams
        starting at every position come from one lookup per order over the whole chunk:
        row_j[s] = lookup(row_{j−1}[s] · V + token[s + j − 1]). Zero probability (possible
        with smoothing="interpolated") gives −inf.
        """
        toks = self._check_tokens(tokens, "log_probs")
        width = self.config.order - 1
        out = np.empty(max(toks.size - 1, 0), dtype=np.float64)
        for start in range(1, toks.size, CHUNK):
            end = min(start + CHUNK, toks.size)
            begin = max(0, start - width)
            out[start - 1: end - 1] = self._stream_probs(toks[begin:end], start - begin)
        with np.errstate(divide="ignore"):
            return np.log(out)

    def _stream_probs(self, seg: np.ndarray, first: int) -> np.ndarray:
        """p(seg[i] | up to order−1 tokens before it) for i = first … len(seg)−1."""
        levels = self._levels()
        v = self.config.vocab_size
        length = seg.size
        pos = np.arange(first, length)
        grams = [_lookup(levels[0].keys, seg)]  # grams[j−1][s]: row of the j-gram starting at s
        for j in range(2, self.config.order + 1):
            grams.append(_lookup(levels[j - 1].keys, grams[-1][: length - j + 1] * v + seg[j - 1:]))
        probs = np.full(pos.size, 1.0 / v)
        for m, level in enumerate(levels):  # context length m: the m tokens before position pos
            start = pos - m
            usable = start >= 0
            ctx = (np.where(usable, grams[m - 1][np.maximum(start, 0)], -1) if m
                   else np.zeros(pos.size, dtype=np.int64))
            seen = ctx >= 0
            seen[seen] = level.total[ctx[seen]] > 0
            if not seen.any():
                continue
            ngram = grams[m][start[seen]]  # the (m+1)-gram: context and target (exists iff the context does)
            alpha = np.where(ngram >= 0, level.alpha_num[np.maximum(ngram, 0)], 0.0) / level.total[ctx[seen]]
            probs[seen] = alpha + level.gamma[ctx[seen]] * probs[seen]
        return probs

    # ----------------------------------------------------------------------------- nn.Module face

    def new_cache(self, batch: int) -> NGramCache:
        """An empty history for `batch` rows (only the last order−1 tokens are ever kept)."""
        return NGramCache(np.zeros((batch, 0), dtype=np.int64))

    def input_embeddings(self) -> None:
        """None: an n-gram model counts token sequences; it has no embedding to look at."""
        return None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                padding: torch.Tensor | None = None, cache: NGramCache | None = None,
                need_weights: bool = False, last_only: bool = False) -> ModelOutput:
        """Logits and loss, as `GPT.forward`.

        idx: (B, T) token ids. logits: (B, T, V) float32 log-probabilities of the next token
        after every position (only the last with `last_only`); softmax(logits) is the model's
        distribution. The context of position t is the up-to order−1 tokens ending at t, the
        cache's history first. `padding` and `need_weights` are accepted and ignored (there
        is no attention), and there is no block_size limit: only order−1 tokens matter.
        """
        ids = idx.detach().cpu().numpy().astype(np.int64)
        if ids.ndim != 2:
            raise ValueError(f"idx must be (batch, time), got shape {tuple(ids.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size})")
        width = self.config.order - 1
        batch, t = ids.shape
        history = cache.history if cache is not None else np.zeros((batch, 0), dtype=np.int64)
        if history.shape[0] != batch:
            raise ValueError(f"the cache holds {history.shape[0]} rows, idx has {batch}")
        seq = np.concatenate([history, ids], axis=1)
        ends = np.arange(history.shape[1], seq.shape[1])  # positions in seq whose next token is predicted
        if last_only:
            ends = ends[-1:]
        if width:
            padded = np.concatenate([np.full((batch, width), -1, dtype=np.int64), seq], axis=1)
            ctx = sliding_window_view(padded, width, axis=1)[:, ends + 1].reshape(-1, width)
        else:
            ctx = np.zeros((batch * ends.size, 0), dtype=np.int64)
        lens = np.tile(np.minimum(ends + 1, width), batch)
        probs = self._dense_probs(ctx, lens)
        with np.errstate(divide="ignore"):
            logp = np.log(probs)
        logp[probs == 0] = LOG_ZERO
        logits = torch.from_numpy(logp.astype(np.float32).reshape(batch, ends.size, -1)).to(idx.device)
        if cache is not None:
            cache.history = seq[:, seq.shape[1] - min(width, seq.shape[1]):].copy()
            cache.length += t
        loss = None
        if targets is not None:
            if last_only:
                targets = targets[:, -1:]
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten().to(logits.device),
                                   ignore_index=IGNORE_INDEX)
        return ModelOutput(logits, loss)

    def num_parameters(self) -> int:
        """The number of stored n-gram entries (all orders), the model's size on a leaderboard."""
        return sum(getattr(self, f"keys{k}").numel() for k in range(1, self.config.order + 1))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Resize the (empty or differently sized) buffers to the saved tables, then load as usual."""
        for name, buf in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buf is not None and isinstance(saved, torch.Tensor) and saved.shape != buf.shape:
                self._buffers[name] = _own_storage(torch.empty(saved.shape, dtype=buf.dtype, device=buf.device))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._levels_cache = None

    def extra_repr(self) -> str:
        cfg = self.config
        return (f"order={cfg.order}, smoothing={cfg.smoothing}, vocab_size={cfg.vocab_size}, "
                f"entries={self.num_parameters():,}")
