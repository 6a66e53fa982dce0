"""How every config is declared, built and checked: one path for flags, TOML files and saved config.json.

A config is a frozen dataclass whose fields are declared with `option(default, help, …)`:
the help sentence, the allowed choices and the allowed range live beside the default, so
the command line (`sokhan.cli`), a TOML file and a checkpoint's config.json are all read
through the same rules, and `--help` is generated from them, never written twice.

Building a config checks it (`Config.__post_init__`): the type of every field, its choices
and range, then the rules between fields (`check`). A bad value is one `SokhanError` line
naming the field. Values are layered as litgpt does, without a config framework:

    defaults in code  <-  the command's table of a TOML file  <-  flags typed on the command line

A TOML file may hold the tables of several commands (`[prepare]`, `[train]`, `[model]`, …) so
one file can describe a whole journey; a key or table that no config knows is refused, naming
the valid ones, so a misspelling never passes silently.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sokhan.errors import SokhanError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

C = TypeVar("C", bound="Config")
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.Generator.manual_seed accepts


@dataclass(frozen=True)
class Bounds:
    """An allowed range: `low`/`high` (None: unbounded), each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {self.low}"
        return f"{'<' if self.high_open else '≤'} {self.high}"


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[Any, ...] | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           factory: Any = dataclasses.MISSING, what: str | None = None) -> Any:
    """A config field: its default (or `factory` for a list), one sentence of help, the values it allows.

    `what` names the field in a bad-choice message ("unknown tokenizer kind 'x'") when the
    field's own name would read worse.
    """
    bounds = Bounds(low, high, low_open, high_open) if low is not None or high is not None else None
    metadata = {"help": help, "choices": choices, "bounds": bounds, "what": what}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldSpec:
    """What a config field accepts, from its annotation and its `option(…)` metadata."""

    name: str
    kind: type                     # bool, int, float, str, or list
    item: type | None              # the element type of a list
    optional: bool                 # None is allowed
    help: str
    choices: tuple[Any, ...] | None
    bounds: Bounds | None
    what: str

    def describe(self) -> str:
        """The type in words, for messages."""
        if self.kind is list:
            return f"a list of {TYPE_NAMES[self.item].split(' ', 1)[1]}s"
        return TYPE_NAMES[self.kind]


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@functools.cache
def field_specs(cls: type) -> dict[str, FieldSpec]:
    """Every field of a config class, with its type resolved from the annotations."""
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        tp, optional = hints[f.name], False
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional, tp = len(args) < len(typing.get_args(tp)), args[0]
        item = None
        if typing.get_origin(tp) is list:
            tp, item = list, (typing.get_args(tp) or (str,))[0]
        meta = f.metadata
        specs[f.name] = FieldSpec(f.name, tp, item, optional, meta.get("help", ""), meta.get("choices"),
                                  meta.get("bounds"), meta.get("what") or f.name)
    return specs


def _typed(spec: FieldSpec, value: Any, kind: type) -> Any:
    """`value` as a `kind` (int → float widens), or a one-line error naming the field."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SokhanError(f"{spec.name} must be a finite number, got {value}")
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise SokhanError(f"{spec.name} must be {TYPE_NAMES[kind]}, got {value!r}")


def check_value(spec: FieldSpec, value: Any) -> Any:
    """The value, checked against the field's type, choices and range (lists: every item)."""
    if value is None:
        if spec.optional:
            return None
        raise SokhanError(f"{spec.name} must be {spec.describe()}, got None")
    if spec.kind is list:
        if not isinstance(value, (list, tuple)):
            raise SokhanError(f"{spec.name} must be {spec.describe()}, got {value!r}")
        return [_check_scalar(spec, _typed(spec, v, spec.item)) for v in value]
    return _check_scalar(spec, _typed(spec, value, spec.kind))


def _check_scalar(spec: FieldSpec, value: Any) -> Any:
    if spec.choices is not None and value not in spec.choices:
        raise SokhanError(f"unknown {spec.what} '{value}'; choose from {', '.join(map(str, spec.choices))}")
    if spec.bounds is not None and value not in spec.bounds:
        raise SokhanError(f"{spec.name} must be {spec.bounds}, got {value}")
    return value


