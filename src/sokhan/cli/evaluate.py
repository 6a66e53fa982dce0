"""`sokhan eval`: bits per character of a text file under a model, each family scored the way it reads.

The file is cut into documents as `sokhan prepare` cut the model's corpus and scored by the
one rule of `sokhan.eval.bpc`, so a file holding a dataset's validation documents prints the
leaderboard's figure for it. The line says what the figure divides by and which text it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sokhan.cli.arguments import add_model_folder, at_least
from sokhan.config.data import DECODE_ERROR_MODES, DOC_SPLITS
from sokhan.errors import SokhanError

NAME = "eval"
HELP = "bits per character of a text file under a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser)
    parser.add_argument("file", help="a UTF-8 text file (or .jsonl, its 'text' fields), cut into documents as "
                                     "`sokhan prepare` cuts one")
    parser.add_argument("--stride", type=at_least(1), metavar="N", default=None,
                        help="a Transformer's sliding-window stride in tokens, from 1 to its context "
                             "(default: half its context, as the leaderboard scores)")
    parser.add_argument("--doc-split", choices=DOC_SPLITS, default=None,
                        help="how the file is cut into documents: at blank lines, at every line, or the whole "
                             "file as one (default: as the model's data was prepared)")
    parser.add_argument("--on-decode-error", choices=DECODE_ERROR_MODES, default="fail",
                        help="a line that is not valid UTF-8: stop with file:line, or skip it with a warning "
                             "(default: fail)")


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help
    from sokhan.data.sources import file_documents
    from sokhan.eval.bpc import model_doc_split, model_val_fingerprint, score_documents

    path = Path(args.file)
    if not path.is_file():
        raise SokhanError(f"no such file: {path}")
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_causal("bits per character")
    doc_split = args.doc_split or model_doc_split(lm.config)
    documents = file_documents(path, doc_split=doc_split, on_decode_error=args.on_decode_error)
    score = score_documents(lm.model, lm.tokenizer, lm.normalize, documents, lm.block_size, args.stride,
                            what=str(path))
    same = " = the model's validation text" if score.fingerprint == model_val_fingerprint(lm.config) else ""
    print(f"{score.bits_per_char:.4f} bits/char  ({path}, {score.chars:,} characters in {score.documents:,} "
          f"documents after normalization, cut by {doc_split}; text {score.text}{same}; model {lm.path})")
