"""Labelled texts and text pairs for classification, read from JSONL and checked where they enter.

Each line is an object holding a text, optionally a second text (a pair: premise and hypothesis,
two questions) and a label, under fields the caller names (`sokhan finetune --task classify
--text-field … --pair-field … --label-field …`; `sokhan evaluate --task classify` reads the fields
the model was trained with). A label is a string or an integer (ParsiNLU's sentiment scale is
−3…3) and is kept as its text. A bad record is one `file:line:` error naming the field.

The labels of a data set are the ones it holds, in one stable order (`label_order`): numerically
when every label is an integer, else by their text; the order is the classifier head's, saved
with the model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sokhan.config.base import json_kind
from sokhan.data.sources import iter_jsonl_objects, iter_lines
from sokhan.errors import SokhanError

INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Fields:
    """Which field of a record holds what; `pair` empty: single texts."""

    text: str
    pair: str
    label: str


@dataclass(frozen=True)
class LabelledText:
    text: str
    pair: str | None
    label: str
    where: str  # file:line, for messages


def read_labelled(path: str | Path, fields: Fields, limit: int = 0) -> list[LabelledText]:
    """The first `limit` records of a JSONL file (0: all), every one checked; blank lines are no records."""
    p = Path(path)
    if not p.is_file():
        raise SokhanError(f"no such file: {p}")
    records = iter_jsonl_objects(p, iter_lines(p, "fail"))
    items = [parse_labelled(obj, f"{p}:{lineno}", fields) for lineno, obj in itertools.islice(records, limit or None)]
    if not items:
        raise SokhanError(f"{p} has no records")
    return items


def parse_labelled(obj: dict[str, Any], where: str, fields: Fields) -> LabelledText:
    text = _text(obj, fields.text, where, "--text-field")
    pair = _text(obj, fields.pair, where, "--pair-field") if fields.pair else None
    return LabelledText(text, pair, label_text(_field(obj, fields.label, where, "--label-field"), where, fields.label),
                        where)


def label_text(value: Any, where: str, field: str) -> str:
    """A label as the text it is kept as: a string as it is, an integer in decimal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SokhanError(f"{where}: '{field}' must be a label (a string or an integer), got {json_kind(value)}")
    if not value.strip():
        raise SokhanError(f"{where}: '{field}' is empty")
    return value


def label_order(labels: Iterable[str]) -> list[str]:
    """The distinct labels, sorted: numerically when every one is an integer (−3 < −1 < 2 < 10), else by text."""
    distinct = set(labels)
    if all(INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))
    return sorted(distinct)


def _field(obj: dict[str, Any], key: str, where: str, flag: str) -> Any:
    if key not in obj:
        keys = ", ".join(sorted(map(str, obj))) or "none"
        raise SokhanError(f"{where}: no field '{key}' (fields: {keys}); choose one with {flag}")
    return obj[key]


def _text(obj: dict[str, Any], key: str, where: str, flag: str) -> str:
    value = _field(obj, key, where, flag)
    if not isinstance(value, str):
        raise SokhanError(f"{where}: '{key}' must be a string, got {json_kind(value)}")
    if not value.strip():
        raise SokhanError(f"{where}: '{key}' is empty")
    return value
