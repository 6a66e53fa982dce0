"""`sokhan leaderboard`: trained runs scored in bits per character on their data's whole validation split."""

from __future__ import annotations

import argparse
from pathlib import Path

from sokhan.cli.arguments import add_device, console

NAME = "leaderboard"
HELP = "bits per character of trained runs on their held-out text: table + plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (from `sokhan train`)")
    parser.add_argument("--out-dir", default=".", help="where leaderboard.md, .png and .html go (default: .)")
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    from sokhan.eval.leaderboard import summarize, write_leaderboard  # torch loads when the command runs

    summaries = [summarize(run, device=args.device) for run in args.runs]
    write_leaderboard(summaries, Path(args.out_dir), console, "bits per character on held-out text")
