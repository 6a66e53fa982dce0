"""`sokhan evaluate`: what a model can do on Persian tasks — multiple choice, reading comprehension, bits/char, and
a classifier's accuracy, macro-F1 and confusion matrix.

`sokhan evaluate MODEL --task multiple-choice --data parsinlu_mc.test.jsonl` prints a line per
metric (`accuracy 41.3 % (1,050 items)`, with chance beside it) and saves the result, every
item's outcome included, as JSON in the model's run folder: `RUN/eval/<task>-<data file stem>.json`.
`--tasks tasks.toml` runs several, one TOML table each (`sokhan.config.evaluate`). Every data
file is read and checked before the model is loaded: a bad record is one `file:line:` error.
`--task classify` reads the fields and labels from the classifier's config.json for that check,
and draws its confusion matrix beside the JSON (`<task>-<stem>.png` and `.html`).
How each task is scored, and after which sources: `sokhan.eval.tasks`. (`sokhan eval` prints
the bits/char of a text file; `--task bpc` here gives the same figure, saved with the others.)
"""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import add_config, add_model_folder, config_from, console, given
from sokhan.config import load_config
from sokhan.config.evaluate import TASKS, EvaluateConfig, read_task_list
from sokhan.errors import SokhanError

NAME = "evaluate"
HELP = ("Persian task scores: multiple-choice accuracy, reading-comprehension exact match and F1, bits/char, a "
        "classifier's accuracy and macro-F1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_folder(parser)
    parser.add_argument("--tasks", metavar="FILE.toml", default=None,
                        help="run several tasks: a TOML file with one [NAME] table per task, each with task, data "
                             "and any option below (flags typed here apply to every table and win)")
    add_config(parser, EvaluateConfig())


def run(args: argparse.Namespace) -> None:
    plans = planned_tasks(args)
    from sokhan.api import LanguageModel  # torch loads when the command runs, never for --help
    from sokhan.eval.tasks import load_items, result_name, run_task, write_result

    check_distinct_results([(name, result_name(cfg.task, cfg.data)) for name, cfg in plans])
    items = {name: load_items(cfg, args.model) for name, cfg in plans}  # every record checked before the model loads
    lm = LanguageModel.load(args.model, device=args.device)
    for name, cfg in plans:
        result = run_task(lm, cfg, items[name])
        print(f"{cfg.task}  {cfg.data}  ({'; '.join([*how(result.details), f'model {lm.path}'])})")
        for metric in result.metrics:
            print(f"  {metric.line()}")
        saved = write_result(lm, cfg, result)
        drawn = f" and its picture {saved.with_suffix('.png').name}, .html" if result.picture is not None else ""
        console.print(f"saved {saved}{drawn} ({result.seconds:.1f}s)", highlight=False, soft_wrap=True)


def how(details: dict) -> list[str]:
    """The settings a reader needs beside the figures: the prompt, the chat template, which text was scored."""
    said = [f"{details['prompt']} prompt"] if "prompt" in details else []
    said += ["chat template"] if details.get("chat_template") else []
    if "documents" in details:
        said.append(f"{details['documents']:,} documents cut by {details['doc_split']}")
    said += ["the model's validation text"] if details.get("is_model_validation_text") else []
    if "fields" in details:  # classify
        fields = details["fields"]
        texts = f"{fields['text']} + {fields['pair']}" if fields["pair"] else fields["text"]
        texts += " (read separately)" if details["pair_encoding"] == "separate" else ""
        said.append(f"{texts} → {fields['label']}, pooling {details['pooling']}, majority "
                    f"'{details['majority_label']}'")
        if details["cut_to_context"]:
            said.append(f"{details['cut_to_context']:,} cut to {details['context']} tokens")
    return said


def planned_tasks(args: argparse.Namespace) -> list[tuple[str, EvaluateConfig]]:
    """(name, config) of each task to run: the one the flags name, or every table of --tasks."""
    if args.tasks is None:
        cfg = config_from(args, EvaluateConfig)
        if cfg.task is None or cfg.data is None:
            raise SokhanError(f"give --task ({', '.join(TASKS)}) and --data FILE, or --tasks FILE.toml")
        return [(cfg.task, cfg)]
    if args.task is not None or args.data is not None:
        raise SokhanError("--task and --data name one task; with --tasks FILE.toml each table names its own")
    base = load_config(EvaluateConfig, args.config)
    return read_task_list(args.tasks, base, given(args, EvaluateConfig))


def check_distinct_results(names: list[tuple[str, str]]) -> None:
    """Two tasks of one list that would save to one file (same task, data files of one name) are refused."""
    seen: dict[str, str] = {}
    for task, file in names:
        if file in seen:
            raise SokhanError(f"tasks [{seen[file]}] and [{task}] would both save eval/{file}: the same task on "
                              f"data files of the same name; run them apart")
        seen[file] = task
