"""`sokhan serve`: an OpenAI-compatible HTTP API and a web page (chat + Inspect) for one model; for a translation
model, a translate endpoint and a page that translates (Translate + Inspect)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sokhan.cli.arguments import add_config, config_from, console
from sokhan.config import ServeConfig
from sokhan.config.serve import API_KEY_ENV, check_api_key
from sokhan.errors import SokhanError

NAME = "serve"
HELP = "an OpenAI-compatible HTTP API and a web page (chat + Inspect) for a model, or translation for a translator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model: a run folder (its latest checkpoint) or a checkpoint folder")
    add_config(parser, ServeConfig())


def api_key(cfg: ServeConfig) -> str | None:
    """The key from --api-key, else --api-key-file, else $SOKHAN_API_KEY; None serves without one.

    A key on the command line is readable by every user of the machine (`ps`); a file or the
    environment is not. However it comes, an empty key is an error, never "no key".
    """
    if cfg.api_key is not None:
        return cfg.api_key
    if cfg.api_key_file is not None:
        path = Path(cfg.api_key_file)
        try:
            first = path.read_text(encoding="utf-8").partition("\n")[0].removesuffix("\r")
        except (OSError, UnicodeDecodeError) as e:
            raise SokhanError(f"cannot read the API key file {path}: {getattr(e, 'strerror', None) or e}") from None
        return check_api_key(first, f"the first line of the API key file {path}")
    key = os.environ.get(API_KEY_ENV)
    return None if key is None else check_api_key(key, f"${API_KEY_ENV}")


def run(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel  # torch and FastAPI load when the command runs, never for --help
    from sokhan.serve import default_model_name, serve

    cfg = config_from(args, ServeConfig)
    key = api_key(cfg)
    lm = LanguageModel.load(args.model, device=cfg.device)
    if not lm.capabilities.needs_source:  # a translator is served with /v1/translations and its own page
        lm.require_causal("serving a chat API")
    serve(lm, cfg.host, cfg.port, model_name=cfg.model_name or default_model_name(args.model), api_key=key,
          max_tokens_cap=cfg.max_tokens_cap, allowed_hosts=cfg.allowed_host, cors_origins=cfg.cors_origin,
          max_queued=cfg.max_queued, body_timeout=cfg.body_timeout, max_batch=cfg.max_batch,
          threads=cfg.threads, announce=console.print)
