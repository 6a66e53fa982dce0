"""The request bodies the server accepts: OpenAI's fields that a single local model can honour.

Models are strict (a string where a number belongs is an error, not coerced) and are
validated straight from the JSON text, so malformed JSON and wrong types both end up as one
pydantic error that `errors.from_validation` turns into a 400. Fields OpenAI defines that do
not apply here (`logprobs`, `presence_penalty`, `user`, ...) are accepted and ignored, as
OpenAI-compatible servers commonly do, so stock clients work unchanged.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sokhan.config.base import SEED_MAX, SEED_MIN
from sokhan.text.chat_template import Message


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Strict):
    include_usage: bool = False


class SamplingFields(_Strict):
    """What both endpoints share."""

    model: str | None = None  # one model per server: any name is accepted, replies carry the server's
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Field(ge=0)] = 0  # not OpenAI's; 0 = off
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported (one model, one reply per request)")
        return n

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingFields):
    prompt: str


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    # "developer" is what newer OpenAI clients call the system prompt
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None

    def to_message(self) -> Message:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return Message("system" if self.role == "developer" else self.role, content)


# OpenAI's own limit. The history is trimmed to the context newest first and each message
# encoded once (`infer.chat.chat_prompt`), so a long one costs little; the cap bounds the rest.
MAX_MESSAGES = 2048


class ChatRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None  # the newer name of max_tokens

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# --- the inspector (not OpenAI's API): what the page's "Inspect" view asks for -----------------

INSPECT_MAX_CHARS = 2000  # a request stays small; the token limit (app.INSPECT_MAX_TOKENS) comes after
NEXT_MAX_K = 50


class AttentionRequest(_Strict):
    text: Annotated[str, Field(min_length=1, max_length=INSPECT_MAX_CHARS)]  # a translator's: the English source
    layer: Annotated[int, Field(ge=0)] | None = None  # None: every layer; a number: only that one
    # a translation model only: which attention (None: "cross"), and the Persian the decoder reads (None: its own)
    kind: Literal["encoder", "decoder", "cross"] | None = None
    target: Annotated[str, Field(max_length=INSPECT_MAX_CHARS)] | None = None


class NextTokenRequest(_Strict):
    text: Annotated[str, Field(max_length=INSPECT_MAX_CHARS)] = ""  # "": what a document begins with
    k: Annotated[int, Field(ge=1, le=NEXT_MAX_K)] = 10


# --- translation (not OpenAI's API: its /v1/audio/translations takes audio) ---------------------

TRANSLATE_MAX_CHARS = 10_000  # a paragraph; refused before it is normalized or tokenized (then cut to the context)
MAX_BEAM = 16


class TranslationRequest(_Strict):
    model: str | None = None  # one model per server: any name is accepted, replies carry the server's
    text: Annotated[str, Field(max_length=TRANSLATE_MAX_CHARS)]  # "" (or blank): an empty translation
    beam: Annotated[int, Field(ge=1, le=MAX_BEAM)] | None = None  # None: 4 (the paper's), or 1 when streamed
    stream: bool = False
    too_long: Literal["truncate", "refuse"] = "truncate"
