"""`sokhan train` (alias `pretrain`): train a model of any family on prepared data, or count an n-gram model."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config_file, add_config_flags, config_from, console, given, shown
from sokhan.config import PRESET_TRAINING, ModelConfig, TrainConfig, config_values

NAME = "train"
ALIASES = ("pretrain",)
HELP = "train a model of any family on prepared data: --model gpt|bert|rnn|lstm|gru|ngram"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file(parser, "train", "model")
    notes = {name: f"{shown(getattr(TrainConfig(), name))}; {value} with --preset {preset}"
             for preset, values in PRESET_TRAINING.items() for name, value in values.items()}
    add_config_flags(parser, TrainConfig(), notes=notes)
    add_config_flags(parser, ModelConfig.create(), aliases={"family": "--model"},
                     notes={"vocab_size": "the tokenizer's"})


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sokhan.cli.report import report  # torch loads when the command runs, never for --help
    from sokhan.models import FAMILIES
    from sokhan.recipes.pretrain import pretrain
    from sokhan.train.distributed import env_rank

    model = config_values(ModelConfig, args.config, given(args, ModelConfig))
    checked = ModelConfig.create(**model)  # every model option checked before any data is read
    cfg = config_from(args, TrainConfig, base=TrainConfig(**PRESET_TRAINING.get(checked.preset or "", {})))
    next_step = f"sokhan sample {cfg.out_dir}"
    if not FAMILIES[checked.family].capabilities.causal:
        next_step = f"sokhan fill {cfg.out_dir} \"… <mask> …\""
    if env_rank():  # under torchrun only rank 0 speaks (an error is still printed by every rank)
        result = pretrain(cfg, model, Console(stderr=True, quiet=True))
        return 130 if result.interrupted else 0
    return report(pretrain(cfg, model, console), next_step)
