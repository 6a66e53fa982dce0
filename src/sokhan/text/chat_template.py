"""The chat template: one implementation used by fine-tuning, the terminal chat and the server.

A conversation is rendered with the role tokens the tokenizer reserved from the start:

    <|bos|><|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|><|user|>…<|end|><|assistant|>

Each message is its role token, its (normalized) content, then `<|end|>`. To ask the model
for a reply, the rendering ends with `<|assistant|>`; the model writes the reply and closes
it with `<|end|>`, where generation stops. Training computes the loss on the assistant's
content and its `<|end|>` only (`labels` are IGNORE_INDEX elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sokhan.constants import IGNORE_INDEX
from sokhan.errors import SokhanError
from sokhan.text.tokenizers import Tokenizer

ROLES = ("system", "user", "assistant")
TEMPLATE_NAME = "sokhan-chat-v1"  # saved in a fine-tuned model's config.json


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def as_messages(messages: Iterable[Message | Mapping[str, str]]) -> list[Message]:
    """Dicts with role/content (as OpenAI's API and the notebooks write them), or `Message`s."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise SokhanError(f"message {i}: give a role and a content, e.g. {{\"role\": \"user\", "
                                  f"\"content\": \"سلام\"}}")
            m = Message(m["role"], m["content"])
        out.append(m)
    return out


def check_messages(messages: Sequence[Message], need_reply: bool = False) -> None:
    """Roles known, contents strings, a system message only first; raise SokhanError otherwise."""
    if not messages:
        raise SokhanError("a conversation needs at least one message")
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise SokhanError(f"message {i}: unknown role '{m.role}' (use {', '.join(ROLES)})")
        if not isinstance(m.content, str):
            raise SokhanError(f"message {i}: content must be a string")
        if m.role == "system" and i != 0:
            raise SokhanError(f"message {i}: a system message may only come first")
    if need_reply and messages[-1].role == "assistant":
        raise SokhanError("the last message is the assistant's; nothing to reply to")


class ChatTemplate:
    def __init__(self, tokenizer: Tokenizer, normalize: Callable[[str], str] = lambda s: s):
        self.tokenizer, self.normalize = tokenizer, normalize
        self.role_ids = {role: tokenizer.token_id(f"<|{role}|>") for role in ROLES}
        self.end_id = tokenizer.token_id("<|end|>")

    def encode(self, messages: Iterable[Message | Mapping[str, str]], add_generation_prompt: bool = False,
               ) -> tuple[list[int], list[int]]:
        """(ids, labels): labels hold the ids of assistant content + <|end|>, IGNORE_INDEX elsewhere.
        Messages are `Message`s or dicts with role and content.

        labels[i] is the target *at* position i; shifting by one for next-token prediction
        is the training task's job.
        """
        messages = as_messages(messages)
        check_messages(messages)
        ids, labels = [self.tokenizer.bos_id], [IGNORE_INDEX]
        for m in messages:
            content = self.tokenizer.encode_plain(self.normalize(m.content)) + [self.end_id]
            ids += [self.role_ids[m.role]] + content
            labels += [IGNORE_INDEX] + (content if m.role == "assistant" else [IGNORE_INDEX] * len(content))
        if add_generation_prompt:
            ids.append(self.role_ids["assistant"])
            labels.append(IGNORE_INDEX)
        return ids, labels
