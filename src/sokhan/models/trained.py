"""A trained model as a folder holds it: the network, its tokenizer and normalizer, and the config it was saved with.

`TrainedModel.load(path)` reads a model folder (or a run folder, through `checkpoints/latest`)
into the pieces every later step shares: sampling and chat (`sokhan.infer`), scoring
(`sokhan.eval`), pictures (`sokhan.inspect`) and the server all take a `TrainedModel`. The
Python API's `sokhan.LanguageModel` is one, with the verbs of the command line added.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sokhan.config import ModelConfig, NormalizerConfig
from sokhan.device import resolve_device
from sokhan.errors import SokhanError
from sokhan.models import build_model
from sokhan.models.checkpoint import load_weights, read_config, resolve_model_dir
from sokhan.models.lora import apply_lora
from sokhan.models.protocol import Capabilities
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import Tokenizer


@dataclass
class TrainedModel:
    """A trained model with its tokenizer and normalizer, as read from a model folder."""

    model: nn.Module
    tokenizer: Tokenizer
    normalize: PersianNormalizer
    config: dict[str, Any]   # the folder's config.json: model, train, normalizer, data (and lora, chat_template)
    path: Path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> TrainedModel:
        folder = resolve_model_dir(path)
        config = read_config(folder)
        model = build_model(ModelConfig.from_dict(config["model"], f"{folder}/config.json [model]"))
        if "lora" in config:  # a LoRA fine-tune checkpoint: the base weights plus adapters
            apply_lora(model, config["lora"]["targets"], config["lora"]["rank"], config["lora"]["alpha"])
        load_weights(model, folder)
        model.to(resolve_device(device)).eval()
        normalizer = NormalizerConfig.from_dict(config.get("normalizer", {}), f"{folder}/config.json [normalizer]")
        return cls(model, Tokenizer.load(folder / "tokenizer.json"), PersianNormalizer(normalizer), config, folder)

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    @property
    def family(self) -> str:
        return self.model.config.family

    @property
    def capabilities(self) -> Capabilities:
        return self.model.capabilities

    def require_masked(self, purpose: str) -> None:
        """Filling in blanks needs a model that reads both sides: a masked encoder."""
        if self.capabilities.causal:
            raise SokhanError(f"{self.path} is a '{self.family}' model, which reads left to right; {purpose} needs "
                              f"a masked LM (family bert)")

    def require_causal(self, purpose: str) -> None:
        """Sampling, chat and bits per character read text left to right: not a masked encoder."""
        if not self.capabilities.causal:
            raise SokhanError(f"{self.path} is a masked-LM encoder ({self.family}), not a left-to-right model, so "
                              f"{purpose} does not apply; try `sokhan fill {self.path} \"… <mask> …\"`")

    def require_attention(self, purpose: str) -> None:
        """Attention maps and positional encodings belong to Transformers."""
        if not self.capabilities.attention:
            raise SokhanError(f"{self.path} is a '{self.family}' model: only Transformers (gpt, bert) have {purpose}")

    def encode_prompt(self, prompt: str) -> list[int]:
        """<|bos|> + the normalized prompt, as documents began in training."""
        return [self.tokenizer.bos_id] + self.tokenizer.encode_plain(self.normalize(prompt))
