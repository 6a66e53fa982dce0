"""`sokhan export MODEL OUT --format hf`: a sokhan model as a Hugging Face transformers folder.

The folder (config.json, model.safetensors, tokenizer files, generation_config.json) loads with
`AutoModelForCausalLM.from_pretrained(OUT)` and `AutoTokenizer.from_pretrained(OUT)`, without
transformers being needed here: it is written with safetensors and JSON alone.

A model is exported only into a class that computes exactly what it computes (the tests compare
logits to 1e-4); anything else is refused with the option that stands in the way:

* `GPT2LMHeadModel`: family gpt, learned positions (or none: an all-zero position table), LayerNorm,
  pre-norm, GELU (exact: `gelu`), GELU-tanh (`gelu_pytorch_tanh`) or ReLU. A bias-free model
  exports with zero biases, which is exact.
* `LlamaForCausalLM`: family gpt, RoPE, RMSNorm, SwiGLU, pre-norm; with or without biases.
* Tied output weights are left out of the file and `tie_word_embeddings` says so, as transformers
  writes it; untied ones are stored as `lm_head.weight`.

Refused: the BERT masked encoder (transformers' BERT normalizes the summed embeddings and passes the
last hidden state through a dense layer, an activation and a LayerNorm before its output layer;
sokhan's BERT has neither, so no setting of it is expressible, and the masked-LM heads of RoBERTa,
Megatron-BERT, ESM and ModernBERT have the same transform), sinusoidal positions, post-norm,
√d-scaled embeddings, and the recurrent, n-gram and encoder–decoder families. A LoRA checkpoint is
merged first.

Written for transformers 4.40 and later (5.x reads `rope_parameters`, 4.x `rope_theta`); a Llama
with biases needs 4.41 or later, the first whose LlamaConfig has `mlp_bias`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from sokhan.config import ModelConfig
from sokhan.errors import SokhanError
from sokhan.interop.hf_layout import GPT2, LLAMA, hf_shapes, parts_for
from sokhan.interop.hf_tokenizer import export_tokenizer_files
from sokhan.models.checkpoint import CONFIG, read_config, resolve_model_dir, save_folder
from sokhan.models.lora import merge_lora
from sokhan.models.trained import TrainedModel
from sokhan.text.chat_template import TEMPLATE_NAME

GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}  # transformers' ACT2FN names
BERT_REFUSAL = ("family bert cannot be exported: transformers' BertForMaskedLM layer-normalizes the summed "
                "embeddings and transforms the last hidden state (dense, activation, LayerNorm) before its output "
                "layer, and sokhan's BERT does neither, so no setting of it is expressible exactly (the masked-LM "
                "heads of RoBERTa, Megatron-BERT, ESM and ModernBERT have that transform too)")


@dataclass(frozen=True)
class Exported:
    folder: Path
    architecture: str
    chat_template: bool


def hf_architecture(cfg: ModelConfig) -> str:
    """The transformers class that computes exactly what a model of `cfg` computes; a one-line SokhanError
    naming the option that no class can express otherwise."""
    if cfg.family == "bert":
        raise SokhanError(BERT_REFUSAL)
    if cfg.family != "gpt":
        raise SokhanError(f"family {cfg.family} cannot be exported: transformers' GPT-2 and Llama are Transformer "
                          f"decoders, and only family gpt is one")
    if not cfg.prenorm:
        raise SokhanError("prenorm off (post-norm, --no-prenorm) cannot be exported: GPT-2 and Llama normalize before "
                          "each sublayer")
    if cfg.scale_embeddings:
        raise SokhanError("scale_embeddings (× √d_model) cannot be exported: neither GPT-2 nor Llama scales its "
                          "token embeddings")
    if cfg.qk_norm:
        raise SokhanError("qk_norm cannot be exported: neither GPT-2 nor Llama normalizes queries and keys")
    if cfg.activation == "relu2":
        raise SokhanError("activation relu2 (ReLU squared) cannot be exported: neither GPT-2 nor Llama has it")
    if cfg.positional == "sinusoidal":
        raise SokhanError("positional sinusoidal cannot be exported: GPT-2 learns its positions and Llama rotates "
                          "(RoPE); neither adds the paper's sinusoids")
    if cfg.positional == "rope":
        if cfg.norm != "rmsnorm" or cfg.activation != "swiglu":
            blocker = f"norm {cfg.norm}" if cfg.norm != "rmsnorm" else f"activation {cfg.activation}"
            raise SokhanError(f"positional rope with {blocker} cannot be exported: the transformers class with RoPE, "
                              f"Llama, has RMSNorm and SwiGLU (and GPT-2 has learned positions)")
        return LLAMA
    if cfg.norm != "layernorm" or cfg.activation == "swiglu":
        blocker = f"norm {cfg.norm}" if cfg.norm != "layernorm" else f"activation {cfg.activation}"
        raise SokhanError(f"positional {cfg.positional} with {blocker} cannot be exported: GPT-2 (learned "
                          f"positions) has LayerNorm and a GELU or ReLU feed-forward, and Llama has RoPE")
    return GPT2


def hf_config(cfg: ModelConfig, architecture: str, special: dict[str, Any]) -> dict[str, Any]:
    """config.json for transformers: the fields of `GPT2Config` / `LlamaConfig` (rope_theta is written both
    the old way and as transformers 5's `rope_parameters`)."""
    common = {"architectures": [architecture], "vocab_size": cfg.vocab_size, "tie_word_embeddings": cfg.tie_weights,
              "torch_dtype": "float32", "use_cache": True, "initializer_range": 0.02, **special}
    if architecture == GPT2:
        return {"model_type": "gpt2", **common, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.ffn_size,
                "activation_function": GPT2_ACTIVATIONS[cfg.activation], "layer_norm_epsilon": cfg.norm_eps,
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attention_dropout,
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}
    return {"model_type": "llama", **common, "hidden_size": cfg.n_embd, "intermediate_size": cfg.ffn_size,
            "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head,
            "head_dim": cfg.head_size, "hidden_act": "silu", "max_position_embeddings": cfg.block_size,
            "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_base, "rope_scaling": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
            "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": cfg.attention_dropout,
            "pretraining_tp": 1}


def hf_tensors(model: torch.nn.Module, architecture: str, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """transformers' tensors from sokhan's, through the layout table; what sokhan lacks (a bias-free model's
    biases in GPT-2, learned positions of a model with none) is zeros of the shape transformers expects."""
    ours = model.state_dict()
    shapes = hf_shapes(architecture, config)
    out: dict[str, torch.Tensor] = {}
    for part in parts_for(architecture, model.config.n_layer, model.config.tie_weights):
        wanted = [name for name in part.theirs if name in shapes]
        if not wanted:
            continue  # a Llama bias of a bias-free model: transformers has none either
        tensor = ours.get(part.ours)
        pieces = tensor.chunk(len(part.theirs)) if tensor is not None else [None] * len(part.theirs)
        for name, piece in zip(part.theirs, pieces):
            if piece is None:
                out[name] = torch.zeros(shapes[name])
            else:
                out[name] = (piece.T if part.transposed else piece).detach().float().contiguous().clone()
            if tuple(out[name].shape) != shapes[name]:  # a layout bug, not a user's mistake
                raise AssertionError(f"{name}: {tuple(out[name].shape)} is not {shapes[name]}")
    return out


def export_hf(model_path: str | Path, out: str | Path) -> Exported:
    """Write `model_path`'s model as a transformers folder `out` (see the module docstring)."""
    folder = resolve_model_dir(model_path)
    saved = read_config(folder)
    if "classifier" in saved:  # transformers would read it as a language model: its head and labels would be lost
        raise SokhanError(f"{folder} is a classifier; export writes language models (GPT-2, Llama, BERT's masked LM), "
                          f"which would lose its head and labels: export its pretrained base instead")
    cfg = ModelConfig.from_dict(saved["model"], f"{folder / CONFIG} [model]")
    architecture = hf_architecture(cfg)  # refuse before reading any weight
    out = Path(out)
    check_new_folder(out)
    lm = TrainedModel.load(folder, device="cpu")
    if "lora" in saved:
        merge_lora(lm.model)
    tok = lm.tokenizer
    chat = saved.get("chat_template") == TEMPLATE_NAME
    end_id = tok.token_id("<|end|>")
    special = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    config = hf_config(cfg, architecture, special)
    generation = {**special, "eos_token_id": [tok.eos_id, end_id] if chat else tok.eos_id}
    files: dict[str, bytes | str] = {
        "config.json": json.dumps(config, indent=2),
        "model.safetensors": save_safetensors(hf_tensors(lm.model, architecture, config), metadata={"format": "pt"}),
        "generation_config.json": json.dumps(generation, indent=2),
        **export_tokenizer_files(tok, cfg.block_size, chat),
        "README.md": model_card(architecture, folder, lm.config, chat),
    }
    save_folder(out, files)
    return Exported(out, architecture, chat)


def model_card(architecture: str, source: Path, saved: dict[str, Any], chat: bool) -> str:
    """What a transformers user must know: where it came from and that text is normalized before tokenizing."""
    normalizer = saved.get("normalizer", {})
    lines = [f"# A sokhan model exported as `{architecture}`", "",
             f"Exported by `sokhan export` from `{source}`.", "",
             "sokhan normalizes Persian text before its tokenizer (Arabic letter variants, digits, ZWNJ, spaces: "
             f"`sokhan.text.normalize.PersianNormalizer` with {json.dumps(normalizer, ensure_ascii=False)}); the "
             "tokenizer here does not, so give it normalized text for the ids the model was trained on.",
             "`tokenizer(text)` puts `<|bos|>` first, as every training document began."]
    if architecture == LLAMA and saved["model"].get("bias"):
        lines.append("This Llama has biases in its feed-forward layers: it needs transformers 4.41 or later "
                     "(`mlp_bias`).")
    if chat:
        lines.append("The chat template is sokhan's: `<|bos|>` then `<|role|>` content `<|end|>` per message; a "
                     "reply ends with `<|end|>` (generation_config.json stops there). Message text that spells a "
                     "special token (`<|user|>`) is encoded as that token here, and as plain text by sokhan.")
    return "\n".join(lines) + "\n"


def check_new_folder(out: Path) -> None:
    """The folder to write must be new (or empty): writing replaces it as a whole."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SokhanError(f"{out} exists and is not an empty folder; choose a new one")