class Config:
    """Base of every config dataclass: checked when built, however it was built.

    Subclasses are `@dataclass(frozen=True)` with fields from `option(…)`, a `section` (its
    TOML table) and, where fields depend on each other, a `check` method.
    """

    section: ClassVar[str] = ""
    moved: ClassVar[dict[str, str]] = {}  # options that now live elsewhere: name → where (said if one is given)

    def __post_init__(self) -> None:
        for name, spec in field_specs(type(self)).items():
            value = check_value(spec, getattr(self, name))
            object.__setattr__(self, name, value)  # frozen: the checked value (int → float, tuple → list)
        self.check()

    def check(self) -> None:
        """Rules between fields; a subclass raises `SokhanError` naming the fields."""

    @classmethod
    def create(cls: type[C], **values: Any) -> C:
        """Build from keyword values (a subclass may first apply defaults that depend on them, as a preset)."""
        return cls(**values)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
        """Build from a saved mapping (a config.json section): every field as it was, unknown keys an error.

        The section is a file's, so anything may stand there: `null`, a list, a string, a table
        that lacks a field with no default, or a bad value. Each is one line naming `where`.
        """
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise SokhanError(f"{where} must be a table of options, got {json_kind(data)}")
        check_keys(cls, data, where)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SokhanError(f"{where} lacks {', '.join(missing)}")
        try:
            return cls(**data)
        except SokhanError as e:  # say which file the bad value is in
            raise SokhanError(f"{where}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def json_kind(value: Any) -> str:
    """What a JSON value is, in the words of the file a user reads (`null`, not `None`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    return "a list" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"


def check_out_dir(path: str | Path, what: str = "out_dir") -> None:
    """Refuse a folder to write into that cannot be one: it, or the nearest part of it that exists, is a file.

    Checked before any work, so a command stops with one line naming the file, not with
    mkdir's traceback at its first save minutes later. `what` names the option ("" for none).
    """
    p = Path(path)
    for part in (p, *p.parents):
        if part.is_dir():
            return
        if part.exists():
            why = "exists and is not a folder" if part == p else f"cannot be made: {part} is not a folder"
            raise SokhanError(f"{what} {p} {why}".lstrip())


def check_keys(cls: type[Config], keys: Mapping[str, Any] | set[str], where: str) -> None:
    unknown = sorted(set(keys) - set(field_specs(cls)))
    if unknown:
        name = unknown[0]
        if name in cls.moved:
            raise SokhanError(f"'{name}' in {where} is now {cls.moved[name]}")
        raise SokhanError(f"unknown option '{name}' in {where}; valid: {', '.join(field_specs(cls))}")


def coerce(cls: type, name: str, value: Any) -> Any:
    """A value typed on the command line (a string, or a list of them for a repeated flag) → the field's type.

    Values that are not strings (from TOML, JSON or Python) pass through: `Config` checks them.
    """
    if name not in field_specs(cls):
        check_keys(cls, {name}, cls.__name__)
    spec = field_specs(cls)[name]
    if spec.kind is list:
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else [value]
        if isinstance(value, list):  # repeated flags; "2,3" also splits when the items are not free text (numbers,
            split = spec.item is not str or bool(spec.choices)  # or names from a list: "rnn,gpt"; a stop string is)
            parts = [p for v in value for p in (v.split(",") if isinstance(v, str) and split else [v]) if p != ""]
            return [_parse(spec, p, spec.item) if isinstance(p, str) else p for p in parts]
        return value
    if isinstance(value, str) and spec.kind is not str:
        return _parse(spec, value, spec.kind)
    return value


def _parse(spec: FieldSpec, text: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float):
            return kind(text)
    except ValueError:
        raise SokhanError(f"option '{spec.name}' expects {kind.__name__}, got '{text}'") from None
    return text


def all_config_classes() -> Iterator[type[Config]]:
    """Every config class defined so far (the ones `sokhan.config` imports): their sections are the TOML tables."""
    pending = list(Config.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.section:
            yield cls


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's contents; a missing or unreadable file is one line naming `what` it is."""
    if not path.is_file():
        raise SokhanError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SokhanError(f"cannot read {what} {path}: {e}") from None


def read_table(path: str | Path, section: str) -> dict[str, Any]:
    """The `[section]` table of a TOML file ({} when it has none), after checking the file's shape.

    Every top-level entry must be a table that some sokhan config reads; other tables (of
    other commands) are ignored here, so one file can configure the whole journey.
    """
    p = Path(path)
    data = read_toml(p, "config file")
    known = sorted({cls.section for cls in all_config_classes()})
    for key, value in data.items():
        if not isinstance(value, dict):
            raise SokhanError(f"'{key}' in {p} is outside a table; put it under one of "
                              f"{', '.join(f'[{s}]' for s in known)}")
        if key not in known:
            raise SokhanError(f"unknown table [{key}] in {p}; valid: {', '.join(f'[{s}]' for s in known)}")
    return data.get(section, {})


def config_values(cls: type[Config], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  base: Config | None = None) -> dict[str, Any]:
    """The values a config will be built from: (base or nothing) <- TOML table <- overrides, keys checked.

    Overrides that are None were not given (a flag left out) and change nothing.
    """
    values: dict[str, Any] = base.to_dict() if base is not None else {}
    if path is not None:
        table = read_table(path, cls.section)
        check_keys(cls, table, f"[{cls.section}] of {path}")
        values.update({k: coerce(cls, k, v) for k, v in table.items()})
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = coerce(cls, k, v)
    return values


def load_config(cls: type[C], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                base: C | None = None) -> C:
    """Build a checked `cls` from (base or defaults) <- the TOML file's `[cls.section]` <- overrides."""
    try:
        return cls.create(**config_values(cls, path, overrides, base))
    except TypeError as e:  # a required field left out: a bug in the caller, said in one line all the same
        raise SokhanError(f"bad {cls.__name__}: {e}") from None
