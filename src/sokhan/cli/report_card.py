"""`sokhan report RUN…`: a report card (report.md and its pictures) for one or more runs of any family."""

from __future__ import annotations

import argparse
from pathlib import Path

from sokhan.cli.arguments import add_device, console

NAME = "report"
HELP = "a report card of runs: data, model, training, held-out score, task results, samples, the machine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (from train, finetune, translate-train)")
    parser.add_argument("--out-dir", default=None,
                        help="where report.md, report.json and curves.png/.html go (default: RUN/report for one "
                             "run, else report/ beside the first)")
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    from sokhan.recipes.report_card import write_report  # torch loads when the command runs, never for --help

    first = Path(args.runs[0])
    out = Path(args.out_dir) if args.out_dir else first / "report" if len(args.runs) == 1 else first.parent / "report"
    console.print(f"report card: {write_report(args.runs, out, device=args.device)}", highlight=False,
                  soft_wrap=True)
