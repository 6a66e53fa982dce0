"""The Transformer, component by component ("Attention Is All You Need", Vaswani et al. 2017).

Each class is one box of the paper's Figure 1, named after it, so the GPT decoder and the BERT
encoder (and an encoder–decoder) are assembled from the same parts.
Modern variants (pre-norm, RMSNorm, RoPE, GELU, SwiGLU) are switches on the same parts.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.config import ModelConfig


class TokenEmbedding(nn.Module):
    """§3.4 Embeddings: token id → d_model vector (optionally × √d_model, as in the paper)."""

    def __init__(self, vocab_size: int, d_model: int, scale: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        self.scale = math.sqrt(d_model) if scale else 1.0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = F.embedding(idx, self.weight)
        return x * self.scale if self.scale != 1.0 else x


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div = torch.pow(10000.0, torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos / div)
    table[:, 1::2] = torch.cos(pos / div)[:, : d_model // 2]
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """§3.5 Positional Encoding, fixed sine/cosine waves added to the embeddings."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.table[offset: offset + x.size(1)]

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """The encodings of `positions` (B, T): each row at its own positions (rows decoded together)."""
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (GPT-1/2, BERT); the paper found it on par with sinusoids."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, d_model))

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.weight[offset: offset + x.size(1)]

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """The vectors of `positions` (B, T): each row at its own positions (rows decoded together)."""
        return self.weight[positions]


