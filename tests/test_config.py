"""Configs: defaults <- TOML file <- command-line flags, every key checked."""

import pytest

from sokhan.config import ModelConfig, PrepareConfig, SampleConfig, TrainConfig, ZooConfig, load_config
from sokhan.errors import SokhanError


def test_toml_then_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[train]\nmax_steps = 50\nlr = 0.002\ncompile = true\n[model]\nn_layer = 3\n', encoding="utf-8")
    cfg = load_config(TrainConfig, f, {"lr": "3e-4", "batch_size": "4"})
    assert (cfg.max_steps, cfg.lr, cfg.batch_size, cfg.compile) == (50, 3e-4, 4, True)
    model = load_config(ModelConfig, f, {"n_head": "2", "n_embd": "32"})
    assert (model.n_layer, model.n_head, model.n_embd) == (3, 2, 32)


def test_comma_lists_split_for_names_from_a_list_but_never_for_free_text():
    """`--families rnn,gpt` is two families (its help says comma-separated; it used to be one unknown family), while a
    stop string may hold a comma."""
    assert load_config(ZooConfig, None, {"families": ["rnn,gpt", "lstm"]}).families == ["rnn", "gpt", "lstm"]
    assert load_config(SampleConfig, None, {"stop": ["a,b"]}).stop == ["a,b"]
    with pytest.raises(SokhanError, match="unknown zoo family 'gpx'"):
        load_config(ZooConfig, None, {"families": ["rnn,gpx"]})


def test_bad_keys_and_values_are_user_errors(tmp_path):
    with pytest.raises(SokhanError, match="unknown option 'max_stpes'"):
        load_config(TrainConfig, None, {"max_stpes": "3"})
    with pytest.raises(SokhanError, match="expects int"):
        load_config(TrainConfig, None, {"max_steps": "many"})
    with pytest.raises(SokhanError, match="expects bool"):
        load_config(TrainConfig, None, {"compile": "perhaps"})
    bad = tmp_path / "bad.toml"
    bad.write_text("max_steps = = 3", encoding="utf-8")
    with pytest.raises(SokhanError, match="cannot read config"):
        load_config(TrainConfig, bad)


def test_model_config_validation():
    with pytest.raises(SokhanError, match="divisible"):
        ModelConfig(n_embd=30, n_head=4)
    with pytest.raises(SokhanError, match="positional"):
        ModelConfig(positional="alibi")
    with pytest.raises(SokhanError, match="unknown model preset"):
        ModelConfig.create(preset="gpt5")
    assert ModelConfig(activation="swiglu", n_embd=96, n_head=4).ffn_size == 256  # ⅔·4·96 = 256
    for name in ("dropout", "attention_dropout"):
        with pytest.raises(SokhanError, match=f"{name} must be in \\[0, 1\\)"):
            ModelConfig(**{name: 1.0})


# --- one path, checked: TOML, flags and saved config.json alike -----------------------------------

