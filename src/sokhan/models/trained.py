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

from sokhan.config import ClassifierConfig, LoraConfig, ModelConfig, NormalizerConfig
from sokhan.device import resolve_device
from sokhan.errors import SokhanError
from sokhan.models import build_model
from sokhan.models.checkpoint import CONFIG, TOKENIZER, load_weights, read_config, resolve_model_dir
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
    config: dict[str, Any]   # the folder's config.json: model, train, normalizer, data (and lora, chat_template,
                             # classifier)
    path: Path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> TrainedModel:
        """Read a model folder, every file checked before the next is trusted and before any weight is
        allocated: config.json's sections are built into checked configs, the tokenizer must fit the
        model's vocabulary, and each tensor of the weights must fit the model the config describes."""
        folder = resolve_model_dir(path)
        config = read_config(folder)
        where = str(folder / CONFIG)
        model_config = ModelConfig.from_dict(config["model"], f"{where} [model]")
        normalizer = NormalizerConfig.from_dict(config.get("normalizer", {}), f"{where} [normalizer]")
        lora = LoraConfig.from_dict(config["lora"], f"{where} [lora]") if "lora" in config else None
        classifier = (ClassifierConfig.from_dict(config["classifier"], f"{where} [classifier]")
                      if "classifier" in config else None)
        tokenizer = Tokenizer.load(folder / TOKENIZER)
        check_vocabulary(tokenizer, model_config, folder)
        try:
            model = build_model(model_config, classifier)
        except SokhanError as e:
            raise SokhanError(f"{where}: {e}") from None
        if lora is not None:  # a LoRA fine-tune checkpoint: the base weights plus adapters
            apply_lora(model, lora.targets, lora.rank, lora.alpha)
        load_weights(model, folder)
        model.to(resolve_device(device)).eval()
        return cls(model, tokenizer, PersianNormalizer(normalizer), config, folder)

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    @property
    def family(self) -> str:
        return self.model.config.family

    @property
    def capabilities(self) -> Capabilities:
        return self.model.capabilities

    @property
    def labels(self) -> list[str]:
        """A classifier's labels, in the order of its head's outputs (no labels: not a classifier)."""
        return list(self.model.labels) if self.capabilities.classifies else []

    def require_classifier(self, purpose: str) -> None:
        """Label probabilities need a classification head: a model made by `sokhan finetune --task classify`."""
        if not self.capabilities.classifies:
            raise SokhanError(f"{self.path} is a '{self.family}' language model, not a classifier; {purpose} needs one "
                              f"made by `sokhan finetune --task classify`")

    def _refuse_classifier(self, purpose: str) -> None:
        if self.capabilities.classifies:
            shown = ", ".join(self.labels[:5]) + (", …" if len(self.labels) > 5 else "")
            raise SokhanError(f"{self.path} is a classifier (labels {shown}): it gives label probabilities, not text, "
                              f"so {purpose} does not apply; try `sokhan classify {self.path} \"…\"`")

    def require_masked(self, purpose: str) -> None:
        """Filling in blanks needs a model that reads both sides: a masked encoder."""
        self._refuse_classifier(purpose)
        if self.capabilities.causal:
            raise SokhanError(f"{self.path} is a '{self.family}' model, which reads left to right; {purpose} needs "
                              f"a masked LM (family bert)")

    def require_causal(self, purpose: str) -> None:
        """Sampling, chat and bits per character read text left to right: not a masked encoder, nor a
        translator (whose decoder reads left to right, but only given a source sentence), nor a classifier."""
        self._refuse_classifier(purpose)
        if self.capabilities.needs_source:
            raise SokhanError(f"{self.path} is a translation model (seq2seq): it writes Persian for an English "
                              f"sentence, so {purpose} does not apply; try `sokhan translate {self.path} \"…\"`")
        if not self.capabilities.causal:
            raise SokhanError(f"{self.path} is a masked-LM encoder ({self.family}), not a left-to-right model, so "
                              f"{purpose} does not apply; try `sokhan fill {self.path} \"… <mask> …\"`")

    def require_translator(self, purpose: str) -> None:
        """Translating needs an encoder–decoder: a language model has no source to condition on."""
        self._refuse_classifier(purpose)
        if not self.capabilities.needs_source:
            raise SokhanError(f"{self.path} is a '{self.family}' language model, not a translator; {purpose} needs "
                              f"a seq2seq model (train one with `sokhan translate-train`)")

    def require_attention(self, purpose: str) -> None:
        """Attention maps and positional encodings belong to Transformers."""
        if not self.capabilities.attention:
            raise SokhanError(f"{self.path} is a '{self.family}' model: only Transformers (gpt, bert, seq2seq) have "
                              f"{purpose}")

    def encode_prompt(self, prompt: str) -> list[int]:
        """<|bos|> + the normalized prompt, as documents began in training."""
        return [self.tokenizer.bos_id] + self.tokenizer.encode_plain(self.normalize(prompt))


def check_vocabulary(tokenizer: Tokenizer, config: ModelConfig, folder: Path) -> None:
    """Every id the tokenizer can produce, special ones included, must have a row in the model's embedding
    and output layer (a tokenizer.json copied from another model would otherwise make every request an
    IndexError, or, inside the vocabulary, garbage). A model may have more rows than its tokenizer has
    tokens (a vocabulary padded to a multiple of 64)."""
    highest = max(tokenizer.hf.get_vocab(with_added_tokens=True).values())
    if highest >= config.vocab_size:
        raise SokhanError(f"{folder / TOKENIZER} does not belong to this model: it has {tokenizer.vocab_size} tokens "
                          f"(ids up to {highest}), the model's vocabulary has {config.vocab_size} rows; put back the "
                          f"tokenizer.json it was trained with")
