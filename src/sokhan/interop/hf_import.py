"""`sokhan import HF_DIR OUT`: a local transformers GPT-2 or Llama checkpoint as a sokhan model folder.

The folder written (model.safetensors, config.json, tokenizer.json) is what training writes, so
`LanguageModel.load(OUT)`, `sokhan sample OUT` and `sokhan finetune --base OUT` take it. Its logits
equal the checkpoint's on the checkpoint's token ids (the tests compare them to 1e-4).

Everything is checked before a weight is read, each mistake one line:

* config.json: `model_type` gpt2 or llama, every option sokhan's model can compute (GPT-2's
  GELU variants or ReLU, Llama's SiLU gate and plain RoPE, no sliding window, …). A Llama with
  grouped-query attention (fewer key/value heads) is imported exactly by repeating each key/value
  head for the query heads that share it, as transformers' `repeat_kv` does.
* weights: safetensors only, `model.safetensors` or shards listed by `model.safetensors.index.json`.
  Pickled weights (`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt`) are refused unread: loading a
  pickle runs whatever code it holds. Every tensor's name, shape and dtype is compared with what
  the config implies; half-precision weights become float32, as sokhan builds its models.
* tokenizer.json: required (sokhan's tokenizers are `tokenizers` files). The checkpoint's special
  tokens take sokhan's names and the missing ones are added (`hf_tokenizer`); the embedding (and
  an untied output layer) grow by a row per new token: a copy for `<|bos|>` when it stands for
  GPT-2's `<|endoftext|>`, the mean of the trained rows otherwise.

The imported model's normalizer only does what cannot change a checkpoint's reading of ordinary
text much: NFC, Arabic letter variants, spaces. Digits are kept as they are, diacritics kept, no
affixes joined (`IMPORT_NORMALIZER`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from sokhan.config import ModelConfig, NormalizerConfig
from sokhan.errors import SokhanError
from sokhan.interop.hf_export import check_new_folder
from sokhan.interop.hf_layout import GPT2, GPT2_PREFIX, MODEL_TYPES, hf_shapes, parts_for
from sokhan.interop.hf_tokenizer import ImportedTokenizer, import_tokenizer
from sokhan.models import build_model
from sokhan.models.checkpoint import CONFIG, TOKENIZER, WEIGHTS, save_folder, weights_bytes

INDEX = "model.safetensors.index.json"
PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
FLOATS = {"F16", "BF16", "F32", "F64"}
IMPORT_NORMALIZER = NormalizerConfig(digits="keep", remove_diacritics=False, join_affixes=False)
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                    "relu": "relu"}
# Tensors that old checkpoints hold and that are not weights: GPT-2's causal-mask buffers, Llama's RoPE table.
NOT_WEIGHTS = re.compile(r"(\.attn\.(masked_)?bias|rotary_emb\.inv_freq)$")


@dataclass(frozen=True)
class Imported:
    folder: Path
    architecture: str
    config: ModelConfig
    renamed: dict[str, str]
    added: dict[str, int]


def import_hf(hf_dir: str | Path, out: str | Path) -> Imported:
    """Convert the checkpoint in `hf_dir` into the sokhan model folder `out` (see the module docstring)."""
    hf_dir, out = Path(hf_dir), Path(out)
    if not hf_dir.is_dir():
        raise SokhanError(f"no such folder: {hf_dir}")
    check_new_folder(out)
    config = read_hf_config(hf_dir)
    architecture = architecture_of(config, hf_dir)
    try:
        cfg = gpt2_config(config) if architecture == GPT2 else llama_config(config)
    except SokhanError as e:  # sokhan's own checks (ceilings, divisibility): say which file
        raise SokhanError(f"{hf_dir / 'config.json'}: {e}") from None
    files = weight_files(hf_dir)
    shapes = hf_shapes(architecture, config)
    check_tensors(files, shapes, architecture, hf_dir, tied=cfg.tie_weights)
    tok = import_tokenizer(hf_dir, config)
    highest = max(tok.tokenizer.hf.get_vocab(with_added_tokens=True).values())
    known = max((t for name, t in tok.tokenizer.hf.get_vocab(with_added_tokens=True).items()
                 if name not in tok.added), default=-1)  # the checkpoint's own highest id
    if known < 0:
        raise SokhanError(f"{hf_dir / TOKENIZER} has no tokens")
    if known >= cfg.vocab_size:
        raise SokhanError(f"{hf_dir / TOKENIZER} has ids up to {known}, but the model's vocabulary has "
                          f"{cfg.vocab_size} rows: the tokenizer belongs to another model")
    cfg = dataclasses.replace(cfg, vocab_size=max(cfg.vocab_size, highest + 1))
    tensors = read_tensors(files, shapes, architecture)
    if architecture != GPT2:
        repeat_kv_heads(tensors, config)
    model = build_model(cfg)
    state = sokhan_state(tensors, architecture, cfg, {k: v.shape for k, v in model.state_dict().items()})
    grow_rows(state, cfg, tok, trained_rows=known + 1)
    model.load_state_dict(state, strict=True)
    saved = {"format": 1, "model": cfg.to_dict(), "normalizer": IMPORT_NORMALIZER.to_dict(),
             "imported": {"from": str(hf_dir.resolve()), "architecture": architecture,
                          "renamed_tokens": tok.renamed, "added_tokens": tok.added}}
    save_folder(out, {WEIGHTS: weights_bytes(model), CONFIG: json.dumps(saved, indent=2, ensure_ascii=False),
                      TOKENIZER: tok.tokenizer.hf.to_str()})
    return Imported(out, architecture, cfg, tok.renamed, tok.added)


def read_hf_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SokhanError(f"{hf_dir} has no config.json: it is not a transformers checkpoint folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SokhanError(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict):
        raise SokhanError(f"{path} is not a JSON object")
    return config


def architecture_of(config: dict[str, Any], hf_dir: Path) -> str:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        named = config.get("architectures")
        named = ", ".join(map(str, named)) if isinstance(named, list) and named else json.dumps(model_type)
        raise SokhanError(f"{hf_dir / 'config.json'} describes a {named} model; sokhan imports the gpt2 and llama "
                          f"architectures only")
    return MODEL_TYPES[model_type]


def _int(config: dict[str, Any], key: str, default: Any = None) -> int:
    value = config.get(key)
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SokhanError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _number(config: dict[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    value = default if value is None else value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise SokhanError(f"config.json: {key} must be a positive number, got {value!r}")
    return float(value)


def _dropout(config: dict[str, Any], key: str) -> float:
    value = config.get(key) or 0.0
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else 0.0


def _refuse_unless(config: dict[str, Any], key: str, allowed: tuple[Any, ...], why: str) -> None:
    if config.get(key, allowed[0]) not in allowed:
        raise SokhanError(f"config.json: {key} = {json.dumps(config[key])} cannot be imported: {why}")


def gpt2_config(c: dict[str, Any]) -> ModelConfig:
    """sokhan's ModelConfig for a GPT2Config: learned positions, LayerNorm, pre-norm, biases."""
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        _int(c, key)
    if c.get("n_inner") is not None:
        _int(c, "n_inner")
    act = c.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in GPT2_ACTIVATIONS:
        raise SokhanError(f"config.json: activation_function {act!r} cannot be imported; sokhan has "
                          f"{', '.join(GPT2_ACTIVATIONS)}")
    _refuse_unless(c, "scale_attn_weights", (True,), "sokhan always divides attention scores by √head_size")
    _refuse_unless(c, "scale_attn_by_inverse_layer_idx", (False,), "sokhan does not scale attention by layer")
    _refuse_unless(c, "add_cross_attention", (False,), "a GPT-2 with cross-attention is an encoder–decoder part")
    tied = c.get("tie_word_embeddings", True)
    return ModelConfig.create(
        preset=None, family="gpt", vocab_size=c["vocab_size"], block_size=c["n_positions"], n_layer=c["n_layer"],
        n_head=c["n_head"], n_embd=c["n_embd"], ffn_hidden=c.get("n_inner") or 4 * c["n_embd"],
        dropout=_dropout(c, "resid_pdrop"), attention_dropout=_dropout(c, "attn_pdrop"), positional="learned",
        norm="layernorm", prenorm=True, activation=GPT2_ACTIVATIONS[act], tie_weights=bool(tied), bias=True,
        norm_eps=_number(c, "layer_norm_epsilon", 1e-5))


