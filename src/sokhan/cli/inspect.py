"""`sokhan inspect VIEW`: a picture of a model's insides, as NAME.png and a standalone NAME.html.

Views: attention (weights per layer and head; a translator's three: encoder, decoder and
cross-attention), positions (the positional encoding), next (next-token bars and each token's
surprisal), embeddings (2-D PCA), curves (training curves of one or several runs). Files go to
the run folder's inspect/ unless --out-dir says otherwise; the paths are printed, .png then
.html for each picture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sokhan.cli.arguments import add_model_folder, at_least, out_dir
from sokhan.errors import SokhanError

NAME = "inspect"
HELP = "pictures of a model's insides, PNG + standalone HTML: attention, positions, next, embeddings, curves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    views = parser.add_subparsers(dest="view", required=True, metavar="VIEW")

    def view(name: str, help: str, model: bool = True) -> argparse.ArgumentParser:
        q = views.add_parser(name, help=help, description=help)
        if model:
            add_model_folder(q)
        q.add_argument("--out-dir", type=out_dir, default=None,
                       help="where NAME.png and NAME.html go (default: the run folder's inspect/)")
        return q

    q = view("attention", "attention weights per layer and head as heatmaps (gpt, bert; seq2seq: encoder, decoder "
                          "and cross-attention)")
    q.add_argument("text", help="the text the model reads (a translator: the source sentence)")
    q.add_argument("--target", metavar="TEXT", default=None,
                   help="a translator only: the translation its decoder reads (default: its own greedy translation, "
                        "printed to stderr)")
    q.add_argument("--layer", type=at_least(0), metavar="N", default=None, help="one layer (0-based; default: all)")
    q.add_argument("--head", type=at_least(0),
                   metavar="N", default=None, help="one head (0-based; default: all, and their mean)")
    q.add_argument("--max-tokens", type=at_least(1),
                   metavar="N", default=64, help="read at most this many tokens (default: 64)")
    view("positions", "the positional encoding: matrix, curves, similarity of positions (gpt, bert, seq2seq)")
    q = view("next", "top-k next tokens, and each token's surprisal in bits (causal models)")
    q.add_argument("text", help="the text the model reads")
    q.add_argument("--top-k", type=at_least(1), metavar="N", default=10, help="next tokens to show (default: 10)")
    q.add_argument("--max-tokens", type=at_least(1), metavar="N", default=None,
                   help="read at most the last N tokens (default: the model's context)")
    q = view("embeddings", "2-D PCA of the token embeddings, the most frequent tokens named")
    q.add_argument("--top", type=at_least(1), metavar="N", default=40, help="tokens to name (default: 40)")
    q = view("curves", "loss and bits/char against steps and tokens, one or several runs", model=False)
    q.add_argument("runs", nargs="+", help="run folders (with metrics.jsonl)")


def run(args: argparse.Namespace) -> None:
    import sokhan.inspect as pictures  # torch and matplotlib load when the command runs, never for --help
    from sokhan.models.checkpoint import run_folder
    from sokhan.models.trained import TrainedModel

    if getattr(args, "text", None) is not None and not args.text.strip():
        raise SokhanError("give a text to look at")
    out = Path(args.out_dir) if args.out_dir else run_folder(args.runs[0] if args.view == "curves" else args.model) \
        / "inspect"
    if args.view == "curves":
        drawn = [pictures.plot_curves(args.runs, out)]
    else:
        lm = TrainedModel.load(args.model, device=args.device)
        if args.view == "attention" and lm.capabilities.needs_source:  # a translator: three attentions
            drawn = pictures.plot_translation_attention(lm, args.text, out, args.target, args.layer, args.head,
                                                        args.max_tokens)
            if args.target is None:
                print(f"translation: {drawn[0].extra['translation'].target}", file=sys.stderr)
        elif args.view == "attention":
            if args.target is not None:
                lm.require_translator("--target")
            drawn = [pictures.plot_attention(lm, args.text, out, args.layer, args.head, args.max_tokens)]
        elif args.view == "positions":
            drawn = [pictures.plot_positions(lm, out)]
        elif args.view == "next":
            drawn = [pictures.plot_next_token(lm, args.text, out, args.top_k, args.max_tokens)]
        else:
            drawn = [pictures.plot_embeddings(lm, out, args.top)]
    for picture in drawn:
        print(picture.png)
        print(picture.html)

