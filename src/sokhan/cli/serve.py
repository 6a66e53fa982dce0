"""`sokhan serve`: an OpenAI-compatible HTTP API and a web page (chat + Inspect) for one model."""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import ServeConfig

NAME = "serve"
HELP = "an OpenAI-compatible HTTP API and a web page (chat + Inspect) for a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model: a run folder (its latest checkpoint) or a checkpoint folder")
    add_config(parser, ServeConfig())


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch and FastAPI load when the command runs, never for --help
    from sokhan.serve import default_model_name, serve

    cfg = config_from(args, ServeConfig)
    lm = LanguageModel.load(args.model, device=cfg.device)
    lm.require_causal("serving a chat API")
    serve(lm, cfg.host, cfg.port, model_name=cfg.model_name or default_model_name(args.model), api_key=cfg.api_key,
          max_tokens_cap=cfg.max_tokens_cap, announce=console.print)
