"""The `sokhan` command line: one module per subcommand, in the order of the journey.

Each command module declares its `NAME`, a one-line `HELP`, `add_arguments(parser)` and
`run(args)`; `build_parser` assembles them, so nothing is kept in step by hand. Options come
from the config dataclasses (`sokhan.config`), which also check them. A command imports the
workbench (torch, matplotlib, …) inside `run`, so `sokhan --help` and `sokhan COMMAND --help`
answer without loading torch. Mistakes a user can make print one `error:` line and exit with
status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import sys
import warnings

from rich.markup import escape

from sokhan.cli import (
    chat,
    classify,
    demo,
    evaluate,
    evaluate_tasks,
    export,
    fill,
    finetune,
    import_model,
    inspect,
    leaderboard,
    prepare,
    report_card,
    sample,
    serve,
    sweep,
    train,
    translate,
    translate_train,
    zoo,
)
from sokhan.cli.arguments import Parser, check_utf8, console
from sokhan.errors import SokhanError

COMMANDS = (demo, prepare, train, sample, finetune, chat, classify, translate_train, translate, evaluate,
            evaluate_tasks, report_card, fill, leaderboard, zoo, sweep, inspect, serve, export, import_model)


def build_parser() -> Parser:
    parser = Parser(prog="sokhan", description="A Persian-first workbench for language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, aliases=getattr(command, "ALIASES", ()), help=command.HELP,
                           description=command.__doc__.split("\n\n")[0])
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """A warning is for the user (lines skipped in a corpus, a sentence cut to the context): one line on
    stderr, as errors are, not Python's two lines naming sokhan's source file."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            check_utf8(argv)
            args = build_parser().parse_args(argv)
            return args.run(args) or 0
    except SokhanError as e:  # the message is text, never markup: a '[/x]' typed by the user prints as typed
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
