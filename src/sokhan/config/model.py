"""`ModelConfig`: one dataclass that every model family reads (litgpt's `Config`), and its presets.

The field defaults are the modern GPT recipe (pre-norm, GELU, learned positions, tied
embeddings). A preset is a named set of starting values that the other fields then change:
`ModelConfig.create(preset="paper", n_layer=2)` is the paper's base model with two layers.
What you get from the command line, a TOML `[model]` table or `ModelConfig.create()` with no
preset is the `small` preset, the demo's model. A saved config.json holds every field, so
loading it (`from_dict`) rebuilds the same model whatever the presets say today.

Every dimension has a ceiling, and so has the whole: a model whose weights would not fit
any machine sokhan runs on (n_layer 10⁶, a vocabulary of 10¹², …) is refused when its config
is built, naming the estimate, instead of trying to allocate petabytes. The ceilings, far
above anything trained here (GPT-2's 124M is the largest preset):

    vocab_size ≤ 2²⁴ (16,777,216)     block_size ≤ 2²⁰ (1,048,576)    n_layer ≤ 1024
    n_embd, n_head ≤ 2¹⁶ (65,536)     ffn_hidden ≤ 2¹⁸ (262,144)
    parameters (and fixed position tables) ≤ 10¹⁰: 40 GB of float32 weights
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sokhan.config.base import Config, option
from sokhan.errors import SokhanError

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu", "relu2")
FAMILIES = ("gpt", "bert", "rnn", "lstm", "gru", "ngram", "seq2seq")  # each is a class in sokhan.models.FAMILIES
MAX_NGRAM_ORDER = 8
# The ceilings of the module docstring.
MAX_VOCAB = 2**24        # a uint32 shard holds it, and the n-gram's int64 ids stay exact
MAX_BLOCK = 2**20
MAX_LAYERS = 1024
MAX_WIDTH = 2**16
MAX_FFN = 2**18
MAX_PARAMETERS = 10**10
BYTES_PER_NUMBER = 4     # float32, as models are built
RECURRENT_GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer of torch's nn.RNN / GRU / LSTM

PAPER_RECIPE: dict[str, Any] = dict(positional="sinusoidal", prenorm=False, activation="relu", scale_embeddings=True)
PRESETS: dict[str, dict[str, Any]] = {
    # A few seconds per hundred steps on a laptop CPU.
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=128),
    # The demo model: a few minutes of CPU training on the Hafez corpus.
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.1),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.1),
    # "Attention Is All You Need" base model, decoder-only: post-norm, ReLU, sinusoidal, scaled embeddings.
    "paper": dict(n_layer=6, n_head=8, n_embd=512, ffn_hidden=2048, block_size=512, dropout=0.1, **PAPER_RECIPE),
    # A modern small LLaMA-like recipe.
    "llama-tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256, positional="rope", norm="rmsnorm",
                       activation="swiglu", bias=False, tie_weights=False),
    # nanoGPT's README CPU shape (4 × 4 × 128, block 64, no dropout) with rotary positions; `sokhan train --preset
    # speedrun` also trains it with Muon at lr 8e-3 (config/train.py PRESET_TRAINING). Measured by
    # benchmarks/speedrun.py on tiny Shakespeare at half the nanoGPT-recipe peer's wall time (one core, one run
    # each; benchmarks/README.md): with AdamW at lr 1e-3 2.768, with Muon at 8e-3 2.426 (the peer: 2.692).
    # ReLU², QK-norm, zero-initialized projections and an untied head are switches measured there and left out.
    "speedrun": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, positional="rope"),
    # GPT-2 small (124M) with its 50257-token vocabulary padded to 50304 (nanoGPT).
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304),
    # The encoder–decoder of the paper, for translation (family seq2seq): n_layer encoder and n_layer
    # decoder layers, post-norm, ReLU, sinusoids, √d_model-scaled embeddings tied to the output layer.
    # A test size; the CPU default of `sokhan translate-train` (≤ 60 minutes on 2 cores); the paper's base.
    "seq2seq-tiny": dict(family="seq2seq", n_layer=2, n_head=2, n_embd=64, ffn_hidden=256, block_size=128,
                         **PAPER_RECIPE),
    # The CPU preset is pre-norm: in 7-minute trials on the en-fa data it learnt faster at twice the learning
    # rate (val loss 5.11 against post-norm's 5.17 at step 600), and a one-hour run has no room for a restart.
    # d_model 128 and no dropout: in 10-minute one-thread trials a CPU budget is short of tokens, not of capacity;
    # 128 wide read 2.4× the tokens of 256 and reached val loss 4.29 (256: 4.83; 192: 4.55), and dropout 0.1
    # cost 256 wide 0.11 nats (4.83 against 4.72 without).
    "seq2seq-small": dict(family="seq2seq", n_layer=3, n_head=4, n_embd=128, ffn_hidden=512, block_size=256,
                          dropout=0.0, **{**PAPER_RECIPE, "prenorm": True}),
    "seq2seq-base": dict(family="seq2seq", n_layer=6, n_head=8, n_embd=512, ffn_hidden=2048, block_size=256,
                         dropout=0.1, **PAPER_RECIPE),
}
SEQ2SEQ_PRESETS = tuple(name for name, values in PRESETS.items() if values.get("family") == "seq2seq")
DEFAULT_PRESET = "small"


@dataclass(frozen=True)
class ModelConfig(Config):
    section: ClassVar[str] = "model"

    preset: str | None = option(
        None, "named starting values that the other model options change: tiny (2 layers × 64), small (4 × 128, "
        "the demo's), medium (6 × 384), paper (the 2017 base model), llama-tiny (RoPE, RMSNorm, SwiGLU), "
        "speedrun (nanoGPT's CPU shape with RoPE, trained with Muon), gpt2 (124M); for translation "
        "seq2seq-tiny, seq2seq-small (the CPU default), seq2seq-base (the paper's)",
        choices=tuple(PRESETS), what="model preset")
    family: str = option("gpt", "the kind of model: a GPT decoder, a BERT masked encoder, a recurrent network "
                         "(rnn, lstm, gru), a counted n-gram model, or the paper's encoder–decoder for translation "
                         "(seq2seq)",
                         choices=FAMILIES, what="model family")
    vocab_size: int = option(4096, "size of the token embedding and output layer; training takes the "
                             "tokenizer's unless given (it may be larger, e.g. padded to a multiple of 64)", low=1,
                             high=MAX_VOCAB)
    block_size: int = option(256, "context length in tokens (for a recurrent model: the BPTT length)", low=1,
                             high=MAX_BLOCK)
    n_layer: int = option(4, "number of Transformer blocks, or of stacked recurrent layers", low=1, high=MAX_LAYERS)
    n_head: int = option(4, "attention heads per layer (n_embd must divide by it)", low=1, high=MAX_WIDTH)
    n_embd: int = option(128, "width of the model, d_model (the recurrent hidden size)", low=1, high=MAX_WIDTH)
    ffn_hidden: int | None = option(None, "inner width of the feed-forward network, d_ff; unset: 4 · n_embd "
                                    "(⅔ of that for SwiGLU, as in LLaMA)", low=1, high=MAX_FFN)
    dropout: float = option(0.0, "§5.4 residual dropout: sublayer outputs and embedding sums (recurrent "
                            "models: between layers and on input and output)", low=0, high=1, high_open=True)
    # The paper drops only what `dropout` does; GPT-2 (attn_pdrop) also drops attention weights.
    # Above 0 the CPU leaves the fused attention kernel: the small preset trains 1.5× slower.
    attention_dropout: float = option(0.0, "dropout on the attention weights, as GPT-2 does; above 0 a CPU "
                                      "leaves the fused attention kernel (1.5× slower)", low=0, high=1,
                                      high_open=True)
    positional: str = option("learned", "how the Transformer knows word order: learned vectors (GPT-2), the "
                             "paper's sinusoids (with scale_embeddings, as the paper: unscaled token vectors are "
                             "drowned by the ±1 table), rotary RoPE, or none",
                             choices=("learned", "sinusoidal", "rope", "none"))
    norm: str = option("layernorm", "normalization layer: LayerNorm, or RMSNorm (no centring, as in LLaMA)",
                       choices=("layernorm", "rmsnorm"))
    prenorm: bool = option(True, "normalize before each sublayer (GPT-2 on); --no-prenorm is the paper's "
                           "post-norm 'Add & Norm'")
    activation: str = option("gelu", "feed-forward activation: relu (the paper), gelu (exact, BERT/nanoGPT), "
                             "gelu_tanh (GPT-2's approximation), swiglu (LLaMA) or relu2 (ReLU squared, Primer)",
                             choices=ACTIVATIONS)
    tie_weights: bool = option(True, "share the output layer's weights with the token embedding (paper §3.4)")
    scale_embeddings: bool = option(False, "multiply token embeddings by √d_model (paper §3.4), initialized "
                                    "N(0, 1/d_model): unit-variance inputs, the sine table's scale")
    bias: bool = option(True, "biases in the linear layers and LayerNorms")
    norm_eps: float = option(1e-5, "epsilon inside the normalization layers", low=0, low_open=True)
    rope_base: float = option(10000.0, "RoPE's base: the longest rotation wavelength grows with it",
                              low=1, low_open=True)
    qk_norm: bool = option(False, "RMS-normalize each head's queries and keys before their dot product (QK-norm, "
                           "as OLMo 2 and the modded-nanoGPT speedrun): attention logits stay bounded")
    zero_init_out: bool = option(False, "start every block's output projections (attention W^O, feed-forward W₂) at "
                                 "zero, so each block begins as the identity (the modded-nanoGPT speedrun)")
    attention: str = option("sdpa", "attention kernel: sdpa (PyTorch's fused kernel) or explicit (the "
                            "paper's formula written out; same numbers, and the weights can be seen)",
                            choices=("sdpa", "explicit"))
    order: int = option(5, "n-gram order (family ngram): the next token given the previous order − 1",
                        low=1, high=MAX_NGRAM_ORDER)
    smoothing: str = option("modified", "n-gram smoothing: modified Kneser-Ney (Chen & Goodman, three "
                            "discounts) or interpolated Kneser-Ney (one discount, as NLTK)",
                            choices=("modified", "interpolated"))
    discount: float = option(0.75, "n-gram, smoothing=interpolated: the one absolute discount",
                             low=0, high=1, low_open=True, high_open=True)

    @classmethod
    def create(cls, preset: str | None = DEFAULT_PRESET, **values: Any) -> ModelConfig:
        """A preset's values (default: `small`), changed by `values`; `preset=None` starts from the field defaults."""
        if preset is not None and preset not in PRESETS:
            raise SokhanError(f"unknown model preset '{preset}'; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS.get(preset or "", {}), **values, "preset": preset})

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise SokhanError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.family == "seq2seq" and self.positional == "rope":
            raise SokhanError("the seq2seq family adds its positions to the embeddings (sinusoidal, learned or none); "
                              "RoPE is not offered for it")
        if self.positional == "rope" and (self.n_embd // self.n_head) % 2:
            raise SokhanError("RoPE needs an even head size (n_embd / n_head)")
        numbers = self.estimated_numbers()
        if numbers > MAX_PARAMETERS:
            raise SokhanError(f"this {self.family} model would hold about {numbers:.2g} parameters "
                              f"({size_in_words(numbers * BYTES_PER_NUMBER)} of float32), above sokhan's ceiling of "
                              f"{MAX_PARAMETERS:,} ({size_in_words(MAX_PARAMETERS * BYTES_PER_NUMBER)}); lower "
                              f"n_layer, n_embd, vocab_size or block_size")

    def estimated_numbers(self) -> int:
        """How many numbers building this model allocates: its parameters (tied ones once) and its fixed
        position tables (sinusoids, RoPE's angles), computed from the config alone, before any allocation.

        Exact for every family (a test builds each and counts); an n-gram model starts empty, its
        tables are counted from the data.
        """
        if self.family == "ngram":
            return 0
        d = self.n_embd
        total = self.vocab_size * d * (1 if self.tie_weights else 2)  # embedding and output layer
        if self.family in RECURRENT_GATES:  # input and hidden weights, two biases, per gate and layer
            return total + self.n_layer * RECURRENT_GATES[self.family] * (2 * d * d + 2 * d)
        bias = d if self.bias else 0
        norm = d + bias if self.norm == "layernorm" else d
        up = 2 * self.ffn_size if self.activation == "swiglu" else self.ffn_size
        qk = 2 * self.head_size if self.qk_norm else 0  # the two RMSNorm gains over a head
        block = (2 * norm + qk + 3 * d * d + 3 * bias + d * d + bias  # norms, attention (qkv, out)
                 + d * up + (up if self.bias else 0) + self.ffn_size * d + bias)  # feed-forward (up, down)
        positions = {"learned": self.block_size * d, "sinusoidal": self.block_size * d,
                     "rope": 2 * self.block_size * self.head_size, "none": 0}[self.positional]
        if self.family == "seq2seq":  # encoder layers, and decoder layers with cross-attention (norm, q, kv, out)
            cross = norm + 4 * d * d + 4 * bias
            return total + positions + self.n_layer * (2 * block + cross) + (2 * norm if self.prenorm else 0)
        return total + positions + self.n_layer * block + (norm if self.prenorm else 0)

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


def size_in_words(n_bytes: float) -> str:
    """Bytes as a person reads them: 40 GB, 4.8 PB."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    scale = 0
    while n_bytes >= 1000 and scale < len(units) - 1:
        n_bytes, scale = n_bytes / 1000, scale + 1
    return f"{n_bytes:.3g} {units[scale]}"
