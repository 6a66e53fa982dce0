"""The config of `sokhan serve`: where it listens and what a request may ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import Config, option
from sokhan.config.train import DEVICE_HELP, check_device


@dataclass(frozen=True)
class ServeConfig(Config):
    section: ClassVar[str] = "serve"

    host: str = option("127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network)")
    port: int = option(8000, "TCP port to listen on (0: any free port)", low=0, high=65535)
    api_key: str | None = option(None, "require 'Authorization: Bearer KEY' on every /v1 and /inspect request")
    max_tokens_cap: int | None = option(None, "the largest max_tokens a request may ask for (unset: the model's "
                                        "context)", low=1)
    model_name: str | None = option(None, "the model's id in the API (unset: the run folder's name)")
    device: str = option("auto", DEVICE_HELP)

    def check(self) -> None:
        check_device(self.device)
