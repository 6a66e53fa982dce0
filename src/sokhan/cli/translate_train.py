"""`sokhan translate-train`: prepare parallel text, train the paper's encoder–decoder, score it with BLEU and chrF++."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config_file, add_config_flags, config_from, console, given
from sokhan.config import ModelConfig, TranslateTrainConfig, config_values
from sokhan.config.translate import TRANSLATOR_SKIPPED_MODEL_OPTIONS

NAME = "translate-train"
HELP = "train an English → Persian translation model (the 2017 encoder–decoder) and score it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file(parser, "translate_train", "model")
    add_config_flags(parser, TranslateTrainConfig())
    add_config_flags(parser, ModelConfig.create(preset="seq2seq-small"), skip=TRANSLATOR_SKIPPED_MODEL_OPTIONS)


def run(args: argparse.Namespace) -> int:
    from sokhan.cli.report import report  # torch loads when the command runs, never for --help
    from sokhan.recipes.translate import translate_train
    from sokhan.train.distributed import env_rank

    cfg = config_from(args, TranslateTrainConfig)
    model = config_values(ModelConfig, args.config, given(args, ModelConfig, skip=TRANSLATOR_SKIPPED_MODEL_OPTIONS))
    model.setdefault("preset", "seq2seq-small")
    ModelConfig.create(**model)  # every model option checked before any data is read
    result = translate_train(cfg, model, console)
    if env_rank():  # under torchrun rank 0 alone reports (an error is still printed by every rank)
        return 130 if result.train.interrupted else 0
    return report(result.train, f"sokhan translate {cfg.out_dir} \"Transformers learn from data.\"")
