"""Config dataclasses: defaults in code, optionally a TOML file, then `--key value` overrides.

Every concern (model, training, data preparation, sampling) has its own dataclass. They
all load the same way, so a recipe is reproducible from one file plus the overrides that
were typed on the command line (litgpt's approach, without a config framework).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from sokhan.errors import SokhanError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

T = TypeVar("T")


def field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints[field.name]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] -> X
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0]
    return tp


def coerce(cls: type, name: str, value: Any) -> Any:
    """Turn a string from the command line (or a TOML value) into the field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise SokhanError(f"unknown option '{name}' for {cls.__name__}; known: {', '.join(sorted(fields))}")
    tp = field_type(cls, fields[name])
    if typing.get_origin(tp) is list and isinstance(value, str):  # from a TOML string or one flag
        value = json.loads(value) if value.startswith("[") else [value]
    if typing.get_origin(tp) is list and isinstance(value, list):  # repeated flags; "2,3" also splits
        item = (typing.get_args(tp) or (str,))[0]
        parts = [p for v in value for p in (v.split(",") if isinstance(v, str) and item is not str else [v]) if p != ""]
        try:
            return [item(p) for p in parts]
        except ValueError:
            raise SokhanError(f"option '{name}' expects a list of {item.__name__}, got {value}") from None
    if value is None or not isinstance(value, str):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if tp is bool:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp in (int, float):
            return tp(value)
    except ValueError:
        raise SokhanError(f"option '{name}' expects {getattr(tp, '__name__', tp)}, got '{value}'") from None
    return value


def read_section(path: str | Path, section: str | None) -> dict[str, Any]:
    """The `[section]` table of a TOML file, or its top level when it has no such table."""
    p = Path(path)
    if not p.is_file():
        raise SokhanError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SokhanError(f"cannot read config {p}: {e}") from None
    if section and isinstance(data.get(section), dict):
        return data[section]
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                base: T | None = None) -> T:
    """Build a `cls` from (base or defaults) <- TOML file <- overrides, validating every key.

    A TOML file may hold the fields at top level, or under a table named after the
    dataclass's `section` class attribute (e.g. `[model]`), so one file can configure
    several concerns.
    """
    values: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if path is not None:
        names = {f.name for f in dataclasses.fields(cls)}
        data = read_section(path, getattr(cls, "section", None))
        values.update({k: coerce(cls, k, v) for k, v in data.items() if k in names})
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = coerce(cls, k, v)
    try:
        return cls(**values)
    except TypeError as e:
        raise SokhanError(f"bad {cls.__name__}: {e}") from None