def llama_config(c: dict[str, Any]) -> ModelConfig:
    """sokhan's ModelConfig for a LlamaConfig: RoPE, RMSNorm, SwiGLU, pre-norm."""
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        _int(c, key)
    heads = c["num_attention_heads"]
    kv = _int(c, "num_key_value_heads", heads)
    if heads % kv:
        raise SokhanError(f"config.json: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    head_dim = _int(c, "head_dim", c["hidden_size"] // heads)
    if head_dim * heads != c["hidden_size"]:
        raise SokhanError(f"config.json: head_dim {head_dim} × num_attention_heads {heads} is not hidden_size "
                          f"{c['hidden_size']}, as sokhan's attention needs")
    _refuse_unless(c, "hidden_act", ("silu", "swish"), "sokhan's gated feed-forward is SwiGLU (SiLU)")
    _refuse_unless(c, "pretraining_tp", (1, None), "use a checkpoint saved with pretraining_tp 1")
    for key in ("rope_scaling", "rope_parameters"):  # transformers 4 and 5 name RoPE's settings differently
        rope = c.get(key) or {}
        kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else rope
        if kind != "default":
            raise SokhanError(f"config.json: {key} {json.dumps(rope)} cannot be imported: sokhan's RoPE is the plain "
                              f"one (rope_type default), without scaling")
    rope = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
    if rope.get("partial_rotary_factor", 1.0) != 1.0 or c.get("partial_rotary_factor", 1.0) != 1.0:
        raise SokhanError("config.json: partial_rotary_factor cannot be imported: sokhan rotates whole heads")
    theta = _number(rope, "rope_theta", _number(c, "rope_theta", 10000.0))
    return ModelConfig.create(
        preset=None, family="gpt", vocab_size=c["vocab_size"], block_size=_int(c, "max_position_embeddings", 2048),
        n_layer=c["num_hidden_layers"], n_head=heads, n_embd=c["hidden_size"], ffn_hidden=c["intermediate_size"],
        attention_dropout=_dropout(c, "attention_dropout"), positional="rope", norm="rmsnorm", prenorm=True,
        activation="swiglu", tie_weights=bool(c.get("tie_word_embeddings", False)),
        bias=bool(c.get("attention_bias", False) or c.get("mlp_bias", False)),
        norm_eps=_number(c, "rms_norm_eps", 1e-6), rope_base=theta)


def weight_files(hf_dir: Path) -> dict[str, Path]:
    """Which safetensors file holds each tensor; pickles refused unread."""
    single, index = hf_dir / "model.safetensors", hf_dir / INDEX
    if single.is_file():
        return dict.fromkeys(_names(single), single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            weight_map = None
        if not isinstance(weight_map, dict):
            raise SokhanError(f"cannot read {index}: it needs a weight_map object of tensor → file")
        files: dict[str, Path] = {}
        for shard in sorted(set(map(str, weight_map.values()))):
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise SokhanError(f"{index} names {shard!r}; a shard must be a .safetensors file beside it")
            if not (hf_dir / shard).is_file():
                raise SokhanError(f"{index} names {shard}, which is missing from {hf_dir}")
            names = _names(hf_dir / shard)
            for name, where in weight_map.items():
                if where == shard and name not in names:
                    raise SokhanError(f"{index} places {name} in {shard}, which does not hold it")
            files.update(dict.fromkeys(names, hf_dir / shard))
        return files
    pickles = sorted(p.name for pattern in PICKLES for p in hf_dir.glob(pattern))
    if pickles:
        raise SokhanError(f"{hf_dir} holds pickled weights ({', '.join(pickles[:3])}), which sokhan never loads: "
                          f"loading a pickle runs the code in it; convert them to safetensors where you trust them "
                          f"(transformers: save_pretrained(..., safe_serialization=True))")
    raise SokhanError(f"{hf_dir} has no model.safetensors nor {INDEX}")


def _names(path: Path) -> set[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except (OSError, SafetensorError) as e:
        raise SokhanError(f"cannot read weights {path}: {e}") from None


def _their_name(name: str, architecture: str) -> str:
    """A 2019 GPT-2 checkpoint names its tensors without GPT2LMHeadModel's `transformer.` prefix."""
    if architecture == GPT2 and not name.startswith((GPT2_PREFIX, "lm_head.")):
        return GPT2_PREFIX + name
    return name


def check_tensors(files: dict[str, Path], shapes: dict[str, tuple[int, ...]], architecture: str, hf_dir: Path,
                  tied: bool) -> None:
    """Every tensor the config implies is there, with its shape and a float dtype; nothing else is (but the
    buffers `NOT_WEIGHTS` and a tied output layer's copy, which are skipped)."""
    by_name = {_their_name(name, architecture): name for name in files}
    skipped = {n for n in by_name if NOT_WEIGHTS.search(n) or (tied and n == "lm_head.weight")}
    missing = sorted(set(shapes) - set(by_name))
    extra = sorted(set(by_name) - set(shapes) - skipped)
    if missing or extra:
        raise SokhanError(f"the weights in {hf_dir} do not fit its config.json (missing {missing[:3]}, unexpected "
                          f"{extra[:3]})")
    for path, stored_names in _by_file(files, by_name, shapes).items():
        with safe_open(str(path), framework="pt") as f:
            for name, stored in stored_names:
                piece = f.get_slice(stored)
                shape, dtype = tuple(piece.get_shape()), piece.get_dtype()
                if shape != shapes[name] or dtype not in FLOATS:
                    raise SokhanError(f"the weights in {hf_dir} do not fit its config.json: {stored} is {list(shape)} "
                                      f"{dtype}, the config implies {list(shapes[name])} in a float type")


def read_tensors(files: dict[str, Path], shapes: dict[str, tuple[int, ...]], architecture: str,
                 ) -> dict[str, torch.Tensor]:
    """The tensors `shapes` names (checked already), as float32, under transformers' current names."""
    by_name = {_their_name(name, architecture): name for name in files}
    out = {}
    for path, stored_names in _by_file(files, by_name, shapes).items():
        with safe_open(str(path), framework="pt") as f:
            for name, stored in stored_names:
                out[name] = f.get_tensor(stored).float()
    return out


def _by_file(files: dict[str, Path], by_name: dict[str, str], shapes: dict[str, tuple[int, ...]],
             ) -> dict[Path, list[tuple[str, str]]]:
    """(current name, name in the file) of every tensor `shapes` names, grouped by the file that holds it:
    each file is opened once."""
    grouped: dict[Path, list[tuple[str, str]]] = {}
    for name in shapes:
        grouped.setdefault(files[by_name[name]], []).append((name, by_name[name]))
    return grouped


def repeat_kv_heads(tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Grouped-query attention as plain multi-head: query head h reads key/value head h // (heads / kv_heads),
    so each key/value head's rows are repeated for its group (exact: the same numbers in each query's dot product)."""
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    if kv == heads:
        return
    for name in [n for n in tensors if n.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias"))]:
        t = tensors[name]
        grouped = t.reshape(kv, t.shape[0] // kv, *t.shape[1:])
        tensors[name] = grouped.repeat_interleave(heads // kv, dim=0).reshape(-1, *t.shape[1:])


def sokhan_state(tensors: dict[str, torch.Tensor], architecture: str, cfg: ModelConfig,
                 shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """sokhan's state dict from transformers' tensors, through the layout table; a bias transformers lacks
    (a Llama with mlp_bias but no attention_bias) is zeros, a tied output layer the embedding."""
    state = {}
    for part in parts_for(architecture, cfg.n_layer, cfg.tie_weights):
        if part.ours not in shapes:
            continue
        pieces = [tensors[n] for n in part.theirs if n in tensors]
        if not pieces:
            state[part.ours] = torch.zeros(shapes[part.ours])
            continue
        state[part.ours] = torch.cat([p.T if part.transposed else p for p in pieces]).contiguous()
    if cfg.tie_weights:
        state["lm_head.weight"] = state["embed.weight"]
    return state


def grow_rows(state: dict[str, torch.Tensor], cfg: ModelConfig, tok: ImportedTokenizer, trained_rows: int) -> None:
    """Rows for the tokens the import added, `cfg.vocab_size` rows in all. A row copies another where
    `tok.copies` says so, and is the mean of the rows of the checkpoint's own tokens (`trained_rows`: the
    rows past them pad a vocabulary and were never trained) otherwise: a new token then scores as an
    average token, neither likely nor impossible, until fine-tuning teaches it."""
    names = ["embed.weight"] if cfg.tie_weights else ["embed.weight", "lm_head.weight"]
    for name in names:
        old = state[name]
        mean = old[:trained_rows].mean(0)
        grown = torch.cat([old, mean.expand(cfg.vocab_size - old.shape[0], -1)]).clone()
        for idx in tok.added.values():
            grown[idx] = mean  # also where a new id falls on a padding row of the checkpoint
        for new, source in tok.copies.items():
            grown[new] = old[source]
        state[name] = grown
    if cfg.tie_weights:
        state["lm_head.weight"] = state["embed.weight"]
