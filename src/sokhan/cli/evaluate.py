"""`sokhan eval`: bits per character of a text file under a model, each family scored the way it reads.

The file is cut into documents as `sokhan prepare` cut the model's corpus and scored by the
one rule of `sokhan.eval.bpc`, so a file holding a dataset's validation documents prints the
leaderboard's figure for it. The line says what the figure divides by and which text it was.

A translation model is scored on what it is for: `--source FILE --reference FILE` translates
the source lines and prints corpus BLEU and chrF++ against the references (sacrebleu).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sokhan.cli.arguments import add_model_folder, at_least
from sokhan.config.data import DECODE_ERROR_MODES, DOC_SPLITS
from sokhan.errors import SokhanError

NAME = "eval"
HELP = "bits per character of a text file under a model; BLEU and chrF++ of a translation model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser)
    parser.add_argument("file", nargs="?", default=None,
                        help="a UTF-8 text file (or .jsonl, its 'text' fields), cut into documents as "
                             "`sokhan prepare` cuts one")
    translation = parser.add_argument_group("a translation model: BLEU and chrF++ (sacrebleu) instead of bits/char")
    translation.add_argument("--source", metavar="FILE", default=None, help="source sentences, one per line")
    translation.add_argument("--reference", metavar="FILE", default=None,
                             help="their reference translations, line-aligned with --source")
    translation.add_argument("--beam", type=at_least(1), metavar="N", default=4, help="beam size (default: 4)")
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
    if args.source is not None or args.reference is not None:
        return translation_scores(args)
    if args.file is None:
        raise SokhanError("give a text file to score (or --source and --reference for a translation model)")
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


def translation_scores(args: argparse.Namespace) -> None:
    """Translate --source and score it against --reference: corpus BLEU and chrF++, with sacrebleu's signatures.

    The references are normalized as the model's Persian training text was (Arabic ي and ك → ی and
    ک, digits, spacing), so a translation is not marked down for the spelling its training data
    taught it; the line says so."""
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help
    from sokhan.config import TranslateConfig
    from sokhan.data.sources import iter_lines
    from sokhan.eval.translation import seen_in_training
    from sokhan.eval.translation import translation_scores as scores
    from sokhan.infer.translate import translate_lines

    if args.file is not None or args.source is None or args.reference is None:
        raise SokhanError("a translation model is scored with --source FILE --reference FILE (and no text file)")
    paths = [Path(args.source), Path(args.reference)]
    for path in paths:
        if not path.is_file():
            raise SokhanError(f"no such file: {path}")
    sources, references = ([line for _, line in iter_lines(path, args.on_decode_error)] for path in paths)
    if len(sources) != len(references):
        raise SokhanError(f"{paths[0]} has {len(sources):,} lines but {paths[1]} has {len(references):,}: they must "
                          f"be line-aligned")
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_translator("BLEU and chrF++ of its translations")
    hypotheses = list(translate_lines(lm, sources, TranslateConfig(beam=args.beam), str(paths[0])))
    score = scores(hypotheses, [lm.normalize(r).strip() for r in references])
    print(f"{score}  ({paths[0]} → {paths[1]}, beam {args.beam}, references normalized as the model's training "
          f"targets; model {lm.path})")
    print(f"  {score.bleu_signature}\n  {score.chrf_signature}")
    seen = seen_in_training(lm.config, lm.path, sources)
    if seen is None:
        print("  the model's training data was not found: whether it saw these sentences is unchecked")
    elif seen[0]:
        print(f"  warning: {seen[0]:,} of these {len(sources):,} source sentences are in the model's training data "
              f"({seen[1]}): a score on them measures memory, not translation")
    else:
        print(f"  none of these source sentences is in the model's training data ({seen[1]})")
