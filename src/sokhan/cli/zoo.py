"""`sokhan zoo`: every family on one corpus and tokenizer, under one budget each, then the leaderboard."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config_file, add_config_flags, console, given
from sokhan.config import ZooConfig, load_config

NAME = "zoo"
HELP = "every family on the Hafez corpus under one time budget each, then the leaderboard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file(parser, "zoo")
    add_config_flags(parser, ZooConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.recipes.zoo import run_zoo  # torch loads when the command runs, never for --help

    run_zoo(load_config(ZooConfig, args.config, given(args, ZooConfig)), console)
