"""`sokhan finetune`: supervised fine-tuning of a pretrained model, full or LoRA: on conversations into a chat model,
or with `--task classify` on labelled texts or text pairs into a classifier."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config_file, add_config_flags, config_from, console
from sokhan.config import FINETUNE_DEFAULTS, FinetuneConfig, TrainConfig

NAME = "finetune"
HELP = "supervised fine-tuning (full or LoRA): a chat model, or with --task classify a classifier"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file(parser, "finetune", "train")
    add_config_flags(parser, FinetuneConfig(), aliases={"val_data": "--valid"})
    add_config_flags(parser, FINETUNE_DEFAULTS, skip=("data",))  # --data is the conversations


def run(args: argparse.Namespace) -> int:
    from sokhan.cli.report import report  # torch loads when the command runs, never for --help
    from sokhan.recipes.finetune import finetune
    from sokhan.train.distributed import env_rank

    ft = config_from(args, FinetuneConfig)
    cfg = config_from(args, TrainConfig, base=FINETUNE_DEFAULTS, skip=("data",))
    result = finetune(ft, cfg, console)
    if env_rank():  # under torchrun rank 0 alone reports (an error is still printed by every rank)
        return 130 if result.interrupted else 0
    next_step = f'sokhan classify {cfg.out_dir} "…"' if ft.task == "classify" else f"sokhan chat {cfg.out_dir}"
    return report(result, next_step)
