"""`sokhan sample`: stream a continuation of a prompt from a trained model to the terminal."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from sokhan.cli.arguments import add_compile, add_config, add_model_folder, at_least, config_from
from sokhan.config import SampleConfig

NAME = "sample"
HELP = "generate text from a trained model (streams to the terminal)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser)
    parser.add_argument("--prompt", default="", help="the text to continue (default: the start of a document)")
    parser.add_argument("--num-samples", type=at_least(1), metavar="N", default=1,
                        help="how many continuations; sample i uses seed + i (default: 1)")
    add_compile(parser)
    add_config(parser, SampleConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help

    cfg = config_from(args, SampleConfig)
    lm = LanguageModel.load(args.model, device=args.device)
    if args.compile:
        print(f"compiled the decode step in {lm.compile():.1f} s", file=sys.stderr)
    out = sys.stdout
    for i in range(args.num_samples):
        sample_cfg = dataclasses.replace(cfg, seed=None if cfg.seed is None else cfg.seed + i)
        if args.num_samples > 1:
            out.write(f"--- sample {i + 1}\n")
        out.write(args.prompt)
        for piece in lm.stream(args.prompt, **sample_cfg.to_dict()):
            out.write(piece)
            out.flush()
        out.write("\n")
