"""Replies from a chat model: the conversation rendered with its template, trimmed to fit, then sampled.

One implementation for the terminal chat, the server and the Python API. The history is
trimmed so that the prompt leaves room for the reply (at least half the context stays the
prompt's), the oldest turns after the system prompt dropped first.

A server reads conversations from strangers, so the trimming costs what the kept prompt
costs, not what was sent: the turns are encoded once each, newest first, until the room is
full, and a message that cannot fit by its length alone is never normalized or encoded
(`surely_longer`). The caller can stop it between messages (`cancelled`) when its client leaves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache

from sokhan.config import SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.sampling import StreamStats, stream_text
from sokhan.models.trained import TrainedModel
from sokhan.text.chat_template import ChatTemplate, Message, as_messages, check_messages
from sokhan.text.tokenizers import BYTE_TOKENS, SPECIAL_TOKENS, Tokenizer

# Characters normalization never removes nor merges: letters and digits, less the kashida
# (removed) and the Hangul vowel and final jamo (NFC merges them into the syllable before them;
# every other composition NFC makes joins a letter with a mark). Whitespace runs collapse,
# ZWNJ, marks and invisible characters may go: those are not counted.
SURVIVING = re.compile(r"[^\W_\u0640\u1160-\u11ff]+")


class ContextExceeded(SokhanError):
    """The conversation's system prompt, or its last message, cannot fit the context (a server says
    `context_length_exceeded`, as OpenAI's API does)."""


class Cancelled(Exception):
    """`chat_prompt` stopped because `cancelled()` said the caller no longer wants the prompt."""


@lru_cache(maxsize=8)
def longest_token(tokenizer: Tokenizer) -> int:
    """The most characters of text one token can stand for.

    A byte-level BPE token spells its bytes with one character each, so its length counts
    bytes, and a character takes at least one byte; a character tokenizer's token is one
    character, or one byte of an unseen one. Special tokens never come out of user text
    (`encode_plain`).
    """
    fallback = tokenizer.kind == "char"
    vocab = tokenizer.hf.get_vocab(with_added_tokens=False)
    return max(1 if fallback and token in BYTE_TOKENS else len(token)
               for token in vocab if token not in SPECIAL_TOKENS)


def surely_longer(tokenizer: Tokenizer, text: str, tokens: int) -> bool:
    """Whether `text`, normalized and encoded, certainly takes more than `tokens` tokens.

    Decided without normalizing it, so that a megabyte that cannot fit is refused in a
    millisecond: normalization keeps every `SURVIVING` character, and no token stands for more
    than `longest_token` characters. A text that might fit says False (encode it to know).
    """
    limit = tokens * longest_token(tokenizer)
    if len(text) <= limit:
        return False
    count = 0
    for run in SURVIVING.finditer(text):
        count += run.end() - run.start()
        if count > limit:
            return True
    return False


def chat_prompt(lm: TrainedModel, messages: Iterable[Message | Mapping[str, str]], max_new_tokens: int,
                cancelled: Callable[[], bool] = lambda: False) -> list[int]:
    """Prompt ids that ask `lm` for the next reply, the history trimmed so the reply fits the context.

    The ids are `ChatTemplate.encode(system + the newest turns that fit, add_generation_prompt=True)`;
    each message is encoded at most once. Raises `Cancelled` as soon as `cancelled()` is true.
    """
    room = max(lm.block_size - max_new_tokens, lm.block_size // 2)
    messages = as_messages(messages)
    check_messages(messages, need_reply=True)
    template = ChatTemplate(lm.tokenizer, lm.normalize)
    system = messages[:1] if messages[0].role == "system" else []
    turns = messages[len(system):]

    def message_ids(m: Message) -> list[int] | None:
        """The ids one message adds to a rendering (its role, content, <|end|>), or None if it cannot fit."""
        if cancelled():
            raise Cancelled
        if surely_longer(lm.tokenizer, m.content, room - used - 2):  # 2: its role and <|end|>
            return None
        ids = template.encode([m])[0][1:]  # without the <|bos|> that opens every rendering
        return ids if used + len(ids) <= room else None

    used = 2  # <|bos|> and the closing <|assistant|>
    head = [lm.tokenizer.bos_id]
    for m in system:
        ids = message_ids(m)
        if ids is None:
            raise ContextExceeded(f"the system prompt alone is more than the {room} tokens that fit")
        head += ids
        used += len(ids)
    kept: list[list[int]] = []
    for m in reversed(turns):
        ids = message_ids(m)
        if ids is None:
            break
        kept.append(ids)
        used += len(ids)
    if turns and not kept:
        raise ContextExceeded(f"the last message {'with the system prompt ' if system else ''}is more than the "
                              f"{room} tokens that fit")
    return head + [i for ids in reversed(kept) for i in ids] + [template.role_ids["assistant"]]


def stream_reply(lm: TrainedModel, messages: Iterable[Message | Mapping[str, str]], cfg: SampleConfig,
                 stats: StreamStats | None = None, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Stream the assistant's reply to `messages` as printable text pieces."""
    lm.require_causal("chat")
    return stream_text(lm.model, lm.tokenizer, chat_prompt(lm, messages, cfg.max_new_tokens), cfg, stats, cancelled)
