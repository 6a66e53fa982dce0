"""`sokhan zoo`: every family on one corpus and tokenizer, the same budget each, then the leaderboard."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import ZooConfig

NAME = "zoo"
HELP = "every family on the Hafez corpus, the same training tokens each, then the leaderboard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, ZooConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.recipes.zoo import run_zoo  # torch loads when the command runs, never for --help

    run_zoo(config_from(args, ZooConfig), console)
