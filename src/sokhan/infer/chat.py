"""Replies from a chat model: the conversation rendered with its template, trimmed to fit, then sampled.

One implementation for the terminal chat, the server and the Python API. The history is
trimmed so that the prompt leaves room for the reply (at least half the context stays the
prompt's), the oldest turns after the system prompt dropped first (`ChatTemplate.prompt_ids`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from sokhan.config import SampleConfig
from sokhan.infer.sampling import StreamStats, stream_text
from sokhan.models.trained import TrainedModel
from sokhan.text.chat_template import ChatTemplate, Message


def as_messages(messages: Iterable[Message | Mapping[str, str]]) -> list[Message]:
    """Dicts with role/content (as OpenAI's API and the notebooks write them), or `Message`s."""
    return [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages]


def chat_prompt(lm: TrainedModel, messages: Iterable[Message | Mapping[str, str]], max_new_tokens: int) -> list[int]:
    """Prompt ids that ask `lm` for the next reply, the history trimmed so the reply fits the context."""
    room = max(lm.block_size - max_new_tokens, lm.block_size // 2)
    return ChatTemplate(lm.tokenizer, lm.normalize).prompt_ids(as_messages(messages), room)


def stream_reply(lm: TrainedModel, messages: Iterable[Message | Mapping[str, str]], cfg: SampleConfig,
                 stats: StreamStats | None = None, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Stream the assistant's reply to `messages` as printable text pieces."""
    lm.require_causal("chat")
    return stream_text(lm.model, lm.tokenizer, chat_prompt(lm, messages, cfg.max_new_tokens), cfg, stats, cancelled)
