"""Configs: defaults <- TOML file <- command-line flags, every key checked."""

import pytest

from sokhan.config import load_config
from sokhan.errors import SokhanError
from sokhan.config import ModelConfig
from sokhan.config import TrainConfig


def test_toml_then_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[train]\nmax_steps = 50\nlr = 0.002\ncompile = true\n[model]\nn_layer = 3\n', encoding="utf-8")
    cfg = load_config(TrainConfig, f, {"lr": "3e-4", "batch_size": "4"})
    assert (cfg.max_steps, cfg.lr, cfg.batch_size, cfg.compile) == (50, 3e-4, 4, True)
    model = load_config(ModelConfig, f, {"n_head": "2", "n_embd": "32"})
    assert (model.n_layer, model.n_head, model.n_embd) == (3, 2, 32)


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
