"""Hugging Face interop against transformers itself (as litgpt's `test_against_hf_*`): tiny random models,
no network, no GPU.

Export: a sokhan model → `sokhan export` → transformers' Auto classes load it as GPT-2 or Llama → the
same logits (1e-4), the same greedy tokens, the same token ids, the same chat-template ids.
Import: a random transformers GPT2LMHeadModel / LlamaForCausalLM saved as safetensors (Llama sharded,
with grouped-query attention) → `sokhan import` → the same logits, ids and greedy tokens.
Every refusal is one `error:` line from the command line, exit status 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers  # the [test] extra: the other side of every comparison; the product never imports it
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from helpers import one_line_error
from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import ModelConfig, NormalizerConfig, SampleConfig
from sokhan.infer.sampling import generate_ids
from sokhan.models import build_model
from sokhan.models.checkpoint import CONFIG, TOKENIZER, WEIGHTS, save_folder, weights_bytes
from sokhan.models.lora import apply_lora
from sokhan.text.chat_template import TEMPLATE_NAME
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import BYTE_TOKENS, train_bpe, train_char

NORMALIZE = PersianNormalizer(NormalizerConfig())
RAW_TEXTS = ["الا یا ایها الساقی ادر کأسا و ناولها", "که عشق آسان نمود اول ولی افتاد مشکل‌ها",
             "Transformers learn from data.", "من کتاب‌ها را دوست دارم؛ I love books (۱۲ تا).",
             "دل می‌رود ز دستم صاحب‌دلان خدا را"]
TEXTS = [NORMALIZE(t) for t in RAW_TEXTS]  # what sokhan's tokenizer sees: normalized text
CORPUS = TEXTS * 20 + ["The cat sat on the mat. Hello world, hello books.", "سلام دنیا، گربه روی فرش نشست."] * 20
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=64)
GREEDY = SampleConfig(temperature=0, max_new_tokens=12)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(CORPUS, vocab_size=330)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights far from their initialisation (norm gains and biases too), so a misplaced tensor shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if "norm" in name and name.endswith("weight") else 0.3 * noise)


def sokhan_folder(folder: Path, tokenizer, chat: bool = False, lora: bool = False, **values) -> Path:
    """A model folder as training writes one: weights, config.json, tokenizer.json."""
    cfg = ModelConfig.create(preset=None, vocab_size=tokenizer.vocab_size, **{**TINY, **values})
    model = build_model(cfg)
    if cfg.family in ("gpt", "bert"):
        randomize(model)
    config = {"format": 1, "model": cfg.to_dict(), "normalizer": NormalizerConfig().to_dict()}
    if chat:
        config["chat_template"] = TEMPLATE_NAME
    if lora:
        apply_lora(model, ["qkv", "down"], rank=2, alpha=4)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_b" in name:
                    p.normal_(0, 0.3)  # B starts at zero: make the adapters change something
        config["lora"] = {"targets": ["qkv", "down"], "rank": 2, "alpha": 4}
    save_folder(folder, {WEIGHTS: weights_bytes(model), CONFIG: json.dumps(config), TOKENIZER: tokenizer.hf.to_str()})
    return folder



def greedy_hf(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         do_sample=False, max_new_tokens=n)
    return out[0, len(prompt):].tolist()


def ids_of(encoded) -> list[int]:
    """apply_chat_template's ids: a list (transformers 4) or a BatchEncoding (5)."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


# --- export: sokhan → transformers ---------------------------------------------------------------------------

EXPORTS = {
    "gpt2-gelu-tied": ("GPT2LMHeadModel", dict(activation="gelu")),
    "gpt2-gelu_tanh-untied-biasfree": ("GPT2LMHeadModel", dict(activation="gelu_tanh", tie_weights=False, bias=False)),
    "gpt2-relu-no-positions": ("GPT2LMHeadModel", dict(activation="relu", positional="none", norm_eps=1e-6)),
    "llama-tied-bias": ("LlamaForCausalLM", dict(positional="rope", norm="rmsnorm", activation="swiglu")),
    "llama-untied-biasfree": ("LlamaForCausalLM", dict(positional="rope", norm="rmsnorm", activation="swiglu",
                                                       bias=False, tie_weights=False, rope_base=500.0, n_head=4)),
}


