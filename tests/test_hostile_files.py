"""Hostile files and arguments: whatever a model folder, a dataset, `latest`, argv or --out-dir holds, the user
gets one line (the command line: `error:` on stderr and exit status 2; the API: `SokhanError`), never a
traceback, an attempt to allocate petabytes, or garbage from a tokenizer that does not fit its model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import error_line
from sokhan.cli import main
from sokhan.config import FAMILIES, LoraConfig, ModelConfig, NormalizerConfig
from sokhan.data.shards import TokenData, load_meta
from sokhan.errors import SokhanError
from sokhan.models import build_model
from sokhan.models.checkpoint import resolve_model_dir
from sokhan.models.trained import TrainedModel
from sokhan.text.tokenizers import Tokenizer


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    """Run `sokhan argv` in this process; it must print exactly one `error:` line and return 2."""
    return error_line(main(argv), capsys.readouterr().err, *fragments)


@pytest.fixture
def model_dir(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model's checkpoint folder, free to spoil."""
    folder = tmp_path / "model"
    shutil.copytree(resolve_model_dir(tiny_run), folder, ignore=shutil.ignore_patterns("trainer_state.pt"))
    return folder


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def model_option(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c["model"].__setitem__(name, value)


def section(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c.__setitem__(name, value)


# --------------------------------------------------------------------------- config.json

@pytest.mark.parametrize("change, message", [
    (model_option("n_layer", "2"), r"config.json \[model\]: n_layer must be an integer, got '2'"),
    (model_option("n_layer", 2.5), r"config.json \[model\]: n_layer must be an integer, got 2.5"),
    (model_option("n_layer", None), r"config.json \[model\]: n_layer must be an integer"),
    (model_option("n_layer", 10**6), r"n_layer must be in \[1, 1024\], got 1000000"),
    (model_option("vocab_size", 10**12), r"vocab_size must be in \[1, 16777216\]"),
    (section("model", None), "'model' must be an object, got null"),
    (section("model", [2, 64]), "'model' must be an object, got a list"),
    (section("normalizer", "latin"), "'normalizer' must be an object, got the string 'latin'"),
    (section("normalizer", 5), "'normalizer' must be an object, got the number 5"),
    (section("normalizer", {"digits": 5}), r"config.json \[normalizer\]: digits must be a string, got 5"),
    (section("lora", {"targets": ["qkv"]}), r"config.json \[lora\] lacks rank, alpha"),
    (section("lora", {"targets": "qkv", "rank": 2, "alpha": 4}), "targets must be a list of strings"),
    (section("lora", None), "'lora' must be an object, got null"),
    (section("train", []), "'train' must be an object, got a list"),
    (section("data", {"splits": {"val": "gone"}}), "'data.splits.val' must be an object"),
], ids=["n_layer-string", "n_layer-fraction", "n_layer-null", "n_layer-million", "vocab-trillion", "model-null",
         "model-list", "normalizer-string", "normalizer-number", "normalizer-digits-number", "lora-incomplete",
         "lora-targets-string", "lora-null", "train-list", "data-split-string"])
def test_a_malformed_config_json_is_one_line(model_dir, change, message):
    edit_json(model_dir / "config.json", change)
    with pytest.raises(SokhanError, match=message):
        TrainedModel.load(model_dir, device="cpu")


def test_a_malformed_config_json_is_one_line_on_the_command_line(model_dir, capsys):
    edit_json(model_dir / "config.json", section("lora", {"targets": ["qkv"]}))
    one_line_error(capsys, ["sample", str(model_dir), "--max-new-tokens", "1"], "[lora] lacks rank, alpha")


# --------------------------------------------------------------------------- weights

def swap_tensor(name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        tensors = load_file(folder / "model.safetensors")
        tensors[name] = make(tensors[name]).contiguous()
        save_file(tensors, folder / "model.safetensors")
    return change


def resize_model(**values: int) -> Callable[[Path], None]:
    return lambda folder: edit_json(folder / "config.json", lambda c: c["model"].update(values))


@pytest.mark.parametrize("change, message", [
    (swap_tensor("embed.weight", lambda t: t[:, :16]), r"embed.weight is \[400, 16\] float32 in the file, \[400, 32\]"),
    (swap_tensor("blocks.0.attn.qkv.weight", lambda t: t.T), r"blocks.0.attn.qkv.weight is \[32, 96\]"),
    (swap_tensor("embed.weight", lambda t: t.half()), r"embed.weight is \[400, 32\] float16 in the file"),
    (swap_tensor("final_norm.weight", lambda t: t.long()), "final_norm.weight is \\[32\\] int64 in the file"),
    (resize_model(n_embd=64), r"embed.weight is \[400, 32\] float32 in the file, \[400, 64\] float32 in the model"),
    (resize_model(block_size=128), r"positions.weight is \[64, 32\] float32 in the file, \[128, 32\]"),
], ids=["narrower-embedding", "transposed-qkv", "float16", "int64", "config-wider", "config-longer-context"])
def test_weights_of_the_wrong_shape_or_dtype_are_one_line(model_dir, change, message):
    change(model_dir)
    with pytest.raises(SokhanError, match="do not fit this model: " + message):
        TrainedModel.load(model_dir, device="cpu")


# --------------------------------------------------------------------------- tokenizer against the model

def bigger_tokenizer(folder: Path) -> None:
    """The model's tokenizer and ten more tokens: ids 400–409, past the model's 400 rows."""
    tokenizer = Tokenizer.load(folder / "tokenizer.json")
    tokenizer.hf.add_tokens([f"واژه{i}" for i in range(10)])
    tokenizer.save(folder / "tokenizer.json")


def special_id_outside(folder: Path) -> None:
    """As many tokens as the model has rows, but <|mask|> moved to id 450."""
    def move(t: dict[str, Any]) -> None:
        t["model"]["vocab"]["<|mask|>"] = 450
        next(a for a in t["added_tokens"] if a["content"] == "<|mask|>")["id"] = 450
    edit_json(folder / "tokenizer.json", move)


@pytest.mark.parametrize("change, message", [
    (bigger_tokenizer, r"it has 410 tokens \(ids up to 409\), the model's vocabulary has 400 rows"),
    (special_id_outside, r"it has 400 tokens \(ids up to 450\), the model's vocabulary has 400 rows"),
    (resize_model(vocab_size=100), r"it has 400 tokens \(ids up to 399\), the model's vocabulary has 100 rows"),
], ids=["more-tokens", "special-id-outside", "config-smaller-vocab"])
def test_a_tokenizer_that_does_not_fit_the_model_is_refused_at_load(model_dir, capsys, change, message):
    change(model_dir)
    with pytest.raises(SokhanError, match="tokenizer.json does not belong to this model: " + message):
        TrainedModel.load(model_dir, device="cpu")
    one_line_error(capsys, ["sample", str(model_dir), "--prompt", "دل", "--max-new-tokens", "2"],
                   "does not belong to this model")


def test_a_tokenizer_smaller_than_the_model_is_fine(model_dir):
    """A vocabulary padded past the tokenizer (e.g. to a multiple of 64) is normal."""
    edit_json(model_dir / "config.json", model_option("vocab_size", 448))
    tensors = load_file(model_dir / "model.safetensors")
    tensors["embed.weight"] = torch.cat([tensors["embed.weight"], torch.zeros(48, 32)])
    save_file(tensors, model_dir / "model.safetensors")
    assert TrainedModel.load(model_dir, device="cpu").model.config.vocab_size == 448


# --------------------------------------------------------------------------- huge dimensions

@pytest.mark.parametrize("values, message", [
    (dict(n_layer=10**6), r"n_layer must be in \[1, 1024\]"),
    (dict(vocab_size=10**12), r"vocab_size must be in \[1, 16777216\]"),
    (dict(n_embd=10**9, n_head=1), r"n_embd must be in \[1, 65536\]"),
    (dict(block_size=10**9), r"block_size must be in \[1, 1048576\]"),
    (dict(ffn_hidden=10**9), r"ffn_hidden must be in \[1, 262144\]"),
    (dict(n_head=10**9), r"n_head must be in \[1, 65536\]"),
    # each dimension allowed, the whole not: the estimate is said, in parameters and bytes
    (dict(n_layer=1024, n_embd=65536, n_head=1), r"about 5.3e\+13 parameters \(211 TB of float32\), above "
                                                 r"sokhan's ceiling of 10,000,000,000 \(40 GB\)"),
    (dict(vocab_size=2**24, n_embd=2**14, n_head=1, tie_weights=False), r"about 5.6e\+11 parameters"),
    (dict(family="lstm", n_layer=1024, n_embd=2**14, n_head=1), r"this lstm model would hold about 2.2e\+12"),
], ids=["n_layer", "vocab_size", "n_embd", "block_size", "ffn_hidden", "n_head", "wide-and-deep",
         "huge-untied-vocab", "deep-lstm"])
def test_huge_dimensions_are_refused_when_the_config_is_built(values, message):
    with pytest.raises(SokhanError, match=message):
        ModelConfig.create(**values)


def test_huge_dimensions_are_one_line_before_any_data_is_read(capsys, tmp_path):
    one_line_error(capsys, ["train", "--data", str(tmp_path / "missing"), "--n-layer", "1000000"], "n_layer")
    one_line_error(capsys, ["train", "--data", str(tmp_path / "missing"), "--n-layer", "1024", "--n-embd", "65536",
                            "--n-head", "1"], "211 TB")
    one_line_error(capsys, ["prepare", "--vocab-size", str(10**12), "--out-dir", str(tmp_path / "o")], "vocab_size")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", [dict(), dict(tie_weights=False, bias=False), dict(norm="rmsnorm"),
                                     dict(positional="sinusoidal", prenorm=False), dict(positional="rope"),
                                     dict(positional="none", activation="swiglu", ffn_hidden=40),
                                     dict(qk_norm=True, activation="relu2", zero_init_out=True)],
                         ids=["defaults", "untied-no-bias", "rmsnorm", "sinusoidal-postnorm", "rope", "swiglu",
                              "qk-norm-relu2"])
def test_the_size_estimate_is_what_building_allocates(family, variant):
    """The ceiling is judged on `estimated_numbers`: it must count what the model really holds."""
    if family == "seq2seq" and variant.get("positional") == "rope":
        with pytest.raises(SokhanError, match="RoPE"):  # refused when its config is built
            ModelConfig.create(preset=None, family=family, **variant)
        return
    cfg = ModelConfig.create(preset=None, family=family, vocab_size=50, n_layer=2, n_head=2, n_embd=16,
                             block_size=10, **variant)
    model = build_model(cfg)
    tensors = {id(t): t.numel() for t in [*model.parameters(), *model.buffers()]}  # tied ones once
    assert cfg.estimated_numbers() == sum(tensors.values())


# --------------------------------------------------------------------------- meta.json and shards

@pytest.fixture
def dataset(tiny_run: Path, tmp_path: Path) -> Path:
    """A tiny prepared dataset, as `sokhan prepare` writes it: the tiny model's tokenizer (400 tokens), ids 0–399."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(tiny_run.parent / "data" / "tokenizer.json", folder)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 2000), ("val", 400)):
        rng.integers(0, 400, n).astype("<u2").tofile(folder / f"{split}.bin")
        splits[split] = {"documents": 3, "tokens": n, "chars": 3 * n, "fingerprint": "0" * 32}
    meta = {"format": 1, "dtype": "uint16", "vocab_size": 400, "tokenizer": "bpe",
            "normalizer": NormalizerConfig().to_dict(), "source": "test", "splits": splits, "doc_split": "blank-line"}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def meta_value(*keys: str, value: Any = None, delete: bool = False) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        target = meta
        for key in keys[:-1]:
            target = target[key]
        if delete:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, message", [
    (meta_value("splits", "train", "tokens", value="2000"), "splits.train.tokens must be a whole number ≥ 0, "
                                                            "got the string '2000'"),
    (meta_value("splits", "train", "tokens", value="many"), "splits.train.tokens must be a whole number"),
    (meta_value("splits", "train", "chars", value=0), "splits.train.chars must be a whole number ≥ 1, "
                                                      "got the number 0"),
    (meta_value("splits", "train", "chars", value="6000"), "splits.train.chars must be a whole number"),
    (meta_value("splits", "train", "chars", value=6000.5), "splits.train.chars must be a whole number"),
    (meta_value("splits", "train", "documents", value=None), "splits.train.documents must be a whole number ≥ 0, "
                                                             "got null"),
    (meta_value("splits", "train", "chars", delete=True), "splits.train.chars must be a whole number ≥ 1, got null"),
    (meta_value("splits", "train", "fingerprint", value=5), "splits.train.fingerprint must be a string"),
    (meta_value("splits", "val", value=[]), "splits.val must be an object, got a list"),
    (meta_value("vocab_size", value="400"), "vocab_size must be a whole number from 1 to 16777216"),
    (meta_value("vocab_size", value=0), "vocab_size must be a whole number from 1 to 16777216, got the number 0"),
    (meta_value("vocab_size", value=True), "vocab_size must be a whole number"),
    (meta_value("tokenizer", value=5), "tokenizer must be a string, got the number 5"),
    (meta_value("normalizer", value=5), r"\[normalizer\] must be a table of options, got the number 5"),
    (meta_value("normalizer", "digits", value=5), r"\[normalizer\]: digits must be a string, got 5"),
    (meta_value("normalizer", delete=True), r"\[normalizer\] must be a table of options, got null"),
], ids=["tokens-string-number", "tokens-word", "chars-zero", "chars-string", "chars-fraction", "documents-null",
         "chars-missing", "fingerprint-number", "split-list", "vocab-string", "vocab-zero", "vocab-bool",
         "tokenizer-number", "normalizer-number", "normalizer-digits-number", "normalizer-missing"])
def test_a_malformed_meta_json_is_one_line(dataset, change, message):
    edit_json(dataset / "meta.json", change)
    with pytest.raises(SokhanError, match=message):
        load_meta(dataset)
    with pytest.raises(SokhanError, match=message):
        TokenData(dataset, "train")


def test_a_dataset_without_its_tokenizer_is_one_line(dataset, capsys):
    (dataset / "tokenizer.json").unlink()
    with pytest.raises(SokhanError, match=r"has no tokenizer\.json; prepare the data again"):
        load_meta(dataset)
    one_line_error(capsys, ["train", "--data", str(dataset), "--out-dir", str(dataset.parent / "run"), "--preset",
                            "tiny", "--max-steps", "1", "--device", "cpu"], "no tokenizer.json")


def ids_past_the_vocabulary(folder: Path) -> None:
    tokens = np.fromfile(folder / "train.bin", dtype="<u2")
    tokens[1234] = 400
    tokens.tofile(folder / "train.bin")


def uint32_meta_over_uint16_file(folder: Path) -> None:
    """The bytes of 2000 uint16 ids read as 1000 uint32 ones: the sizes agree, the ids are two ids glued."""
    edit_json(folder / "meta.json", lambda m: (m.__setitem__("dtype", "uint32"),
                                               m["splits"]["train"].__setitem__("tokens", 1000)))


def vocabulary_shrunk(folder: Path) -> None:
    edit_json(folder / "meta.json", meta_value("vocab_size", value=300))


@pytest.mark.parametrize("change, message", [
    (ids_past_the_vocabulary, r"train.bin holds token id 400, outside the vocabulary of 400"),
    (uint32_meta_over_uint16_file, r"train.bin holds token id \d{6,}, outside the vocabulary of 400 in meta.json "
                                   r"\(another dataset's file, or written as other than uint32\)"),
    (vocabulary_shrunk, r"train.bin holds token id 399, outside the vocabulary of 300"),
], ids=["id-past-vocab", "uint32-meta-over-uint16-file", "meta-vocab-shrunk"])
def test_shards_with_ids_outside_the_vocabulary_are_refused_when_opened(dataset, capsys, change, message):
    change(dataset)
    with pytest.raises(SokhanError, match=message):
        TokenData(dataset, "train")
    one_line_error(capsys, ["train", "--data", str(dataset), "--out-dir", str(dataset.parent / "run"), "--preset",
                            "tiny", "--block-size", "16", "--max-steps", "2", "--device", "cpu", "--no-progress"],
                   "outside the vocabulary")


def test_a_dataset_that_is_well_formed_still_opens(dataset):
    data = TokenData(dataset, "train")
    assert (data.num_tokens, data.num_chars, data.num_documents) == (2000, 6000, 3)


# --------------------------------------------------------------------------- latest

def test_a_latest_that_is_not_utf8_falls_back_to_the_newest_checkpoint(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoints" / "latest").write_bytes(b"step-\xff\xfe\n")
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    assert resolve_model_dir(run) == newest
    assert TrainedModel.load(run, device="cpu").path == newest


# --------------------------------------------------------------------------- argv

@pytest.mark.parametrize("argv", [
    ["sample", "model\udcff"],
    ["sample", "{run}", "--prompt", "دل\udcff"],
    ["inspect", "next", "{run}", "a\udcff"],
    ["train", "--data", "{missing}", "--out-dir", "run\udcff"],
    ["prepare", "--source", "hafez", "--out-dir", "{tmp}/data\udcff"],
    ["\udcff"],
], ids=["model-path", "prompt", "inspect-text", "train-out-dir", "prepare-out-dir", "command"])
def test_arguments_that_are_not_utf8_are_one_line(capsys, tiny_run, tmp_path, argv):
    argv = [a.format(run=tiny_run, missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    one_line_error(capsys, argv, "is not UTF-8 text", "\\xff")
    assert list(tmp_path.iterdir()) == []  # nothing made, no folder with an undecodable name


def test_undecodable_bytes_in_the_real_argv_are_one_line(tmp_path):
    """As a shell passes them: bytes, which Python decodes with surrogateescape."""
    proc = subprocess.run([sys.executable, "-m", "sokhan", "sample", b"model-\xe9t\xe9"], capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == ("error: argument 'model-\\xe9t\\xe9' is not UTF-8 text; sokhan reads its arguments as "
                        "UTF-8 (rename the file, or re-encode the text)")


@pytest.mark.parametrize("value", ["[/x]", "[bold]x", "[red]"])
def test_an_error_that_quotes_brackets_prints_them_as_typed(capsys, tmp_path, value):
    """Messages are text, not rich markup: a stray closing tag crashed the printer, an opening one vanished."""
    one_line_error(capsys, ["prepare", "--tokenizer", value, "--out-dir", str(tmp_path / "o")],
                   f"unknown tokenizer kind '{value}'")


# --------------------------------------------------------------------------- --out-dir that is a file

@pytest.mark.parametrize("argv", [
    ["train", "--data", "{data}", "--out-dir", "{file}", "--preset", "tiny", "--max-steps", "1", "--device", "cpu"],
    ["train", "--data", "{data}", "--out-dir", "{file}/run", "--preset", "tiny", "--max-steps", "1"],
    ["finetune", "--base", "{run}", "--out-dir", "{file}", "--max-steps", "1", "--device", "cpu"],
    ["prepare", "--source", "hafez", "--tokenizer", "char", "--out-dir", "{file}/data"],
    ["zoo", "--out-dir", "{file}", "--budget", "1", "--families", "gpt", "--orders", "2", "--device", "cpu"],
    ["demo", "--out-dir", "{file}", "--steps", "1", "--chat-steps", "0", "--device", "cpu"],
    ["inspect", "positions", "{run}", "--out-dir", "{file}"],
    ["inspect", "curves", "{run}", "--out-dir", "{file}/pictures"],
], ids=["train", "train-under-file", "finetune", "prepare-under-file", "zoo", "demo", "inspect-positions",
         "inspect-curves-under-file"])
def test_an_out_dir_that_is_a_file_is_one_line_before_any_work(capsys, tiny_run, tmp_path, argv):
    file = tmp_path / "notes.txt"
    file.write_text("mine", encoding="utf-8")
    argv = [a.format(data=tiny_run.parent / "data", run=tiny_run, file=file) for a in argv]
    one_line_error(capsys, argv, str(file), "not a folder")
    assert file.read_text(encoding="utf-8") == "mine" and list(tmp_path.iterdir()) == [file]


# --------------------------------------------------------------------------- configs read from files

def test_a_saved_section_must_be_a_table_with_every_required_field():
    with pytest.raises(SokhanError, match=r"run/config.json \[normalizer\] must be a table of options, got a list"):
        NormalizerConfig.from_dict([], "run/config.json [normalizer]")
    with pytest.raises(SokhanError, match="LoraConfig lacks alpha"):
        LoraConfig.from_dict({"targets": ["qkv"], "rank": 4})
    with pytest.raises(SokhanError, match="unknown LoRA target 'outt'"):
        LoraConfig.from_dict({"targets": ["outt"], "rank": 4, "alpha": 8})
    assert LoraConfig.from_dict({"targets": ["qkv"], "rank": 4, "alpha": 8}).alpha == 8.0
