"""`sokhan fill`: a masked LM's top guesses, with probabilities, for each <mask> in a sentence."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_model_folder, at_least

NAME = "fill"
HELP = "a BERT-style model's top guesses for each <mask> in a sentence"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser, "masked LM (family bert)")
    parser.add_argument("text", help='text with one or more <mask>, e.g. "دل <mask> است"')
    parser.add_argument("--top-k", type=at_least(1),
                        metavar="N", default=5, help="candidates to print per mask (default: 5)")


def run(args: argparse.Namespace) -> None:
    from sokhan.infer.fill import fill_masks  # torch loads when the command runs, never for --help
    from sokhan.models.trained import TrainedModel

    lm = TrainedModel.load(args.model, device=args.device)
    for i, candidates in enumerate(fill_masks(lm, args.text, args.top_k), start=1):
        print(f"<mask> {i}:")
        for text, p in candidates:
            print(f"  {p:6.1%}  {text}")
