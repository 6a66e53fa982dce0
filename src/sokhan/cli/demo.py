"""`sokhan demo`: the main job — prepare the Divan of Hafez, pretrain a small GPT, sample, fine-tune a chat model."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import DemoConfig

NAME = "demo"
HELP = "the whole story on the embedded Hafez corpus: prepare → pretrain → sample → fine-tune a chat"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, DemoConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.recipes.demo import run_demo  # torch loads when the command runs, never for --help

    run_demo(config_from(args, DemoConfig), console)
