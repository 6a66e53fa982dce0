"""The config of `sokhan serve`: where it listens, who may call it and what a request may ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from sokhan.config.base import Config, option
from sokhan.config.train import DEVICE_HELP, check_device
from sokhan.errors import SokhanError

API_KEY_ENV = "SOKHAN_API_KEY"  # where the key may come from instead of argv, which every user of the machine can read
MAX_QUEUED = 64  # requests waiting for the model before more are refused with 429: one per client of a 64-client load
MAX_BATCH = 16  # replies decoded together: on a CPU, 16 one-token rows cost about what one does (infer/batching.py)
BODY_TIMEOUT = 30.0  # seconds a client has to send its whole request body


@dataclass(frozen=True)
class ServeConfig(Config):
    section: ClassVar[str] = "serve"

    host: str = option("127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network)")
    port: int = option(8000, "TCP port to listen on (0: any free port)", low=0, high=65535)
    api_key: str | None = option(None, "require 'Authorization: Bearer KEY' on every /v1 and /inspect request "
                                 "(other users of this machine can read it in the process list: prefer "
                                 f"--api-key-file or ${API_KEY_ENV}, which is read when neither is given)")
    api_key_file: str | None = option(None, "a file whose first line is the API key (see --api-key)")
    allowed_host: list[str] = option(help="a host name clients may call this server by, besides IP addresses, "
                                     "localhost and --host (repeatable; '*': any, e.g. behind a proxy that checks "
                                     "it); other names are refused, which stops DNS rebinding", factory=list)
    cors_origin: list[str] = option(help="a web origin (scheme://host[:port]) whose pages may call the API from a "
                                    "browser (repeatable; '*': any). Without one, only the server's own page may",
                                    factory=list)
    max_queued: int = option(MAX_QUEUED, "the most requests that may wait for the model; more are answered 429 "
                             "with Retry-After", low=1)
    max_batch: int = option(MAX_BATCH, "the most replies a GPT decodes together, one token each per step "
                            "(continuous batching; 1: one request at a time, as other families always are)", low=1)
    body_timeout: float = option(BODY_TIMEOUT, "seconds a client has to send its request body (408 after)", low=0,
                                 low_open=True)
    max_tokens_cap: int | None = option(None, "the largest max_tokens a request may ask for (unset: the model's "
                                        "context)", low=1)
    model_name: str | None = option(None, "the model's id in the API (unset: the run folder's name)")
    device: str = option("auto", DEVICE_HELP)
    threads: int = option(0, "CPU threads the model computes with (0: torch's default less one, at least 1, so that "
                          "the HTTP side keeps a core; unless OMP_NUM_THREADS is set)", low=0)

    def check(self) -> None:
        check_device(self.device)
        if self.api_key is not None:
            check_api_key(self.api_key, "api_key")
            if self.api_key_file is not None:
                raise SokhanError("give api_key or api_key_file, not both")
        for origin in self.cors_origin:
            check_origin(origin)
        for host in self.allowed_host:
            if host != "*" and (not host or any(c in host for c in "/:@ ")):
                raise SokhanError(f"allowed_host '{host}' is not a host name (give the name alone: no scheme, "
                                  "port or path)")


def check_api_key(key: str, where: str) -> str:
    """The key, if a client can send it: an empty one would switch authentication off without a word.

    Header values lose their outer spaces on the way and cannot hold control characters, so
    a key with either could never match; any other character is fine (compared as UTF-8).
    """
    if not key:
        raise SokhanError(f"{where} is empty: an empty API key would let anyone in; leave it out to serve without "
                          "one")
    if key != key.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise SokhanError(f"{where}: an API key cannot begin or end with a space or hold control characters (an "
                          "HTTP header cannot carry them)")
    return key


def check_origin(origin: str) -> None:
    """A CORS origin as browsers send it: scheme and host (and port), nothing after."""
    if origin == "*":
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise SokhanError(f"cors_origin '{origin}' is not a web origin: write scheme://host[:port], e.g. "
                          "http://localhost:3000")
