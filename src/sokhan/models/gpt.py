"""The Transformer language-model stack, and GPT: its causal (decoder-only) member.

token embedding → positional encoding → N × (self-attention, feed-forward)
→ final norm (pre-norm only) → final linear → logits; softmax/cross-entropy in `forward`.

`TransformerLM` is that stack, written once. A family is a subclass that says which way
attention may look: GPT (Radford et al. 2018/2019, nanoGPT-sized) masks the future and
predicts the next token; BERT (`models/bert.py`) sees both sides and predicts masked tokens.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.config import ModelConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.models.components import (
    KVCache,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    TokenEmbedding,
    TransformerBlock,
    added_positions,
    attention_mask,
    dropout,
    make_norm,
)
from sokhan.models.protocol import Capabilities, ModelOutput


class TransformerLM(nn.Module):
    """A stack of Transformer blocks with a token-predicting head; a subclass's `capabilities` say if it is causal.

    Every position gets logits over the vocabulary; the loss is cross-entropy against
    `targets`, skipping IGNORE_INDEX. What the targets mean (the next token, or the
    original token under a mask) is the family's task, not the stack's.
    """

    capabilities: ClassVar[Capabilities]

    def __init__(self, cfg: ModelConfig, *, causal_attention: bool | None = None):
        """`causal_attention`: whether attention masks the future; by default what the family's capabilities say
        (a classifier built on a GPT keeps the GPT's look-ahead mask but samples nothing: `models/classifier.py`)."""
        super().__init__()
        self.config = cfg
        self.causal = causal = self.capabilities.causal if causal_attention is None else causal_attention
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.n_embd, scale=cfg.scale_embeddings)
        self.positions = added_positions(cfg)
        self.rope = RotaryEmbedding(cfg.head_size, cfg.block_size, cfg.rope_base) if cfg.positional == "rope" else None
        self.blocks = nn.ModuleList(TransformerBlock(cfg, causal=causal) for _ in range(cfg.n_layer))
        # Post-norm blocks already end in a norm; pre-norm needs one before the final linear.
        self.final_norm = make_norm(cfg) if cfg.prenorm else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)  # §3.4 final linear
        if cfg.tie_weights:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/√(2·n_layer), or zero with
        `zero_init_out` (each block then starts as the identity and the residual stream as the embedding).

        With `scale_embeddings` (the paper's ×√d_model, §3.4) the token embedding is N(0, 1/d_model), as in
        fairseq and the seq2seq family, so that the scaled vectors have unit variance: the scale of the sine
        table they are added to. From N(0, 0.02) the table drowned them (std 0.16 against ±1 at d = 64): a tiny
        sinusoidal GPT stayed at the unigram's 4.31 bits/char after 300 steps on Hafez; with this, 3.82."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                residual = name.endswith(("out.weight", "down.weight"))
                if residual and self.config.zero_init_out:
                    nn.init.zeros_(p)
                    continue
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if residual else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        if self.config.scale_embeddings:
            nn.init.normal_(self.embed.weight, mean=0.0, std=self.config.n_embd ** -0.5)
        for m in self.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.reset_parameters()

    def num_parameters(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and isinstance(self.positions, LearnedPositionalEmbedding):
            n -= self.positions.weight.numel()
        return n

    def input_embeddings(self) -> torch.Tensor:
        return self.embed.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                padding: torch.Tensor | None = None, cache: KVCache | None = None,
                positions: torch.Tensor | None = None, need_weights: bool = False,
                last_only: bool = False) -> ModelOutput:
        """Logits, loss and (need_weights) the attention weights of every layer; see `models/protocol.py`.

        idx: (B, T) token ids; targets: (B, T) ids to predict or IGNORE_INDEX; padding:
        (B, T_total) 1 for real tokens; cache: continue after the tokens it holds (causal only);
        positions: (B, T) each token's position in its own sequence, for rows of one cache that are
        at different lengths (`capabilities.batch_decodes`; default: the cache's length onwards).
        """
        if cache is not None and not self.capabilities.causal:
            # A cache reuses keys/values of earlier tokens, valid only if they never see later ones.
            raise ValueError(f"{type(self).__name__} attends in both directions; it cannot use a KV cache")
        x, attentions = self.stack(idx, padding=padding, cache=cache, positions=positions, need_weights=need_weights)
        if last_only and idx.size(1) > 1:  # norm and project only the last position (the norm is per position)
            x = x[:, -1:]
        logits = self.lm_head(self.final_norm(x))
        loss = self.loss(logits, targets) if targets is not None else None
        return ModelOutput(logits, loss, attentions)

    def stack(self, idx: torch.Tensor, *, padding: torch.Tensor | None = None, cache: KVCache | None = None,
              positions: torch.Tensor | None = None, need_weights: bool = False,
              ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Embeddings, positions and every block: (B, T, n_embd) before the final norm, and the attention weights
        of every layer when `need_weights`. Written once for the token head (`forward`) and a classifier's."""
        offset = cache.length if cache is not None else 0
        t = idx.size(1)
        if offset + t > self.config.block_size:
            raise ValueError(f"sequence of {offset + t} tokens exceeds block_size {self.config.block_size}")
        x = self.embed(idx)
        if self.positions is not None:
            x = self.positions(x, offset) if positions is None else x + self.positions.at(positions)
        x = dropout(x, self.config.dropout, self.training)
        rope = None
        if self.rope is not None:
            rope = self.rope(offset, t) if positions is None else self.rope.at(positions)
        # With padding, the mask depends on the lengths and the padding only: built once, not in every layer
        # (a batched server step on the benchmark GPT: ~30 fewer ops).
        mask = None if padding is None else attention_mask(t, offset + t, self.causal, padding, idx.device)
        attentions = [] if need_weights else None
        for i, block in enumerate(self.blocks):
            x, w = block(x, padding=padding, rope=rope, cache=cache, layer=i, need_weights=need_weights, mask=mask)
            if attentions is not None:
                attentions.append(w)
        if cache is not None:
            cache.length += t
        return x, attentions

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the targets that are not IGNORE_INDEX."""
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


class GPT(TransformerLM):
    """Decoder-only: each position sees itself and the past, and predicts the next token."""

    capabilities: ClassVar[Capabilities] = Capabilities(causal=True, attention=True, batch_decodes=True)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch` rows, room for `max_len` tokens (default: the whole context)."""
        p = self.lm_head.weight
        cfg = self.config
        return KVCache(cfg.n_layer, batch, cfg.n_head, max_len or cfg.block_size, cfg.head_size, p.device, p.dtype)
