"""The command line's training steps as Python functions, for notebooks (the guided tour, docs/tour/).

`prepare(**options)` is `sokhan prepare`, `pretrain(**options)` is `sokhan train` (alias `pretrain`),
`finetune` is `sokhan finetune`, `translate_train` is `sokhan translate-train` and `sweep` is
`sokhan sweep`: the options are the flags' names with underscores (`out_dir`, `vocab_size`,
`max_steps`, `model` for the family, `order`, `n_layer`, `lora`, …), checked as the command line
checks them, and each returns the folder it wrote (a model folder is ready for
`LanguageModel.load`; a sweep's holds sweep.json). They print as the commands do, unless `quiet`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console

from sokhan.config import (
    FINETUNE_DEFAULTS,
    PRESET_TRAINING,
    FinetuneConfig,
    ModelConfig,
    PrepareConfig,
    SweepConfig,
    TrainConfig,
    TranslateTrainConfig,
)
from sokhan.config.base import field_specs
from sokhan.config.translate import TRANSLATOR_SKIPPED_MODEL_OPTIONS
from sokhan.data.prepare import prepare as prepare_data
from sokhan.errors import SokhanError
from sokhan.recipes.finetune import finetune as run_finetune
from sokhan.recipes.pretrain import pretrain as run_training
from sokhan.recipes.sweep import run_sweep
from sokhan.recipes.translate import translate_train as run_translate_train
from sokhan.train.engine import TrainResult

MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}
FINETUNE_FIELDS = {f.name for f in dataclasses.fields(FinetuneConfig)}
TRANSLATOR_MODEL_FIELDS = MODEL_FIELDS - set(TRANSLATOR_SKIPPED_MODEL_OPTIONS)  # the model options a translator reads


def prepare(quiet: bool = True, **options: Any) -> Path:
    """`sokhan prepare`: normalize a corpus, train its tokenizer and write its token shards; the data folder."""
    check_options(options, "sokhan.prepare", field_specs(PrepareConfig))
    return prepare_data(PrepareConfig(**paths_as_text(options)), progress=not quiet)


def pretrain(quiet: bool = True, **options: Any) -> Path:
    """`sokhan train`: train (or count) a model on prepared data; the run folder.

    The model's options (`model`: the family, `order`, `n_layer`, `n_embd`, `preset`, …) and the
    training's (`data`, `out_dir`, `max_steps`, `lr`, …) come mixed, as on the command line.
    """
    check_options(options, "sokhan.pretrain", ["model"], field_specs(TrainConfig), MODEL_FIELDS - {"family"})
    options = quieted(paths_as_text(options), quiet)
    model = {("family" if name == "model" else name): value for name, value in options.items()
             if name == "model" or name in MODEL_FIELDS}
    rest = {name: value for name, value in options.items() if name != "model" and name not in MODEL_FIELDS}
    checked = ModelConfig.create(**model)  # every option checked before any data is read, as the command does
    cfg = TrainConfig(**{**PRESET_TRAINING.get(checked.preset or "", {}), **rest})
    return finished(run_training(cfg, model, Console(stderr=True, quiet=quiet)))


def finetune(quiet: bool = True, **options: Any) -> Path:
    """`sokhan finetune`: a pretrained model (`base`) fine-tuned on conversations into a chat model, full or
    with `lora=True`, or with `task="classify"` on labelled records into a classifier; the model folder.

    `data` is the conversations (default: the Persian dialogs of chatterbot-corpus) or the records;
    the training options (`max_steps`, `lr`, `out_dir`, …) start from the command's gentle defaults.
    """
    check_options(options, "sokhan.finetune", field_specs(FinetuneConfig), field_specs(TrainConfig))
    options = quieted(paths_as_text(options), quiet)
    tuning = {name: value for name, value in options.items() if name in FINETUNE_FIELDS}
    rest = {name: value for name, value in options.items() if name not in FINETUNE_FIELDS}
    ft = FinetuneConfig(**tuning)
    cfg = TrainConfig(**{**dataclasses.asdict(FINETUNE_DEFAULTS), **rest})
    return finished(run_finetune(ft, cfg, Console(stderr=True, quiet=quiet)))


def translate_train(quiet: bool = True, **options: Any) -> Path:
    """`sokhan translate-train`: parallel text (`data`) prepared, the encoder–decoder trained and scored on
    the test split (when the data has one); the run folder, its scores in scores.json.

    The model options (`n_layer`, `n_embd`, `n_head`, `block_size`, …) come mixed with the recipe's, on the
    base of the preset seq2seq-small, as on the command line.
    """
    check_options(options, "sokhan.translate_train", field_specs(TranslateTrainConfig), TRANSLATOR_MODEL_FIELDS)
    options = quieted(paths_as_text(options), quiet)
    model = {name: value for name, value in options.items() if name in TRANSLATOR_MODEL_FIELDS}
    rest = {name: value for name, value in options.items() if name not in TRANSLATOR_MODEL_FIELDS}
    model.setdefault("preset", "seq2seq-small")
    ModelConfig.create(**model)  # every model option checked before any data is read
    result = run_translate_train(TranslateTrainConfig(**rest), model, Console(stderr=True, quiet=quiet))
    return finished(result.train)


def sweep(quiet: bool = True, **options: Any) -> Path:
    """`sokhan sweep`: every GPT size (`sizes`, e.g. ["2x32", "2x64"]) trained once at every compute budget
    (`budgets`, FLOPs), and bits/char ≈ a · C^(−b) fitted on the best run of each budget; the folder
    holding sweep.json (`runs`: one row per run; `fit`: a, b and the frontier) and the picture."""
    check_options(options, "sokhan.sweep", field_specs(SweepConfig))
    cfg = SweepConfig(**quieted(paths_as_text(options), quiet))
    run_sweep(cfg, Console(stderr=True, quiet=quiet))
    return Path(cfg.out_dir)


def finished(result: TrainResult) -> Path:
    """The run folder of a run that went to its end; Ctrl-C in a notebook stops the cell with one line."""
    if result.interrupted:
        raise SokhanError(f"training stopped early; its checkpoint is in {result.run_dir}")
    return result.run_dir


def check_options(options: dict[str, Any], where: str, *valid: Iterable[str]) -> None:
    """An option none of the function's configs has: one line naming every option it takes (the check the
    command line's parser makes)."""
    names = list(dict.fromkeys(name for group in valid for name in group))
    unknown = [name for name in options if name not in names]
    if unknown:
        raise SokhanError(f"unknown option '{unknown[0]}' in {where}; valid: quiet, {', '.join(names)}")


def quieted(options: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Progress bars follow `quiet` unless `progress` is given, as prepare's do."""
    return {"progress": not quiet, **options}


def paths_as_text(options: dict[str, Any]) -> dict[str, Any]:
    """A folder may be given as a `Path` (what these functions return) where the configs hold text."""
    return {name: str(value) if isinstance(value, Path) else value for name, value in options.items()}
