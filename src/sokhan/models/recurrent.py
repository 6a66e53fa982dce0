"""Recurrent language models: plain RNN (Elman 1990), LSTM (Hochreiter & Schmidhuber 1997), GRU (Cho et al. 2014).

token embedding → recurrent layers (`torch.nn.RNN/LSTM/GRU`, cuDNN on a GPU) → dropout →
final linear, optionally tied to the embedding (Press & Wolf 2017). The hidden state is the
whole memory of the past: it is what a recurrent model carries from one batch to the next
in truncated backpropagation through time, and what it carries from token to token when
sampling — so it plays the part the KV cache plays for the Transformer, through the same
`cache=` argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.config import ModelConfig
from sokhan.constants import IGNORE_INDEX
from sokhan.models.protocol import Capabilities, ModelOutput

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # LSTM: (h, c); RNN/GRU: h


@dataclass
class RecurrentState:
    """The hidden state after `length` tokens; None before the first token (zeros)."""

    hidden: Hidden | None = None
    length: int = 0

    def detach(self) -> None:
        """Cut the graph at the batch boundary: truncated backpropagation through time."""
        if isinstance(self.hidden, tuple):
            self.hidden = tuple(h.detach() for h in self.hidden)
        elif self.hidden is not None:
            self.hidden = self.hidden.detach()


class RecurrentLM(nn.Module):
    """An embedding, `n_layer` stacked cells of the config's family (rnn, lstm, gru), a final linear."""

    capabilities: ClassVar[Capabilities] = Capabilities(causal=True, carries_state=True)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # Dropout between stacked layers inside the cell, and on the embedding and output here (Zaremba et al. 2014).
        self.rnn = CELLS[cfg.family](cfg.n_embd, cfg.n_embd, num_layers=cfg.n_layer, batch_first=True,
                                     dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.embed.weight
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if not cfg.tie_weights:
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def input_embeddings(self) -> torch.Tensor:
        return self.embed.weight

    def new_cache(self, batch: int) -> RecurrentState:
        """Zeros before the first token (the cell makes them, for any batch size)."""
        return RecurrentState()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                padding: torch.Tensor | None = None, cache: RecurrentState | None = None,
                need_weights: bool = False, last_only: bool = False) -> ModelOutput:
        """Logits and loss, as `GPT.forward`; there are no attention weights to need.

        With `cache`, start from its hidden state and leave the new one there (not detached:
        the caller decides where backpropagation stops). `padding` is not supported: a
        recurrent model reads left to right and a pad would enter its memory.
        """
        if padding is not None and not bool(padding.all()):
            raise ValueError("recurrent models read sequences without padding")
        p = self.config.dropout if self.training else 0.0
        x = F.dropout(self.embed(idx), p, self.training)
        out, hidden = self.rnn(x, cache.hidden if cache is not None else None)
        if cache is not None:
            cache.hidden, cache.length = hidden, cache.length + idx.size(1)
        if last_only:
            out = out[:, -1:]
        logits = self.lm_head(F.dropout(out, p, self.training))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return ModelOutput(logits, loss)
