"""`sokhan translate`: English → Persian with a translation model, one sentence or a file line by line.

With `--input FILE`, stdout gets exactly one line per input line, in order (an empty line for an
empty one), written as each batch is decoded, so a long file streams and the output pairs up
with the input. Greedy (`--beam 1`) or beam search with the paper's length penalty.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sokhan.cli.arguments import add_config, add_model_folder, config_from
from sokhan.config import TranslateConfig
from sokhan.errors import SokhanError

NAME = "translate"
HELP = "translate English to Persian with a translation model (a sentence, or --input FILE line by line)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser, "translation model")
    parser.add_argument("text", nargs="?", default=None, help="the sentence to translate")
    parser.add_argument("--input", metavar="FILE", default=None,
                        help="translate every line of a UTF-8 file (- for stdin); one output line per input line")
    add_config(parser, TranslateConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help
    from sokhan.infer.translate import SourceTooLong, translate_lines

    if (args.text is None) == (args.input is None):
        raise SokhanError("give the sentence to translate, or --input FILE (not both)")
    cfg = config_from(args, TranslateConfig)
    if args.input is not None and args.input != "-" and not Path(args.input).is_file():
        raise SokhanError(f"no such file: {args.input}")
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_translator("translating")
    if args.text is not None:
        lines, where = iter([args.text]), ""
    elif args.input == "-":
        lines, where = utf8_lines(sys.stdin.buffer, "stdin"), "stdin"
    else:
        lines, where = utf8_lines(open(args.input, "rb"), args.input), args.input  # noqa: SIM115 - closed at the end
    with warnings.catch_warnings():  # every cut source is a `warning:` line on stderr (`sokhan.cli.show_warning`)
        warnings.simplefilter("always", SourceTooLong)
        for translation in translate_lines(lm, lines, cfg, where):
            sys.stdout.write(translation + "\n")
            sys.stdout.flush()


def utf8_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """The lines of a byte stream without their line endings; a line that is not UTF-8 stops with name:line
    (skipping it would shift every later translation off its source line)."""
    with stream:
        for lineno, raw in enumerate(stream, start=1):
            try:
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise SokhanError(f"{name}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); translate "
                                  f"reads UTF-8 text") from None
