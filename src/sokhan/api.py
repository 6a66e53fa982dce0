"""The Python API, mirroring the CLI for notebooks.

    >>> from sokhan import LanguageModel
    >>> lm = LanguageModel.load("runs/demo/pretrain")
    >>> print(lm.generate("الا یا ایها الساقی", max_new_tokens=50, seed=0))
    >>> for piece in lm.stream("دل"): print(piece, end="")
    >>> lm.bits_per_char("متنی برای سنجش")
    >>> lm.chat([{"role": "user", "content": "سلام"}], max_new_tokens=40)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sokhan.errors import SokhanError
from sokhan.eval.bpc import bits_per_char, sequence_nll
from sokhan.infer.chat import ChatTemplate, Message
from sokhan.infer.sampling import SampleConfig, stream_text
from sokhan.models import build_model, model_device
from sokhan.models.config import ModelConfig
from sokhan.text.normalize import NormalizerConfig, PersianNormalizer
from sokhan.text.tokenizers import Tokenizer
from sokhan.train.checkpoint import load_weights, read_config, resolve_model_dir
from sokhan.train.engine import resolve_device
from sokhan.train.lora import apply_lora


@dataclass
class LanguageModel:
    """A trained model with its tokenizer and normalizer, ready to sample from and score text."""

    model: nn.Module
    tokenizer: Tokenizer
    normalize: PersianNormalizer
    config: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> LanguageModel:
        folder = resolve_model_dir(path)
        config = read_config(folder)
        model = build_model(ModelConfig.from_dict(config["model"]))
        if "lora" in config:  # a LoRA fine-tune checkpoint: the base weights plus adapters
            apply_lora(model, config["lora"]["targets"], config["lora"]["rank"], config["lora"]["alpha"])
        load_weights(model, folder)
        model.to(resolve_device(device)).eval()
        normalizer = PersianNormalizer(NormalizerConfig(**config.get("normalizer", {})))
        return cls(model, Tokenizer.load(folder / "tokenizer.json"), normalizer, config, folder)

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    @property
    def family(self) -> str:
        return self.model.config.family

    def require_family(self, families: str | tuple[str, ...], purpose: str) -> None:
        """One clear error when a model of another family is handed to a command that cannot use it."""
        families = (families,) if isinstance(families, str) else families
        if self.family not in families:
            raise SokhanError(f"{self.path} is a '{self.family}' model; {purpose} needs {' or '.join(families)}")

    def require_causal(self, purpose: str) -> None:
        """Sampling, chat and bits per character read text left to right: not a masked encoder."""
        if self.family == "bert":
            raise SokhanError(f"{self.path} is a masked-LM encoder (bert), not a left-to-right model, so {purpose} "
                              f"does not apply; try `sokhan fill {self.path} \"… <mask> …\"`")

    def encode_prompt(self, prompt: str) -> list[int]:
        """<|bos|> + the normalized prompt, as documents began in training."""
        return [self.tokenizer.bos_id] + self.tokenizer.encode_plain(self.normalize(prompt))

    def stream(self, prompt: str = "", **sample: Any) -> Iterator[str]:
        self.require_causal("sampling")
        return stream_text(self.model, self.tokenizer, self.encode_prompt(prompt), SampleConfig(**sample))

    def generate(self, prompt: str = "", **sample: Any) -> str:
        return "".join(self.stream(prompt, **sample))

    @property
    def chat_template(self) -> ChatTemplate:
        return ChatTemplate(self.tokenizer, self.normalize)

    def chat_prompt(self, messages: list[Message] | list[dict], max_new_tokens: int) -> list[int]:
        """Prompt ids for the next reply, the history trimmed so the reply fits the context."""
        msgs = [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages]
        room = max(self.block_size - max_new_tokens, self.block_size // 2)
        return self.chat_template.prompt_ids(msgs, room)

    def stream_chat(self, messages: list[Message] | list[dict], **sample: Any) -> Iterator[str]:
        """Stream the assistant's reply to `messages` (dicts with role/content, or Message)."""
        self.require_causal("chat")
        cfg = SampleConfig(**sample)
        return stream_text(self.model, self.tokenizer, self.chat_prompt(messages, cfg.max_new_tokens), cfg)

    def chat(self, messages: list[Message] | list[dict], **sample: Any) -> str:
        return "".join(self.stream_chat(messages, **sample))

    def bits_per_char(self, text: str, stride: int | None = None) -> float:
        """Bits per character of `text` (normalized as in training, scored as one document)."""
        self.require_causal("bits per character")
        text = self.normalize(text)
        ids = [self.tokenizer.bos_id] + self.tokenizer.encode_plain(text) + [self.tokenizer.eos_id]
        nll, _ = sequence_nll(self.model, ids, self.block_size, stride)
        return bits_per_char(nll, len(text) + 1)  # +1: the end of the document, as in training

    @torch.inference_mode()
    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, float]]:
        self.require_causal("next-token probabilities")
        ids = self.encode_prompt(prompt)[-self.block_size:]
        device = model_device(self.model)
        logits = self.model(torch.tensor([ids], device=device), last_only=True)[0][0, -1]
        probs, top = torch.softmax(logits.float(), -1).topk(k)
        return [(self.tokenizer.decode([int(i)]), float(p)) for p, i in zip(probs, top)]
