"""`metrics.jsonl`: the log every run keeps, one JSON object per line.

The engine appends a row per logged step (`split: "train"`) and per evaluation (`split: "val"`,
with bits per character where the task has them); the curves (`sokhan inspect curves`) and
the leaderboard read it back through `read_metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sokhan.errors import SokhanError
from sokhan.models.checkpoint import write_atomic

METRICS = "metrics.jsonl"


class MetricsLog:
    """Rows appended to a run's metrics.jsonl as they come, kept in `rows`.

    Each row is flushed as it is written, so a crash loses nothing logged; the file stays open for
    the whole run (the engine closes it). A fresh run starts a new file. A resumed run
    (`continue_after` = the step it resumes at) keeps the rows up to that step and drops the
    later ones, which belong to steps that will run again: one row per (step, split). A last
    line cut short by a crash is dropped with them.
    """

    def __init__(self, run_dir: str | Path, continue_after: int | None = None):
        self.path = Path(run_dir) / METRICS
        self.rows: list[dict[str, Any]] = []
        if continue_after is not None and self.path.is_file():
            self.rows = [row for row in _read_rows(self.path, lenient=True) if row.get("step", 0) <= continue_after]
        write_atomic(self.path, "".join(json.dumps(row) + "\n" for row in self.rows))  # a fresh run: empty
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def write(self, row: dict[str, Any]) -> None:
        """Append `row`; a full disk is one line naming the file (the run's checkpoints are untouched)."""
        self.rows.append(row)
        try:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except OSError as e:
            raise SokhanError(f"cannot write {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        self.file.close()


def _read_rows(path: Path, lenient: bool = False) -> list[dict[str, Any]]:
    """The rows of a metrics file; `lenient`: a last line that is not JSON (cut short) is left out."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise SokhanError(f"{path} is not valid JSON lines ({e})") from None
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lenient and i == len(lines) - 1:
                break
            raise SokhanError(f"{path} is not valid JSON lines (line {i + 1}: {e})") from None
    return rows


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of a run's metrics.jsonl; a `SokhanError` when the run has none or it is not JSON lines."""
    folder = Path(run_dir)
    path = folder / METRICS
    if not path.is_file():
        raise SokhanError(f"{folder} has no {METRICS} (is it a `sokhan train` run folder?)")
    return _read_rows(path)


def last_val_row(run_dir: str | Path) -> dict[str, Any]:
    """The run's last evaluation: its validation figures."""
    vals = [r for r in read_metrics(run_dir) if r.get("split") == "val"]
    if not vals:
        raise SokhanError(f"{run_dir} has no validation row in {METRICS}")
    return vals[-1]
