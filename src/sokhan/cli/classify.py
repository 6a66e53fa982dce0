"""`sokhan classify`: a classifier's probability for each label of a text, or of a text pair, the likeliest first."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_model_folder

NAME = "classify"
HELP = "label probabilities of a text or text pair under a classifier (made by `finetune --task classify`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser, "classifier")
    parser.add_argument("text", help="the text to classify (a pair's first text: the premise, the first question)")
    parser.add_argument("pair", nargs="?", default=None,
                        help="a pair's second text, for a classifier of pairs (the hypothesis, the second question)")


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help

    lm = LanguageModel.load(args.model, device=args.device)
    for label, p in lm.classify(args.text, args.pair):
        print(f"{p:6.1%}  {label}")
