"""The items of `sokhan evaluate`'s tasks, read from JSONL and checked where they enter: a bad record is one
`file:line: …` error, before any model is loaded.

Multiple choice (`ChoiceItem`) comes in two forms:

* parsinlu_mc (`../shared/data/fa-sft/SOURCE.md`): `prompt` is the question, then
  ``"\\n\\nگزینه‌ها:\\n1. …\\n2. …"`` and ``"\\n\\nگزینهٔ درست را انتخاب کنید."``; `response` is
  ``"<n>. <option text>"``. The options are read back from the prompt's numbered lines, the
  answer from the response's number, and the response's text must be that option's text (so a
  prompt that was cut wrongly cannot pass silently). `listed_prompt` writes the same prompt
  from the parts, character for character.
* plain: ``{"question": str, "options": [str, …], "answer": index}``, the index counting from 0.

parsinlu_mc pads a question with fewer than four options with empty ones ("4. ", 24 of the
1,050 test items): an empty option is no choice (`ChoiceItem.choices`). An empty continuation
would have the log-likelihood of nothing, or of a lone space, and win every such item.

Reading comprehension (`ReadingItem`): ``{"prompt", "response"}`` or ``{"prompt", "answers": […]}``;
parsinlu_rc's records also carry `all_answers` (every annotator's span), which wins when present,
then `answers`, then `response`.

Classification (`LabelledText`, read by `sokhan.data.labelled` as fine-tuning reads it): a text, a
pair's second text where the classifier reads pairs, and a label, under the fields the classifier
was trained with (or others named); a label the classifier does not know is a `file:line:` error.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sokhan.config.base import json_kind
from sokhan.data.labelled import Fields, LabelledText, read_labelled
from sokhan.data.sources import iter_jsonl_objects, iter_lines
from sokhan.errors import SokhanError

OPTIONS_HEADER = "\n\nگزینه‌ها:\n"                   # parsinlu_mc: between the question and the options
INSTRUCTION = "\n\nگزینهٔ درست را انتخاب کنید."        # parsinlu_mc: after the options ("choose the right option")
RESPONSE = re.compile(r"(\d+)\.?(?:\s+(.*))?", re.DOTALL)  # "2. ۴۱" (or a bare "2")


@dataclass(frozen=True)
class ChoiceItem:
    """A question, its options as numbered (1 … n, some possibly empty) and the index of the right one."""

    question: str
    options: tuple[str, ...]
    answer: int          # index into `options`, from 0
    where: str           # file:line, for messages

    @property
    def choices(self) -> list[int]:
        """The indexes of the options that are choices: every one with text (see the module docstring)."""
        return [i for i, option in enumerate(self.options) if option.strip()]


@dataclass(frozen=True)
class ReadingItem:
    """A passage with its question (one prompt) and every answer that counts as right."""

    prompt: str
    answers: tuple[str, ...]
    where: str


def listed_prompt(question: str, options: tuple[str, ...] | list[str]) -> str:
    """The parsinlu_mc prompt of a question and its options (SOURCE.md's conversion): the inverse of parsing one."""
    listing = "\n".join(f"{n}. {option}" for n, option in enumerate(options, start=1))
    return question + OPTIONS_HEADER + listing + INSTRUCTION


def read_records(path: str | Path, limit: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file:line, object) of the first `limit` records (0: all); blank lines are no records.

    Lines are decoded as every sokhan reader decodes them (`iter_lines`, a bad byte is file:line),
    and a line that is not a JSON object is file:line too (`iter_jsonl_objects`).
    """
    p = Path(path)
    if not p.is_file():
        raise SokhanError(f"no such file: {p}")
    records = iter_jsonl_objects(p, iter_lines(p, "fail"))
    for lineno, obj in itertools.islice(records, limit or None):  # islice reads no line past the limit
        yield f"{p}:{lineno}", obj


def read_choice_items(path: str | Path, limit: int = 0) -> list[ChoiceItem]:
    return _nonempty([parse_choice(obj, where) for where, obj in read_records(path, limit)], path)


def read_reading_items(path: str | Path, limit: int = 0) -> list[ReadingItem]:
    return _nonempty([parse_reading(obj, where) for where, obj in read_records(path, limit)], path)


def read_classify_items(path: str | Path, fields: Fields, labels: list[str], limit: int = 0) -> list[LabelledText]:
    """Labelled records for a classifier of `labels`; a true label it does not know is one `file:line:` error (it
    could never be predicted: its records would all count as wrong without saying why)."""
    items = read_labelled(path, fields, limit)
    known = set(labels)
    for item in items:
        if item.label not in known:
            raise SokhanError(f"{item.where}: label '{item.label}' is not one the classifier knows "
                              f"({', '.join(labels[:10])}{', …' if len(labels) > 10 else ''})")
    return items


def _nonempty(items: list, path: str | Path) -> list:
    if not items:
        raise SokhanError(f"{path} has no records to score")
    return items


def parse_choice(obj: dict[str, Any], where: str) -> ChoiceItem:
    """A multiple-choice record in either form (module docstring)."""
    if "options" in obj:
        item = _plain_choice(obj, where)
    elif "prompt" in obj:
        item = _parsinlu_choice(obj, where)
    else:
        raise SokhanError(f"{where}: not a multiple-choice record: give 'question', 'options' and 'answer', or "
                          f"'prompt' and 'response' as parsinlu_mc does (fields: {_fields(obj)})")
    if len(item.choices) < 2:
        raise SokhanError(f"{where}: fewer than two options with text: nothing to choose between")
    if item.answer not in item.choices:
        raise SokhanError(f"{where}: the answer is option {item.answer + 1}, which is empty")
    return item


def _plain_choice(obj: dict[str, Any], where: str) -> ChoiceItem:
    question = _string(obj, "question", where)
    options = obj["options"]
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise SokhanError(f"{where}: 'options' must be a list of strings, got {json_kind(options)}")
    answer = _field(obj, "answer", where)
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise SokhanError(f"{where}: 'answer' must be the index of the right option (from 0), got {json_kind(answer)}")
    if not 0 <= answer < len(options):
        raise SokhanError(f"{where}: 'answer' {answer} is out of range: there are {len(options)} options, indexed "
                          f"from 0")
    return ChoiceItem(question, tuple(options), answer, where)


def _parsinlu_choice(obj: dict[str, Any], where: str) -> ChoiceItem:
    prompt, response = _string(obj, "prompt", where), _string(obj, "response", where)
    question, header, listing = prompt.rpartition(OPTIONS_HEADER)
    if not header:
        raise SokhanError(f"{where}: 'prompt' has no options: parsinlu_mc writes the question, "
                          f"{OPTIONS_HEADER!r} and one line '1. …' per option")
    options = []
    for n, line in enumerate(listing.removesuffix(INSTRUCTION).split("\n"), start=1):
        label = f"{n}."
        if not line.startswith(label):
            raise SokhanError(f"{where}: line {n} of the options in 'prompt' does not start with '{label}': "
                              f"{line[:40]!r}")
        options.append(line[len(label):].removeprefix(" "))
    match = RESPONSE.fullmatch(response.strip())
    if match is None:
        raise SokhanError(f"{where}: 'response' must be '<n>. <option text>', got {response[:40]!r}")
    number, text = int(match[1]), match[2]
    if not 1 <= number <= len(options):
        raise SokhanError(f"{where}: 'response' names option {number}, but the prompt lists {len(options)}")
    if text is not None and text.strip() != options[number - 1].strip():
        raise SokhanError(f"{where}: 'response' gives option {number} as {text[:40]!r}, but the prompt's option "
                          f"{number} is {options[number - 1][:40]!r}")
    return ChoiceItem(question, tuple(options), number - 1, where)


def parse_reading(obj: dict[str, Any], where: str) -> ReadingItem:
    """A reading-comprehension record: its prompt and answers (all_answers, else answers, else response)."""
    prompt = _string(obj, "prompt", where)
    for key in ("all_answers", "answers"):
        if key in obj:
            answers = obj[key]
            if (not isinstance(answers, list) or not answers
                    or not all(isinstance(a, str) and a.strip() for a in answers)):
                raise SokhanError(f"{where}: '{key}' must be a non-empty list of non-empty strings, got "
                                  f"{json_kind(answers)}")
            return ReadingItem(prompt, tuple(answers), where)
    if "response" not in obj:
        raise SokhanError(f"{where}: no answer: give 'response' or 'answers' (fields: {_fields(obj)})")
    return ReadingItem(prompt, (_string(obj, "response", where),), where)


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise SokhanError(f"{where}: no field '{key}' (fields: {_fields(obj)})")
    return obj[key]


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = _field(obj, key, where)
    if not isinstance(value, str):
        raise SokhanError(f"{where}: '{key}' must be a string, got {json_kind(value)}")
    if not value.strip():
        raise SokhanError(f"{where}: '{key}' is empty")
    return value


def _fields(obj: dict[str, Any]) -> str:
    return ", ".join(sorted(map(str, obj))) or "none"
