"""The config of `sokhan evaluate`: which task, on which data, with which options; and a TOML list of such tasks.

One `EvaluateConfig` is one task run. The command line builds one from its flags; a task list
(`sokhan evaluate MODEL --tasks tasks.toml`) is a TOML file whose every top-level table is one,
named as the user likes:

    [mc]
    task = "multiple-choice"
    data = "../shared/data/fa-sft/parsinlu_mc.test.jsonl"

    [rc]
    task = "reading-comprehension"
    data = "../shared/data/fa-sft/parsinlu_rc.test.jsonl"
    max_new_tokens = 48
    limit = 100

Each table is checked as any config is (unknown keys refused with the valid ones listed,
types, choices, ranges), all of them before the model is loaded. Paths are read as typed,
from the working directory, as every other sokhan config reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sokhan.config.base import Config, coerce, json_kind, option, read_toml
from sokhan.config.data import DOC_SPLITS
from sokhan.errors import SokhanError

TASKS = ("multiple-choice", "reading-comprehension", "bpc", "classify")
MC_PROMPTS = ("auto", "cloze", "listed")


@dataclass(frozen=True)
class EvaluateConfig(Config):
    section: ClassVar[str] = "evaluate"

    task: str | None = option(None, "what to measure: multiple-choice accuracy (log-likelihood of each option), "
                              "reading-comprehension exact match and F1 (greedy answers), bpc (bits per "
                              "character of a text file or folder), or classify (a classifier's accuracy, "
                              "macro-F1 and confusion matrix)", choices=TASKS, what="task")
    data: str | None = option(None, "the data: a JSONL file of items (multiple-choice, reading-comprehension, "
                              "classify), or a text file or folder (bpc)")
    limit: int = option(0, "multiple-choice, reading-comprehension, classify: score the first N items only (0: all "
                        "of them)", low=0)
    batch_size: int = option(16, "multiple-choice, classify: sequences scored together in one forward pass", low=1,
                             high=4096)
    prompt: str = option("auto", "multiple-choice: how an item is put to the model: cloze (the question, then "
                         "each option as its answer), listed (the numbered options shown, then 'n. option' as the "
                         "answer), auto (listed for a chat model, cloze otherwise)", choices=MC_PROMPTS,
                         what="multiple-choice prompt")
    max_new_tokens: int = option(32, "reading-comprehension: tokens generated at most for an answer", low=1,
                                 high=4096)
    stride: int | None = option(None, "bpc: a Transformer's sliding-window stride in tokens (unset: half its "
                                "context, as `sokhan eval`)", low=1)
    doc_split: str | None = option(None, "bpc: how text files are cut into documents (unset: as the model's data "
                                   "was prepared, as `sokhan eval`)", choices=DOC_SPLITS, what="doc_split")
    text_field: str | None = option(None, "classify: the field of a record holding its text (unset: the one the "
                                    "model was trained with)")
    pair_field: str | None = option(None, "classify: the field holding a pair's second text (unset: the one the "
                                    "model was trained with)")
    label_field: str | None = option(None, "classify: the field holding the true label (unset: the one the model "
                                     "was trained with)")

    def require_task(self, where: str = "") -> None:
        """A run needs a task and its data; the defaults leave both unset, so that a flag can be left out."""
        missing = [name for name in ("task", "data") if getattr(self, name) in (None, "")]
        if missing:
            place = f"{where} lacks" if where else "give"
            raise SokhanError(f"{place} {' and '.join(missing)} (task: {', '.join(TASKS)})")


def read_task_list(path: str | Path, base: EvaluateConfig | None = None, overrides: dict[str, Any] | None = None,
                   ) -> list[tuple[str, EvaluateConfig]]:
    """(table name, config) for every table of a task list, in file order: each table's values over `base`
    (the defaults, or the [evaluate] table of --config), and `overrides` (the flags typed) over both.

    A value outside any table, a table that is not a table of options, or a table without a
    task or data is one line naming the file and the table.
    """
    p = Path(path)
    data = read_toml(p, "task list")
    if not data:
        raise SokhanError(f"task list {p} has no tasks: give one [NAME] table per task, each with task and data")
    tasks = []
    for name, table in data.items():
        where = f"[{name}] of {p}"
        if not isinstance(table, dict):
            raise SokhanError(f"'{name}' in {p} is {json_kind(table)}, not a table; give one [NAME] table per task, "
                              f"each with task and data")
        typed = {k: coerce(EvaluateConfig, k, v) for k, v in (overrides or {}).items()}
        cfg = EvaluateConfig.from_dict({**(base or EvaluateConfig()).to_dict(), **table, **typed}, where)
        cfg.require_task(where)
        tasks.append((name, cfg))
    return tasks
