"""The command line's first steps as Python functions, for notebooks (the guided tour, docs/tour/).

`prepare(**options)` is `sokhan prepare`, `pretrain(**options)` is `sokhan train` (alias `pretrain`): the options are
the flags' names with underscores (`out_dir`, `vocab_size`, `max_steps`, `model` for the family,
`order`, `n_layer`, …), checked as the command line checks them, and each returns the folder it
wrote, ready for `LanguageModel.load`. They print as the commands do, unless `quiet`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from sokhan.config import PRESET_TRAINING, ModelConfig, PrepareConfig, TrainConfig
from sokhan.config.base import check_keys
from sokhan.data.prepare import prepare as prepare_data
from sokhan.errors import SokhanError
from sokhan.recipes.pretrain import pretrain as run_training

MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def prepare(quiet: bool = True, **options: Any) -> Path:
    """`sokhan prepare`: normalize a corpus, train its tokenizer and write its token shards; the data folder."""
    check_keys(PrepareConfig, options, "sokhan.prepare")
    return prepare_data(PrepareConfig(**paths_as_text(options)), progress=not quiet)


def pretrain(quiet: bool = True, **options: Any) -> Path:
    """`sokhan train`: train (or count) a model on prepared data; the run folder.

    The model's options (`model`: the family, `order`, `n_layer`, `n_embd`, `preset`, …) and the
    training's (`data`, `out_dir`, `max_steps`, `lr`, …) come mixed, as on the command line.
    """
    options = paths_as_text(options)
    model = {("family" if name == "model" else name): value for name, value in options.items()
             if name == "model" or name in MODEL_FIELDS}
    rest = {name: value for name, value in options.items() if name != "model" and name not in MODEL_FIELDS}
    check_keys(TrainConfig, rest, "sokhan.pretrain (nor a model option)")
    checked = ModelConfig.create(**model)  # every option checked before any data is read, as the command does
    cfg = TrainConfig(**{**PRESET_TRAINING.get(checked.preset or "", {}), **rest})
    result = run_training(cfg, model, Console(stderr=True, quiet=quiet))
    if result.interrupted:
        raise SokhanError(f"training stopped early; its checkpoint is in {result.run_dir}")
    return result.run_dir


def paths_as_text(options: dict[str, Any]) -> dict[str, Any]:
    """A folder may be given as a `Path` (what these functions return) where the configs hold text."""
    return {name: str(value) if isinstance(value, Path) else value for name, value in options.items()}