def test_misspelled_toml_key_is_refused_naming_it_and_the_valid_ones(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("[train]\nmax_step = 3\n", encoding="utf-8")
    with pytest.raises(SokhanError, match="unknown option 'max_step' in \\[train\\]") as e:
        load_config(TrainConfig, f)
    assert "max_steps" in str(e.value)  # the valid keys are listed
    f.write_text("[trian]\nmax_steps = 3\n", encoding="utf-8")
    with pytest.raises(SokhanError, match="unknown table \\[trian\\]"):
        load_config(TrainConfig, f)
    f.write_text("max_steps = 3\n", encoding="utf-8")
    with pytest.raises(SokhanError, match="outside a table"):
        load_config(TrainConfig, f)
    f.write_text("[prepare]\nvocab_size = 512\n[train]\nmax_steps = 3\n", encoding="utf-8")  # another command's table
    assert load_config(TrainConfig, f).max_steps == 3


@pytest.mark.parametrize("field, value, message", [
    ("eval_interval", 0, "eval_interval must be ≥ 1, got 0"),
    ("max_steps", 0, "max_steps must be ≥ 1"),
    ("log_interval", 0, "log_interval must be ≥ 1"),
    ("batch_size", 0, "batch_size must be ≥ 1"),
    ("lr", 0.0, "lr must be > 0"),
    ("beta2", 1.0, "beta2 must be in \\[0, 1\\)"),
    ("dtype", "float16", "unknown dtype 'float16'; choose from auto, float32, bfloat16"),
    ("device", "tpu", "unknown device 'tpu'"),
    ("max_steps", "5", "max_steps must be an integer, got '5'"),
    ("compile", 1, "compile must be true or false, got 1"),
])
def test_every_value_is_checked_when_a_config_is_built(field, value, message):
    with pytest.raises(SokhanError, match=message):
        TrainConfig(**{field: value})


def test_types_widen_only_where_safe():
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # TOML `lr = 1`
    with pytest.raises(SokhanError, match="must be a finite number"):
        TrainConfig(max_time=float("inf"))
    with pytest.raises(SokhanError, match="n_layer must be an integer"):
        ModelConfig(n_layer=2.5)


def test_saved_model_config_is_checked_like_any_other(tmp_path):
    saved = ModelConfig.create(preset="tiny").to_dict()
    assert ModelConfig.from_dict(saved) == ModelConfig.create(preset="tiny")
    with pytest.raises(SokhanError, match=r"unknown option 'n_layers' in .*; valid: preset, family"):
        ModelConfig.from_dict({**saved, "n_layers": 3}, "run/config.json [model]")
    with pytest.raises(SokhanError, match="unknown positional 'alibi'"):
        ModelConfig.from_dict({**saved, "positional": "alibi"})


def test_the_preset_belongs_to_the_model_config(tmp_path):
    small = ModelConfig.create()
    assert (small.preset, small.n_layer, small.n_embd, small.block_size, small.dropout) == ("small", 4, 128, 128, 0.1)
    f = tmp_path / "run.toml"
    f.write_text('[model]\npreset = "tiny"\nn_layer = 3\n', encoding="utf-8")
    tiny = load_config(ModelConfig, f)
    assert (tiny.preset, tiny.n_layer, tiny.n_embd) == ("tiny", 3, 64)  # the preset, then the table's values
    assert ModelConfig().preset is None and ModelConfig().block_size == 256  # field defaults: no preset applied


def test_config_limits_agree_with_the_code_they_guard():
    from sokhan.config.data import BPE_MIN_VOCAB
    from sokhan.config.train import FinetuneConfig
    from sokhan.text.tokenizers import SPECIAL_TOKENS, train_bpe

    assert len(SPECIAL_TOKENS) + 256 + 1 == BPE_MIN_VOCAB
    with pytest.raises(SokhanError, match="above"):
        train_bpe(["سلام"], BPE_MIN_VOCAB - 1)
    with pytest.raises(SokhanError, match=f"vocab_size must be ≥ {BPE_MIN_VOCAB}"):
        PrepareConfig(vocab_size=100)
    assert PrepareConfig(tokenizer="char", vocab_size=100).vocab_size == 100  # a character vocabulary has no floor
    with pytest.raises(SokhanError, match="unknown LoRA target 'outt'"):
        FinetuneConfig(lora=True, lora_targets=["qkv", "outt"])
    with pytest.raises(SokhanError, match="seed must be in"):
        TrainConfig(seed=2**70)


def test_an_option_that_moved_says_where_it_went(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[train]\npreset = "tiny"\n', encoding="utf-8")
    with pytest.raises(SokhanError, match=r"'preset' in \[train\] .* is now a model option: --preset"):
        load_config(TrainConfig, f)
    f.write_text('[normalize]\ndigits = "latin"\n', encoding="utf-8")  # read from config.json, not from TOML
    with pytest.raises(SokhanError, match="unknown table \\[normalize\\]"):
        load_config(TrainConfig, f)
