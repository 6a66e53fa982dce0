"""What the subcommands share: a parser whose errors are one line, flags made from config fields, common options.

Every field of a config (`sokhan.config`) becomes a flag (`max_steps` → `--max-steps`) whose
help is the field's own sentence, its choices and the default that will really apply (the
command passes the instance it starts from: `finetune` shows its gentler schedule, `train`
the `small` preset's sizes). Flags default to None, so a command knows what was typed, and
values are checked by the config, the same way as from a TOML file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from rich.console import Console

from sokhan.config import Config, check_out_dir, field_specs, load_config
from sokhan.config.train import DEVICE_HELP, check_device
from sokhan.errors import SokhanError

C = TypeVar("C", bound=Config)
console = Console(stderr=True)  # progress, results and errors; stdout carries only what a command outputs


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one `error:` line and exit status 2, like every other."""

    def error(self, message: str) -> NoReturn:
        raise SokhanError(f"{self.prog}: {message}; see {self.prog} --help")


def shown(value: Any) -> str:
    """A default as --help shows it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(shown, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"  # 1e+11, not 100000000000.0; 0.001 stays 0.001
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, defaults: Config, *, skip: tuple[str, ...] = (),
                     aliases: dict[str, str] | None = None, notes: dict[str, str] | None = None) -> None:
    """One flag per field of `defaults`' config class, its help saying the default `defaults` holds
    (or, for a field in `notes`, where its default comes from instead)."""
    cls = type(defaults)
    group = parser.add_argument_group(f"{cls.section} options (the [{cls.section}] table of --config)")
    for name, spec in field_specs(cls).items():
        if name in skip:
            continue
        flags = ([aliases[name]] if aliases and name in aliases else []) + ["--" + name.replace("_", "-")]
        default = notes[name] if notes and name in notes else shown(getattr(defaults, name))
        text = f"{spec.help} (default: {default})"
        text = text.replace("%", "%%")
        if spec.kind is bool:
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif spec.kind is list:
            metavar = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else spec.item.__name__.upper()
            group.add_argument(*flags, dest=name, action="append", default=None, metavar=metavar, help=text)
        else:
            metavar = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else spec.kind.__name__.upper()
            group.add_argument(*flags, dest=name, default=None, metavar=metavar, help=text)


def given(args: argparse.Namespace, cls: type[Config], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of `cls`'s flags that were typed (as strings; the config checks them)."""
    return {name: getattr(args, name) for name in field_specs(cls)
            if name not in skip and getattr(args, name, None) is not None}


def add_config_file(parser: argparse.ArgumentParser, *sections: str) -> None:
    tables = " and ".join(f"[{s}]" for s in sections)
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help=f"a TOML file whose {tables} {'tables set' if len(sections) > 1 else 'table sets'} these "
                             f"options; flags typed here win")


def add_config(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """A command with one config: `--config FILE.toml` (its table) and a flag per field."""
    add_config_file(parser, type(defaults).section)
    add_config_flags(parser, defaults)


def config_from(args: argparse.Namespace, cls: type[C], base: C | None = None, skip: tuple[str, ...] = ()) -> C:
    """The checked config a command runs with: (base or defaults) <- its --config table <- the flags typed.

    A config that names a folder to write (`out_dir`) has it checked too, before any work starts.
    """
    cfg = load_config(cls, args.config, given(args, cls, skip), base=base)
    if "out_dir" in field_specs(cls):
        check_out_dir(cfg.out_dir)
    return cfg


def out_dir(text: str) -> str:
    """An argparse type: a folder to write into (`check_out_dir`), for a command with no config."""
    try:
        check_out_dir(text, "")
    except SokhanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def check_utf8(argv: list[str]) -> None:
    """Every argument must be UTF-8 text. Python hands bytes that are not (a Latin-1 file name, a prompt
    typed in another encoding) over as lone surrogates, which no tokenizer, JSON file or folder name that
    sokhan writes can hold: they are refused at the door, shown as the bytes they were."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise SokhanError(f"argument '{_as_bytes(arg)}' is not UTF-8 text; sokhan reads its arguments as UTF-8 "
                              f"(rename the file, or re-encode the text)") from None


def _as_bytes(arg: str) -> str:
    """An argument with its undecodable bytes written as \\xNN (a surrogate from a Python caller as \\uNNNN)."""
    try:
        return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return arg.encode("utf-8", "backslashreplace").decode("utf-8")


def add_model_folder(parser: argparse.ArgumentParser, what: str = "model") -> None:
    """The model a command reads (a run folder or one of its checkpoints) and where to run it."""
    parser.add_argument("model", help=f"the {what}: a run folder (its latest checkpoint) or a checkpoint folder")
    add_device(parser)


def add_compile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", action="store_true",
                        help="compile the decode step with torch.compile first (a one-off wait of seconds, then "
                             "each token faster; needs a C++ compiler)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device, default="auto", help=f"{DEVICE_HELP} (default: auto)")


def device(text: str) -> str:
    """An argparse type: a device name as the configs accept it (checked before any model loads)."""
    try:
        check_device(text)
    except SokhanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ `low` (a bad one is a one-line error naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}")
        return value

    parse.__name__ = "int"
    return parse
