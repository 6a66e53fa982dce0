"""`sokhan sweep`: GPT sizes × compute budgets on one corpus, then bits/char ≈ a · C^(−b) fitted on the frontier."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import SweepConfig

NAME = "sweep"
HELP = "a scaling sweep: GPT sizes × compute budgets on one corpus, the power-law fit and its plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, SweepConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.recipes.sweep import run_sweep  # torch loads when the command runs, never for --help

    run_sweep(config_from(args, SweepConfig), console)