@pytest.mark.parametrize("name", EXPORTS)
def test_against_hf_export_logits_and_greedy_tokens(name, tokenizer, tmp_path):
    architecture, values = EXPORTS[name]
    folder = sokhan_folder(tmp_path / "model", tokenizer, **values)
    assert main(["export", str(folder), str(tmp_path / "hf"), "--format", "hf"]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == architecture
    tied = values.get("tie_weights", True)
    assert hf.config.tie_word_embeddings == tied
    same_tensor = hf.get_output_embeddings().weight.data_ptr() == hf.get_input_embeddings().weight.data_ptr()
    assert same_tensor == tied
    lm = LanguageModel.load(folder, device="cpu")
    ids = torch.randint(0, tokenizer.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = lm.model(ids).logits, hf(ids).logits
    assert ours.std() > 0.5  # logits spread well beyond the tolerance: the comparison means something
    torch.testing.assert_close(theirs, ours, atol=TOLERANCE, rtol=0)
    prompt = lm.encode_prompt(TEXTS[0])
    mine = list(generate_ids(lm.model, prompt, GREEDY, {lm.tokenizer.eos_id}))
    assert len(mine) >= 5 and greedy_hf(hf, prompt, GREEDY.max_new_tokens) == mine


def test_export_merges_a_lora_checkpoint(tokenizer, tmp_path):
    folder = sokhan_folder(tmp_path / "model", tokenizer, lora=True)
    assert main(["export", str(folder), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    lm = LanguageModel.load(folder, device="cpu")  # base weights + unmerged adapters
    ids = torch.tensor([lm.encode_prompt(TEXTS[1])])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, lm.model(ids).logits, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_exported_tokenizer_and_chat_template_give_sokhans_ids(kind, tokenizer, tmp_path):
    tokenizer = tokenizer if kind == "bpe" else train_char(CORPUS)
    folder = sokhan_folder(tmp_path / "chat", tokenizer, chat=True, block_size=512)  # room for the whole chat
    assert main(["export", str(folder), str(tmp_path / "hf")]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    lm = LanguageModel.load(folder, device="cpu")
    for text in TEXTS:
        ids = lm.tokenizer.encode(text)
        assert hf_tok.encode(text, add_special_tokens=False) == ids
        assert hf_tok(text)["input_ids"] == lm.encode_prompt(text)  # <|bos|> first, as sokhan prompts begin
        assert hf_tok.decode(ids) == lm.tokenizer.decode(ids) == text
    messages = [{"role": "system", "content": TEXTS[3]}, {"role": "user", "content": TEXTS[0]},
                {"role": "assistant", "content": TEXTS[1]}, {"role": "user", "content": TEXTS[2]}]
    theirs = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    assert ids_of(theirs) == lm.chat_prompt(messages, max_new_tokens=8)
    assert hf_tok.apply_chat_template(messages[1:2], tokenize=False) == "<|bos|><|user|>" + TEXTS[0] + "<|end|>"
    with pytest.raises(Exception, match="unknown role"):
        hf_tok.apply_chat_template([{"role": "robot", "content": "hi"}], tokenize=False)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [lm.tokenizer.eos_id, lm.tokenizer.token_id("<|end|>")]  # a reply ends
    plain = sokhan_folder(tmp_path / "plain", tokenizer)
    assert main(["export", str(plain), str(tmp_path / "hf-plain")]) == 0
    assert "chat_template" not in json.loads((tmp_path / "hf-plain" / "tokenizer_config.json").read_text())


REFUSED = {
    "bert": (dict(family="bert"), "family bert", "BertForMaskedLM"),
    "sinusoidal": (dict(positional="sinusoidal"), "positional sinusoidal"),
    "post-norm": (dict(prenorm=False), "prenorm off"),
    "scaled-embeddings": (dict(scale_embeddings=True), "scale_embeddings"),
    "rope-layernorm": (dict(positional="rope", activation="swiglu"), "positional rope with norm layernorm"),
    "rope-gelu": (dict(positional="rope", norm="rmsnorm"), "positional rope with activation gelu"),
    "learned-rmsnorm": (dict(norm="rmsnorm"), "positional learned with norm rmsnorm"),
    "learned-swiglu": (dict(activation="swiglu"), "positional learned with activation swiglu"),
    "lstm": (dict(family="lstm", n_layer=1), "family lstm"),
    "ngram": (dict(family="ngram", order=3), "family ngram"),
    "seq2seq": (dict(family="seq2seq"), "family seq2seq"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_export_refuses_what_no_transformers_class_computes(name, tokenizer, tmp_path, capsys):
    values, *fragments = REFUSED[name]
    folder = sokhan_folder(tmp_path / "model", tokenizer, **values)
    one_line_error(capsys, main(["export", str(folder), str(tmp_path / "hf")]), *fragments)
    assert not (tmp_path / "hf").exists()


def test_export_refuses_a_folder_in_use_and_a_missing_model(tokenizer, tmp_path, capsys):
    folder = sokhan_folder(tmp_path / "model", tokenizer)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    one_line_error(capsys, main(["export", str(folder), str(tmp_path / "busy")]), "not an empty folder")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    one_line_error(capsys, main(["export", str(tmp_path / "nope"), str(tmp_path / "hf")]), "nope")
    one_line_error(capsys, main(["export", str(folder), str(tmp_path / "hf"), "--format", "onnx"]), "onnx")


# --- import: transformers → sokhan ---------------------------------------------------------------------------

def gpt2_tokenizer():
    """GPT-2's kind, made small with the `tokenizers` library: byte-level BPE, one <|endoftext|> for both ends."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    end = "<|endoftext|>"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=end, eos_token=end)


def llama_tokenizer():
    """Llama's kind (SentencePiece as transformers converts it): '▁' for spaces, BPE with <0xNN> byte fallback
    for characters it never saw (Persian ones here: it learns from English only), <s> put first."""
    tok = HFTokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    english = [t for t in CORPUS if t.isascii()]
    tok.train_from_iterator(english, trainers.BpeTrainer(
        vocab_size=330, show_progress=False, special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


def randomize_hf(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if ("norm" in name or "ln_" in name) and name.endswith("weight") else 0.3 * noise)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-gpt2")
    tok = gpt2_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     activation_function="gelu_new", bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    randomize_hf(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-llama")
    tok = llama_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok) + 6, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, attention_bias=True, mlp_bias=False,
        tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    randomize_hf(model)
    with torch.no_grad():  # rows padding the vocabulary past the tokenizer, never trained: sokhan's new tokens go there
        model.get_output_embeddings().weight[len(tok):] = 0
        model.get_input_embeddings().weight[len(tok):] = 0
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="40KB")
    tok.save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").is_file()  # sharded, as large checkpoints are
    return folder


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_against_hf_import_logits_ids_and_greedy_tokens(arch, gpt2_dir, llama_dir, tmp_path):
    source = gpt2_dir if arch == "gpt2" else llama_dir
    hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(source)
    assert main(["import", str(source), str(tmp_path / "model")]) == 0
    lm = LanguageModel.load(tmp_path / "model", device="cpu")
    known = len(hf_tok)  # the Llama's vocabulary is padded past its tokenizer: sokhan's new tokens take those rows
    ids = torch.randint(0, known, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = lm.model(ids).logits, hf(ids).logits
    assert ours.std() > 0.5
    torch.testing.assert_close(ours[..., :known], theirs[..., :known], atol=TOLERANCE, rtol=0)
    for text in TEXTS + ["A plain English sentence, with 123 digits!"]:
        assert lm.tokenizer.encode(text) == hf_tok.encode(text, add_special_tokens=False), text
    # The checkpoint's end token is sokhan's <|eos|> (same id); greedy decoding stops there in both.
    assert lm.tokenizer.eos_id == hf_tok.eos_token_id
    text_ids = hf_tok.encode(TEXTS[2], add_special_tokens=False)
    prompt = [hf_tok.bos_token_id] + text_ids
    mine = list(generate_ids(lm.model, [lm.tokenizer.bos_id] + text_ids, GREEDY, {lm.tokenizer.eos_id}))
    assert len(mine) >= 5 and mine == greedy_hf(hf, prompt, GREEDY.max_new_tokens)
    saved = json.loads((tmp_path / "model" / CONFIG).read_text())["imported"]
    if arch == "gpt2":  # one <|endoftext|> for both ends: it becomes <|eos|>, and the new <|bos|> reads as it did
        assert saved["renamed_tokens"] == {"<|endoftext|>": "<|eos|>"}
        embed = lm.model.embed.weight
        assert torch.equal(embed[lm.tokenizer.bos_id], embed[lm.tokenizer.eos_id])
    else:
        assert saved["renamed_tokens"] == {"<s>": "<|bos|>", "</s>": "<|eos|>"}
        assert lm.tokenizer.bos_id == hf_tok.bos_token_id
        assert lm.tokenizer.encode_plain("<s>") != [hf_tok.bos_token_id]  # the old name is plain text now
    assert main(["sample", str(tmp_path / "model"), "--prompt", "hello", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0


def test_import_then_export_round_trips_to_the_same_logits(gpt2_dir, tmp_path):
    assert main(["import", str(gpt2_dir), str(tmp_path / "model")]) == 0
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "back")]) == 0
    before = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    after = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = torch.randint(0, before.config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(after(ids).logits[..., :before.config.vocab_size], before(ids).logits,
                                   atol=TOLERANCE, rtol=0)


def test_import_reads_half_precision_and_the_2019_gpt2_names(gpt2_dir, tmp_path):
    """openai-community/gpt2's own file names its tensors without `transformer.` and keeps the causal-mask
    buffers beside them; many checkpoints are float16. Both import, as float32."""
    old = edited_copy(gpt2_dir, tmp_path / "old")
    tensors = {name.removeprefix("transformer."): t.half() for name, t in load_file(old / "model.safetensors").items()}
    tensors.update({f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, 64, 64)) for i in range(2)})
    save_file(tensors, old / "model.safetensors", metadata={"format": "pt"})
    assert main(["import", str(old), str(tmp_path / "model")]) == 0
    lm = LanguageModel.load(tmp_path / "model", device="cpu")
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    rounded = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).half().float().eval()  # the same numbers
    ids = torch.randint(0, rounded.config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits[..., :rounded.config.vocab_size], rounded(ids).logits,
                                   atol=TOLERANCE, rtol=0)


def edited_copy(source: Path, folder: Path, config: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(source, folder)
    for name in drop:
        (folder / name).unlink()
    if config is not None:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


def test_import_refusals_are_one_line(gpt2_dir, llama_dir, tmp_path, capsys):
    out = str(tmp_path / "out")

    def refused(folder: Path, *fragments: str) -> None:
        one_line_error(capsys, main(["import", str(folder), out]), *fragments)
        assert not (tmp_path / "out").exists()

    refused(tmp_path / "nowhere", "no such folder")
    refused(edited_copy(gpt2_dir, tmp_path / "bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]}),
            "BertForMaskedLM", "gpt2 and llama")
    pickled = edited_copy(gpt2_dir, tmp_path / "pickle", drop=("model.safetensors",))
    (pickled / "pytorch_model.bin").write_bytes(b"not even read")
    refused(pickled, "pytorch_model.bin", "pickle")
    refused(edited_copy(gpt2_dir, tmp_path / "no-tok", drop=("tokenizer.json",)), "no tokenizer.json")
    refused(edited_copy(gpt2_dir, tmp_path / "no-config", drop=("config.json",)), "no config.json")
    refused(edited_copy(gpt2_dir, tmp_path / "wider", {"n_embd": 64}), "do not fit",
            "transformer.wte.weight is [300, 32]")
    refused(edited_copy(gpt2_dir, tmp_path / "deeper", {"n_layer": 3}), "missing", "transformer.h.2")
    refused(edited_copy(gpt2_dir, tmp_path / "swish", {"activation_function": "swish"}), "activation_function")
    refused(edited_copy(llama_dir, tmp_path / "scaled", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0,
                                                                             "rope_theta": 5e5}}), "llama3")
    refused(edited_copy(llama_dir, tmp_path / "gelu", {"hidden_act": "gelu"}), "hidden_act")
    lost = edited_copy(llama_dir, tmp_path / "lost-shard")
    next(lost.glob("model-00002-of-*.safetensors")).unlink()
    refused(lost, "missing from")
    bad = edited_copy(gpt2_dir, tmp_path / "bad-weights")
    (bad / "model.safetensors").write_bytes(b"\x00" * 16)
    refused(bad, "cannot read weights")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    one_line_error(capsys, main(["import", str(gpt2_dir), out]), "not an empty folder")
