"""`sokhan chat`: talk to a chat model in the terminal (`/help` inside lists the commands)."""

from __future__ import annotations

import argparse
import sys

from sokhan.cli.arguments import add_compile, add_config, add_model_folder, config_from
from sokhan.config import SampleConfig

NAME = "chat"
HELP = "chat with a model in the terminal (/help inside lists the commands)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser, "chat model")
    parser.add_argument("--system", default="", help="the system prompt (change it inside with /system)")
    add_compile(parser)
    add_config(parser, SampleConfig())


def run(args: argparse.Namespace) -> int:
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help
    from sokhan.infer.terminal_chat import TerminalChat

    cfg = config_from(args, SampleConfig)
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_causal("chat")
    if args.compile:
        print(f"compiled the decode step in {lm.compile():.1f} s", file=sys.stderr)
    return TerminalChat(lm, cfg, system=args.system).run()
