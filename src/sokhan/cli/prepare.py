"""`sokhan prepare`: a corpus → normalized, split, tokenized shards (train-NNNNN.bin, val-…), tokenizer, meta.json."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import PrepareConfig

NAME = "prepare"
HELP = "normalize a corpus, train a tokenizer, write token shards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, PrepareConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.data.prepare import prepare  # numpy and tokenizers load when the command runs, never for --help

    cfg = config_from(args, PrepareConfig)
    console.print(f"prepared data in {prepare(cfg)}")
