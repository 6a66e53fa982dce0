"""The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017), for translation.

    source ids → embedding (×√d_model) + sinusoids → N encoder layers (self-attention, feed-forward)
                                                      = memory: one vector per source token
    target ids → the same embedding + sinusoids → N decoder layers (masked self-attention over the
                 target so far, cross-attention over the memory, feed-forward) → final linear → logits

Source and target share one byte-level BPE vocabulary, so one embedding matrix serves the
encoder's input, the decoder's input and the output layer (§3.4: "we share the same weight
matrix between the two embedding layers and the pre-softmax linear transformation").

It follows the model protocol (`models/protocol.py`) with `capabilities.needs_source`:
`forward(target_in, targets, source=…, source_padding=…)`. Its cache (`Seq2SeqCache`) holds
the decoder's KV cache and the cross-attention keys and values of the encoder's output,
computed on the first call with a source, so the encoder runs once per sentence however many
tokens are generated. Training and decoding are `sokhan.train.translation` and
`sokhan.infer.translate`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.config import ModelConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.models.components import (
    DecoderBlock,
    KVCache,
    LearnedPositionalEmbedding,
    TokenEmbedding,
    TransformerBlock,
    added_positions,
    dropout,
    make_norm,
)
from sokhan.models.protocol import Capabilities, ModelOutput


class Seq2SeqCache:
    """What decoding carries from token to token: the decoder's keys and values so far, and the
    cross-attention keys and values of each layer over the encoder's output (the source, read once)."""

    def __init__(self, self_kv: KVCache):
        self.self_kv = self_kv
        self.memory_kv: list[torch.Tensor] | None = None   # per decoder layer, (2, B, H, S, head_size)
        self.source_padding: torch.Tensor | None = None    # (B, S), 1 for real source tokens
        self.encoder_attentions: list[torch.Tensor] | None = None

    @property
    def length(self) -> int:
        return self.self_kv.length

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows `rows`, in that order (beam search)."""
        self.self_kv.reorder(rows)
        if self.memory_kv is not None:
            self.memory_kv = [kv.index_select(1, rows) for kv in self.memory_kv]
        if self.source_padding is not None:
            self.source_padding = self.source_padding.index_select(0, rows)


class EncoderDecoder(nn.Module):
    """The paper's Transformer (Figure 1): an encoder stack and a decoder stack joined by cross-attention."""

    capabilities: ClassVar[Capabilities] = Capabilities(causal=True, attention=True, needs_source=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.n_embd, scale=cfg.scale_embeddings)
        self.positions = added_positions(cfg)
        self.encoder = nn.ModuleList(TransformerBlock(cfg, causal=False) for _ in range(cfg.n_layer))
        self.decoder = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layer))
        # Post-norm layers already end in a norm; pre-norm stacks need one at their top.
        self.encoder_norm = make_norm(cfg) if cfg.prenorm else nn.Identity()
        self.decoder_norm = make_norm(cfg) if cfg.prenorm else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)  # §3.4 pre-softmax linear
        if cfg.tie_weights:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As fairseq's Transformer (Ott et al. 2019), which reproduces the paper: Xavier-uniform matrices,
        zero biases, embeddings N(0, 1/d_model) so that ×√d_model gives unit-variance inputs; output projections
        zero with `zero_init_out`, as the GPT stack does."""
        for name, p in self.named_parameters():
            if name in ("embed.weight", "lm_head.weight", "positions.weight"):
                nn.init.normal_(p, mean=0.0, std=self.config.n_embd ** -0.5)
            elif self.config.zero_init_out and name.endswith(("out.weight", "down.weight")):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        for m in self.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.reset_parameters()

    def num_parameters(self) -> int:
        n = sum(p.numel() for p in self.parameters())
        if isinstance(self.positions, LearnedPositionalEmbedding):
            n -= self.positions.weight.numel()
        return n

    def input_embeddings(self) -> torch.Tensor:
        return self.embed.weight

    def new_cache(self, batch: int, max_len: int | None = None) -> Seq2SeqCache:
        """An empty cache for `batch` sentences and up to `max_len` target tokens (default: the whole context)."""
        p, cfg = self.lm_head.weight, self.config
        return Seq2SeqCache(KVCache(cfg.n_layer, batch, cfg.n_head, max_len or cfg.block_size, cfg.head_size,
                                    p.device, p.dtype))

    def _embed(self, idx: torch.Tensor, offset: int) -> torch.Tensor:
        if offset + idx.size(1) > self.config.block_size:
            raise ValueError(f"sequence of {offset + idx.size(1)} tokens exceeds block_size {self.config.block_size}")
        x = self.embed(idx)
        if self.positions is not None:
            x = self.positions(x, offset)
        return dropout(x, self.config.dropout, self.training)

    def encode(self, source: torch.Tensor, source_padding: torch.Tensor | None = None, need_weights: bool = False,
               ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The encoder stack: (memory (B, S, d_model), its self-attention weights per layer when asked)."""
        x = self._embed(source, 0)
        attentions = [] if need_weights else None
        for block in self.encoder:
            x, w = block(x, padding=source_padding, need_weights=need_weights)
            if attentions is not None:
                attentions.append(w)
        return self.encoder_norm(x), attentions

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                source: torch.Tensor | None = None, source_padding: torch.Tensor | None = None,
                padding: torch.Tensor | None = None, cache: Seq2SeqCache | None = None,
                need_weights: bool = False, last_only: bool = False) -> ModelOutput:
        """Logits of the target tokens `idx` (B, T) given the source; see `models/protocol.py`.

        source: (B, S) ids, needed unless `cache` already holds its encoding; source_padding:
        (B, S) 1 for real source tokens (a batch of sentences of different lengths is padded);
        padding: (B, T_total) the same for the target side. Attention weights (need_weights):
        `attentions` the decoder's self-attention, `cross_attentions` target over source,
        `encoder_attentions` the encoder's self-attention, each per layer (B, heads, T_q, T_k).
        """
        encoder_attentions = None
        if cache is not None and cache.memory_kv is not None:
            memory_kv, source_padding = cache.memory_kv, cache.source_padding
            encoder_attentions = cache.encoder_attentions
        else:
            if source is None:
                raise ValueError("an encoder–decoder needs source= (the ids of the sentence to translate)")
            memory, encoder_attentions = self.encode(source, source_padding, need_weights)
            memory_kv = [block.cross.memory_kv(memory) for block in self.decoder]
            if cache is not None:
                cache.memory_kv, cache.source_padding = memory_kv, source_padding
                cache.encoder_attentions = encoder_attentions
        offset = cache.length if cache is not None else 0
        x = self._embed(idx, offset)
        self_kv = cache.self_kv if cache is not None else None
        attentions = [] if need_weights else None
        cross_attentions = [] if need_weights else None
        for i, block in enumerate(self.decoder):
            x, self_w, cross_w = block(x, memory_kv[i], source_padding=source_padding, padding=padding,
                                       cache=self_kv, layer=i, need_weights=need_weights)
            if attentions is not None:
                attentions.append(self_w)
                cross_attentions.append(cross_w)
        if self_kv is not None:
            self_kv.length += idx.size(1)
        if last_only and idx.size(1) > 1:
            x = x[:, -1:]
        logits = self.lm_head(self.decoder_norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return ModelOutput(logits, loss, attentions, cross_attentions, encoder_attentions)