def added_positions(cfg: ModelConfig) -> nn.Module | None:
    """The positional encoding added to the token embeddings (`cfg.positional`): learned or sinusoidal;
    None for RoPE (it rotates queries and keys instead) or for none at all."""
    if cfg.positional == "learned":
        return LearnedPositionalEmbedding(cfg.block_size, cfg.n_embd)
    if cfg.positional == "sinusoidal":
        return SinusoidalPositionalEncoding(cfg.block_size, cfg.n_embd)
    return None


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al. 2021): rotate query/key pairs by a position-dependent angle.

    Uses the "rotate half" pairing (dimension i with i + d/2), as GPT-NeoX and LLaMA do.
    """

    def __init__(self, head_size: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, offset: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[offset: offset + length], self.sin[offset: offset + length]

    def at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of `positions` (B, T) as (B, 1, T, head_size), the same for every head: each row at its
        own positions (rows decoded together)."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout (Srivastava et al. 2014; §5.4 "Residual Dropout"): zero a fraction p, scale the rest by 1/(1−p).

    When it would change nothing (p = 0, or not training) it is not called at all: a call
    costs microseconds, which adds up over the many small steps of token-by-token generation.
    """
    return F.dropout(x, p, training) if training and p > 0 else x


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 allowed: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """§3.2.1 Attention(Q, K, V) = softmax(QKᵀ / √d_k) V, written out so the weights can be seen.

    `allowed` is a boolean mask broadcastable to (B, H, T_q, T_k); False entries get −∞
    before the softmax (the look-ahead mask and the padding mask both work this way).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).type_as(q)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


def attention_mask(t_q: int, t_k: int, causal: bool, padding: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor | None:
    """Boolean (B|1, 1, T_q, T_k) mask of what each query may see; None means "everything".

    Queries are the last `t_q` of the `t_k` positions (the rest come from a KV cache).
    `padding` is (B, T_k) with 1 for real tokens and 0 for padding. A position may always
    see itself, so no row is empty (an all −∞ row would give NaN).
    """
    if not causal and padding is None:
        return None
    q_pos = torch.arange(t_k - t_q, t_k, device=device).unsqueeze(1)
    k_pos = torch.arange(t_k, device=device).unsqueeze(0)
    allowed = (k_pos <= q_pos) if causal else torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    allowed = allowed[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, :].bool()
        allowed = allowed | (k_pos == q_pos)[None, None]
    return allowed


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `max_len`.

    Each layer keeps keys and values in one (2, B, H, max_len, head_size) tensor, so a step
    stores both with a single copy (at one token per step, every op's fixed cost counts).
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_size: int,
                 device: torch.device, dtype: torch.dtype):
        self.kv = [torch.zeros((2, batch, n_head, max_len, head_size), device=device, dtype=dtype)
                   for _ in range(n_layer)]
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's (2, B, H, T, head_size) keys/values at positions length…; return all so far."""
        start, end = self.length, self.length + kv.size(3)
        self.kv[layer].narrow(3, start, end - start).copy_(kv)  # narrow+copy_: cheaper than slice assignment
        return self.kv[layer].narrow(3, 0, end).unbind(0)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows `rows` (in that order), as beam search does when hypotheses are extended or dropped."""
        self.kv = [kv.index_select(1, rows) for kv in self.kv]

    # Rows of different lengths decoded together (`infer/batching.py`) are left-padded: each row's tokens end
    # at `length`. These move rows and positions in place, without allocating a new cache.

    def rows(self, n: int) -> KVCache:
        """The first `n` rows as a cache of their own, on this one's storage and at its length: a step of the
        rows in use writes here (the caller carries the new length back)."""
        view = copy.copy(self)
        view.kv = [kv.narrow(1, 0, n) for kv in self.kv]
        return view

    def place(self, row: int, source: KVCache) -> None:
        """Row `row` ← `source`'s first row (its `length` positions), ending at this cache's length; the
        positions before it are zeroed (padding never holds an old row's values)."""
        n, end = source.length, self.length
        for kv, src in zip(self.kv, source.kv):
            kv[:, row, :, : end - n].zero_()
            kv[:, row, :, end - n: end].copy_(src[:, 0, :, :n])

    def copy_row(self, source: int, row: int) -> None:
        """Row `row` ← row `source` (its `length` positions)."""
        for kv in self.kv:
            kv[:, row, :, : self.length].copy_(kv[:, source, :, : self.length])

    def shift(self, by: int) -> None:
        """Move every row's `length` positions `by` places, and `length` with them: right (by > 0) to make room
        for a longer row, the uncovered positions zeroed; or left (by < 0), dropping the first −by positions,
        which must be padding in every row."""
        n = self.length
        for kv in self.kv:
            if by > 0:
                kv.narrow(3, by, n).copy_(kv.narrow(3, 0, n).clone())  # the ranges overlap: copy from a clone
                kv.narrow(3, 0, by).zero_()
            elif by < 0:
                kv.narrow(3, 0, n + by).copy_(kv.narrow(3, -by, n + by).clone())
        self.length += by


class MultiHeadAttention(nn.Module):
    """§3.2.2 Multi-Head Attention: h heads of scaled dot-product attention, concatenated, projected.

    Two paths give the same numbers: PyTorch's fused `scaled_dot_product_attention`
    (flash / memory-efficient kernels) for speed, and the explicit formula above, which
    also returns the attention weights for pictures.
    """

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.n_head, self.head_size, self.causal = cfg.n_head, cfg.head_size, causal
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)   # W^Q, W^K, W^V for all heads
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)       # W^O
        self.dropout, self.attention_dropout = cfg.dropout, cfg.attention_dropout
        self.explicit = cfg.attention == "explicit"
        # QK-norm (Henry et al. 2020; OLMo 2): each head's q and k RMS-normalized, with a learned gain, before
        # RoPE and the dot product, so no logit can grow without bound however large the weights get.
        self.q_norm = nn.RMSNorm(cfg.head_size, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(cfg.head_size, eps=cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, *, padding: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None, layer: int = 0, need_weights: bool = False,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, attention weights or None). `layer` says which of the cache's layers is this one's; `mask`
        is `attention_mask` of this call's `padding` when the caller built it once for every layer."""
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            changed = rope is not None or self.q_norm is not None  # k is no longer the slice of qkv
            k, v = cache.update(layer, torch.stack((k, v)) if changed else qkv[1:])
        dropout_p = self.attention_dropout if self.training else 0.0
        if self.explicit or need_weights:
            allowed = mask if mask is not None else attention_mask(t, k.size(2), self.causal, padding, x.device)
            y, weights = scaled_dot_product_attention(q, k, v, allowed, dropout_p)
        else:
            weights = None
            if padding is None and (not self.causal or t == k.size(2)):
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
            elif padding is None and t == 1:  # one new token attends to the whole cache
                y = F.scaled_dot_product_attention(q, k, v)
            else:
                allowed = mask if mask is not None else attention_mask(t, k.size(2), self.causal, padding, x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(b, t, c)
        return dropout(self.out(y), self.dropout, self.training), weights


class CrossAttention(nn.Module):
    """§3.2.3 "encoder-decoder attention": queries come from the decoder, keys and values from the encoder's output.

    Every target position may look at every real source position (the source's padding is
    masked out). The keys and values depend on the source only, so `memory_kv` computes them
    once per sentence and decoding reuses them for every generated token.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)        # W^Q, on the decoder's states
        self.kv = nn.Linear(cfg.n_embd, 2 * cfg.n_embd, bias=cfg.bias)   # W^K, W^V, on the encoder's output
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)      # W^O
        self.dropout = cfg.dropout
        self.explicit = cfg.attention == "explicit"

    def memory_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """(2, B, H, S, head_size): the keys and values of the encoder's output `memory` (B, S, d_model)."""
        b, s, _ = memory.shape
        return self.kv(memory).view(b, s, 2, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, memory_kv: torch.Tensor, *, source_padding: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, weights (B, H, T, S) or None); `source_padding` (B, S) is 1 for real source tokens."""
        b, t, c = x.shape
        q = self.q(x).view(b, t, self.n_head, self.head_size).transpose(1, 2)
        k, v = memory_kv.unbind(0)
        allowed = None if source_padding is None else source_padding[:, None, None, :].bool()
        if self.explicit or need_weights:
            y, weights = scaled_dot_product_attention(q, k, v, allowed)
        else:
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), None
        y = y.transpose(1, 2).reshape(b, t, c)
        return dropout(self.out(y), self.dropout, self.training), weights


class FeedForward(nn.Module):
    """§3.3 Position-wise Feed-Forward Network: FFN(x) = act(x W₁ + b₁) W₂ + b₂.

    ReLU as in the paper, GELU as in GPT/BERT (exact, or GPT-2's tanh approximation),
    SwiGLU (Shazeer 2020): (Swish(xW) ⊙ xV) W₂, or ReLU² (So et al. 2021, "Primer" §3): max(0, x)²,
    which the modded-nanoGPT speedrun uses.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.activation = cfg.activation
        hidden = cfg.ffn_size
        self.up = nn.Linear(cfg.n_embd, 2 * hidden if cfg.activation == "swiglu" else hidden, bias=cfg.bias)
        self.down = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.activation == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.activation == "gelu":  # exact erf form: also 2-4× faster than tanh's on CPU
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":  # GPT-2's tanh approximation
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.relu(h)
        return dropout(self.down(h), self.dropout, self.training)


def make_norm(cfg: ModelConfig) -> nn.Module:
    """Layer normalization (Ba et al. 2016), or RMSNorm (Zhang & Sennrich 2019) without centring."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


class TransformerBlock(nn.Module):
    """One layer: self-attention and feed-forward, each wrapped in "Add & Norm" (§3.1).

    Post-norm (the paper): x = Norm(x + Sublayer(x)). Pre-norm (GPT-2 onwards, trains
    more stably when deep): x = x + Sublayer(Norm(x)). `causal` makes it a decoder layer
    (GPT), otherwise an encoder layer (BERT).
    """

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.prenorm = cfg.prenorm
        self.attn_norm, self.ffn_norm = make_norm(cfg), make_norm(cfg)
        self.attn = MultiHeadAttention(cfg, causal)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, *, padding: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None,
                layer: int = 0, need_weights: bool = False, mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.prenorm:
            a, weights = self.attn(self.attn_norm(x), padding=padding, rope=rope, cache=cache, layer=layer,
                                   need_weights=need_weights, mask=mask)
            x = x + a
            return x + self.ffn(self.ffn_norm(x)), weights
        a, weights = self.attn(x, padding=padding, rope=rope, cache=cache, layer=layer, need_weights=need_weights,
                               mask=mask)
        x = self.attn_norm(x + a)
        return self.ffn_norm(x + self.ffn(x)), weights


class DecoderBlock(nn.Module):
    """One decoder layer of the encoder–decoder (§3.1): masked self-attention over the target so far,
    cross-attention over the source, feed-forward, each wrapped in "Add & Norm" (post-norm as in the
    paper, or pre-norm)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.prenorm = cfg.prenorm
        self.attn_norm, self.cross_norm, self.ffn_norm = make_norm(cfg), make_norm(cfg), make_norm(cfg)
        self.attn = MultiHeadAttention(cfg, causal=True)
        self.cross = CrossAttention(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, memory_kv: torch.Tensor, *, source_padding: torch.Tensor | None = None,
                padding: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(output, self-attention weights, cross-attention weights); the weights only when `need_weights`."""
        if self.prenorm:
            a, self_w = self.attn(self.attn_norm(x), padding=padding, cache=cache, layer=layer,
                                  need_weights=need_weights)
            x = x + a
            a, cross_w = self.cross(self.cross_norm(x), memory_kv, source_padding=source_padding,
                                    need_weights=need_weights)
            x = x + a
            return x + self.ffn(self.ffn_norm(x)), self_w, cross_w
        a, self_w = self.attn(x, padding=padding, cache=cache, layer=layer, need_weights=need_weights)
        x = self.attn_norm(x + a)
        a, cross_w = self.cross(x, memory_kv, source_padding=source_padding, need_weights=need_weights)
        x = self.cross_norm(x + a)
        return self.ffn_norm(x + self.ffn(x)), self_w, cross_w
