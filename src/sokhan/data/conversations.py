"""Conversations for supervised fine-tuning: files, Hugging Face datasets, the embedded Persian dialogs.

`iter_conversations(spec)` yields lists of `Message`s from

* a ``.jsonl`` file, each line either ``{"messages": [{"role": …, "content": …}, …]}`` or
  ``{"prompt": …, "response": …}`` (a user turn and the assistant's answer);
* ``hf:NAME_OR_PATH[:SPLIT]`` — a Hugging Face dataset with a ``messages`` column or
  ``prompt``/``response`` columns;
* ``chatterbot`` — the Persian conversations of the pip package ``chatterbot-corpus``
  (``chatterbot_corpus/data/persian/*.yml``): each conversation is a list of turns, which
  alternate user / assistant;
* several of those joined with commas.

A bad record is a SokhanError naming file:line (or dataset row).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sokhan.data.sources import iter_hf_rows, iter_jsonl_objects, iter_lines, package_file, parse_hf
from sokhan.errors import SokhanError
from sokhan.text.chat_template import ROLES, Message, check_messages

VALID_FORMS = ("a .jsonl file (messages or prompt/response), hf:NAME_OR_PATH[:SPLIT], chatterbot, or several joined "
               "by commas")


def record_to_messages(record: dict[str, Any], where: str) -> list[Message]:
    """One JSON object / dataset row → messages; SokhanError mentioning `where` if malformed."""
    if "messages" in record:
        raw = record["messages"]
        if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
            raise SokhanError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        try:
            messages = [Message(str(m["role"]), m["content"]) for m in raw]
        except KeyError as e:
            raise SokhanError(f"{where}: a message lacks {e}") from None
    elif "prompt" in record and "response" in record:
        messages = [Message("user", record["prompt"]), Message("assistant", record["response"])]
    else:
        keys = ", ".join(sorted(map(str, record))) or "none"
        raise SokhanError(f"{where}: expected 'messages' or 'prompt' + 'response' (fields: {keys})")
    try:
        check_messages(messages)
    except SokhanError as e:
        raise SokhanError(f"{where}: {e}") from None
    if not any(m.role == "assistant" for m in messages):
        raise SokhanError(f"{where}: no assistant message to learn from")
    return messages


def _iter_jsonl(path: Path) -> Iterator[list[Message]]:
    for lineno, obj in iter_jsonl_objects(path, iter_lines(path, "fail")):
        yield record_to_messages(obj, f"{path}:{lineno}")


def _iter_hf(rest: str) -> Iterator[list[Message]]:
    name, split = parse_hf(rest)
    for i, row in enumerate(iter_hf_rows(name, split)):
        yield record_to_messages(row, f"hf:{name} row {i}")


def _iter_chatterbot() -> Iterator[list[Message]]:
    folder = package_file("chatterbot_corpus", "data/persian/conversations.yml").parent
    for path in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for turns in data.get("conversations", []):
            turns = [str(t).strip() for t in turns if str(t).strip()]
            if len(turns) >= 2:
                yield [Message(ROLES[1 + i % 2], t) for i, t in enumerate(turns)]


def iter_conversations(spec: str) -> Iterator[list[Message]]:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise SokhanError(f"empty conversation source; valid forms: {VALID_FORMS}")
    readers = []
    for part in parts:
        if part == "chatterbot":
            readers.append(_iter_chatterbot)
        elif part.startswith("hf:"):
            parse_hf(part[3:])  # check now
            readers.append(lambda rest=part[3:]: _iter_hf(rest))
        elif Path(part).is_file():
            readers.append(lambda path=Path(part): _iter_jsonl(path))
        elif Path(part).exists():
            raise SokhanError(f"not a .jsonl file: {part}")
        else:
            raise SokhanError(f"no such file, and not a known source: '{part}'; valid forms: {VALID_FORMS}")
    return (conv for make in readers for conv in make())
