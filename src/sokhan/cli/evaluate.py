"""`sokhan eval`: bits per character of any UTF-8 text file under a model, each family scored the way it reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from sokhan.cli.arguments import add_model_folder, at_least
from sokhan.errors import SokhanError

NAME = "eval"
HELP = "bits per character of a text file under a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser)
    parser.add_argument("file", help="a UTF-8 text file, scored as one document")
    parser.add_argument("--stride", type=at_least(1), metavar="N", default=None,
                        help="a Transformer's sliding-window stride in tokens (default: half its context)")


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help

    path = Path(args.file)
    if not path.is_file():
        raise SokhanError(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SokhanError(f"{path} is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise SokhanError(f"{path} is empty")
    lm = LanguageModel.load(args.model, device=args.device)
    bpc = lm.bits_per_char(text, stride=args.stride)
    print(f"{bpc:.4f} bits/char  ({path}, {len(text):,} characters, model {lm.path})")
