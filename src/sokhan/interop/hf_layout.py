"""Where each of sokhan's Transformer weights lives in a transformers GPT-2 or Llama checkpoint.

One table per architecture serves both directions, so export and import cannot drift apart:
each `Part` says which transformers tensors, stacked along their first axis, make one of
sokhan's tensors. sokhan keeps W^Q, W^K, W^V in one `qkv` linear and SwiGLU's gate and value
in one `up` linear (gate first: `FeedForward` chunks it so); transformers keeps them apart
in Llama (`q_proj`, `k_proj`, `v_proj`; `gate_proj`, `up_proj`) and together in GPT-2's
`c_attn`. GPT-2 stores its linears as `Conv1D`, (in, out), the transpose of `nn.Linear`.

RoPE needs no permutation: sokhan's `apply_rotary` pairs dimension i with i + d/2 ("rotate
half"), as transformers' Llama does, with the same angles (cos and sin of both halves alike).

The shapes of every tensor a checkpoint must hold come from its config (`hf_shapes`), so a
file is checked, name by name, before a single tensor is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPT2, LLAMA = "GPT2LMHeadModel", "LlamaForCausalLM"
MODEL_TYPES = {"gpt2": GPT2, "llama": LLAMA}   # config.json's model_type → the class it names
GPT2_PREFIX = "transformer."                   # GPT2LMHeadModel's body; checkpoints of 2019 lack it


@dataclass(frozen=True)
class Part:
    """sokhan's tensor `ours` is transformers' tensors `theirs` stacked along dim 0, each transposed first
    when `transposed` (GPT-2's Conv1D). A bias that one side lacks is zeros on the other."""

    ours: str
    theirs: tuple[str, ...]
    transposed: bool = False


def gpt2_parts(n_layer: int, tied: bool) -> list[Part]:
    parts = [Part("embed.weight", ("transformer.wte.weight",)), Part("positions.weight", ("transformer.wpe.weight",))]
    for i in range(n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b, conv in (("attn_norm", "ln_1", False), ("attn.qkv", "attn.c_attn", True),
                           ("attn.out", "attn.c_proj", True), ("ffn_norm", "ln_2", False),
                           ("ffn.up", "mlp.c_fc", True), ("ffn.down", "mlp.c_proj", True)):
            parts += [Part(f"{ours}{a}.weight", (f"{theirs}{b}.weight",), conv),
                      Part(f"{ours}{a}.bias", (f"{theirs}{b}.bias",))]
    parts += [Part("final_norm.weight", ("transformer.ln_f.weight",)),
              Part("final_norm.bias", ("transformer.ln_f.bias",))]
    if not tied:
        parts.append(Part("lm_head.weight", ("lm_head.weight",)))
    return parts


def llama_parts(n_layer: int, tied: bool) -> list[Part]:
    parts = [Part("embed.weight", ("model.embed_tokens.weight",))]
    for i in range(n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        attn, mlp = f"{theirs}self_attn.", f"{theirs}mlp."
        parts.append(Part(f"{ours}attn_norm.weight", (f"{theirs}input_layernorm.weight",)))
        parts.append(Part(f"{ours}ffn_norm.weight", (f"{theirs}post_attention_layernorm.weight",)))
        for kind in ("weight", "bias"):
            parts += [Part(f"{ours}attn.qkv.{kind}", tuple(f"{attn}{p}_proj.{kind}" for p in "qkv")),
                      Part(f"{ours}attn.out.{kind}", (f"{attn}o_proj.{kind}",)),
                      Part(f"{ours}ffn.up.{kind}", (f"{mlp}gate_proj.{kind}", f"{mlp}up_proj.{kind}")),
                      Part(f"{ours}ffn.down.{kind}", (f"{mlp}down_proj.{kind}",))]
    parts.append(Part("final_norm.weight", ("model.norm.weight",)))
    if not tied:
        parts.append(Part("lm_head.weight", ("lm_head.weight",)))
    return parts


def parts_for(architecture: str, n_layer: int, tied: bool) -> list[Part]:
    return (gpt2_parts if architecture == GPT2 else llama_parts)(n_layer, tied)


def hf_shapes(architecture: str, c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this config holds, with its shape (a tied lm_head is not stored)."""
    if architecture == GPT2:
        return _gpt2_shapes(c)
    return _llama_shapes(c)


def _gpt2_shapes(c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    d, v, f = c["n_embd"], c["vocab_size"], c.get("n_inner") or 4 * c["n_embd"]
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (v, d),
                                          "transformer.wpe.weight": (c["n_positions"], d)}
    for i in range(c["n_layer"]):
        h = f"transformer.h.{i}."
        shapes.update({f"{h}ln_1.weight": (d,), f"{h}ln_1.bias": (d,), f"{h}attn.c_attn.weight": (d, 3 * d),
                       f"{h}attn.c_attn.bias": (3 * d,), f"{h}attn.c_proj.weight": (d, d), f"{h}attn.c_proj.bias": (d,),
                       f"{h}ln_2.weight": (d,), f"{h}ln_2.bias": (d,), f"{h}mlp.c_fc.weight": (d, f),
                       f"{h}mlp.c_fc.bias": (f,), f"{h}mlp.c_proj.weight": (f, d), f"{h}mlp.c_proj.bias": (d,)})
    shapes.update({"transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)})
    if not c.get("tie_word_embeddings", True):
        shapes["lm_head.weight"] = (v, d)
    return shapes


def _llama_shapes(c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    d, v, f = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    hd = c.get("head_dim") or d // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, d)}
    for i in range(c["num_hidden_layers"]):
        a, m = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        shapes.update({f"model.layers.{i}.input_layernorm.weight": (d,),
                       f"model.layers.{i}.post_attention_layernorm.weight": (d,),
                       f"{a}q_proj.weight": (heads * hd, d), f"{a}k_proj.weight": (kv * hd, d),
                       f"{a}v_proj.weight": (kv * hd, d), f"{a}o_proj.weight": (d, heads * hd),
                       f"{m}gate_proj.weight": (f, d), f"{m}up_proj.weight": (f, d), f"{m}down_proj.weight": (d, f)})
        if c.get("attention_bias", False):
            shapes.update({f"{a}q_proj.bias": (heads * hd,), f"{a}k_proj.bias": (kv * hd,),
                           f"{a}v_proj.bias": (kv * hd,), f"{a}o_proj.bias": (d,)})
        if c.get("mlp_bias", False):
            shapes.update({f"{m}gate_proj.bias": (f,), f"{m}up_proj.bias": (f,), f"{m}down_proj.bias": (d,)})
    shapes["model.norm.weight"] = (d,)
    if not c.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (v, d)
    return shapes
