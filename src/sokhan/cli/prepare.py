"""`sokhan prepare`: a corpus → normalized, split, tokenized train.bin / val.bin, tokenizer.json, meta.json."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config_file, add_config_flags, console, given
from sokhan.config import PrepareConfig, load_config

NAME = "prepare"
HELP = "normalize a corpus, train a tokenizer, write token shards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file(parser, "prepare")
    add_config_flags(parser, PrepareConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.data.prepare import prepare  # numpy and tokenizers load when the command runs, never for --help

    cfg = load_config(PrepareConfig, args.config, given(args, PrepareConfig))
    console.print(f"prepared data in {prepare(cfg)}")
