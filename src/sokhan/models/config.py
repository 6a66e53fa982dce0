"""`ModelConfig`: one dataclass that every model family reads (litgpt's `Config`).

The defaults are the modern GPT recipe (pre-norm, GELU, learned positions, tied
embeddings). The paper's original Transformer is one preset away (`paper`): post-norm,
ReLU, sinusoidal positions, embeddings scaled by √d_model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from sokhan.errors import SokhanError

CHOICES = {
    "positional": ("learned", "sinusoidal", "rope", "none"),
    "norm": ("layernorm", "rmsnorm"),
    "activation": ("relu", "gelu", "gelu_tanh", "swiglu"),
    "attention": ("sdpa", "explicit"),
    "smoothing": ("modified", "interpolated"),
}
FAMILY_NAMES = ("gpt", "bert", "rnn", "lstm", "gru", "ngram")
MAX_NGRAM_ORDER = 8


@dataclass
class ModelConfig:
    section: ClassVar[str] = "model"

    family: str = "gpt"            # gpt | bert | rnn | lstm | gru | ngram
    vocab_size: int = 4096
    block_size: int = 256          # context length in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128              # d_model
    ffn_hidden: int | None = None  # d_ff; None: 4·d_model (⅔ of that for SwiGLU, as in LLaMA)
    dropout: float = 0.0           # §5.4 residual dropout: sublayer outputs and embedding sums
    # The paper drops only what `dropout` does; GPT-2 (attn_pdrop) also drops attention weights.
    # Above 0 the CPU leaves the fused attention kernel: the small preset trains 1.5× slower.
    attention_dropout: float = 0.0  # dropout on the attention weights (GPT-2's attn_pdrop)
    positional: str = "learned"
    norm: str = "layernorm"
    prenorm: bool = True           # False: the paper's post-norm "Add & Norm"
    activation: str = "gelu"       # relu (paper) | gelu (exact, BERT/nanoGPT) | gelu_tanh (GPT-2) | swiglu
    tie_weights: bool = True       # share the final linear with the token embedding (paper §3.4)
    scale_embeddings: bool = False  # multiply embeddings by √d_model (paper §3.4)
    bias: bool = True
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    attention: str = "sdpa"        # "sdpa": fused kernel; "explicit": the paper's formula, returns weights
    order: int = 5                 # n-gram order (family ngram): the context is order-1 tokens
    smoothing: str = "modified"    # ngram: modified Kneser-Ney (Chen & Goodman) | interpolated (one discount)
    discount: float = 0.75         # ngram, smoothing=interpolated: the one absolute discount

    def __post_init__(self) -> None:
        if self.family not in FAMILY_NAMES:
            raise SokhanError(f"unknown model family '{self.family}'; choose from {', '.join(FAMILY_NAMES)}")
        if not 1 <= self.order <= MAX_NGRAM_ORDER:
            raise SokhanError(f"n-gram order must be 1 to {MAX_NGRAM_ORDER}, got {self.order}")
        if not 0 < self.discount < 1:
            raise SokhanError(f"n-gram discount must be in (0, 1), got {self.discount}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise SokhanError(f"model option {name}='{getattr(self, name)}' not in {', '.join(allowed)}")
        if self.n_embd % self.n_head:
            raise SokhanError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.positional == "rope" and (self.n_embd // self.n_head) % 2:
            raise SokhanError("RoPE needs an even head size (n_embd / n_head)")
        for name in ("dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise SokhanError(f"model option {name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise SokhanError(f"model option {name} must be positive")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def ffn_size(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        if self.activation == "swiglu":  # keep parameter count ≈ a 4·d ReLU FFN; round up to 64
            return (int(8 * self.n_embd / 3) + 63) // 64 * 64
        return 4 * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise SokhanError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    # A few seconds per hundred steps on a laptop CPU.
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=128),
    # The demo model: ~10 minutes of CPU training on the Hafez corpus.
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.1),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.1),
    # "Attention Is All You Need" base model, decoder-only: post-norm, ReLU, sinusoidal, scaled embeddings.
    "paper": dict(n_layer=6, n_head=8, n_embd=512, ffn_hidden=2048, block_size=512, dropout=0.1,
                  positional="sinusoidal", prenorm=False, activation="relu", scale_embeddings=True),
    # A modern small LLaMA-like recipe.
    "llama-tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256, positional="rope", norm="rmsnorm",
                       activation="swiglu", bias=False, tie_weights=False),
    # GPT-2 small (124M) with its 50257-token vocabulary padded to 50304 (nanoGPT).
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise SokhanError(f"unknown model preset '{name}'; choose from {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
