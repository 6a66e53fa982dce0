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

METRICS = "metrics.jsonl"


class MetricsLog:
    """Rows appended to a run's metrics.jsonl as they come, kept in `rows`.

    Each row is flushed as it is written, so a crash loses nothing logged; the file stays open for
    the whole run (the engine closes it).
    """

    def __init__(self, run_dir: str | Path, append: bool):
        self.path = Path(run_dir) / METRICS
        self.file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - open for the run
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of a run's metrics.jsonl; a `SokhanError` when the run has none or it is not JSON lines."""
    folder = Path(run_dir)
    path = folder / METRICS
    if not path.is_file():
        raise SokhanError(f"{folder} has no {METRICS} (is it a `sokhan train` run folder?)")
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SokhanError(f"{path} is not valid JSON lines ({e})") from None


def last_val_row(run_dir: str | Path) -> dict[str, Any]:
    """The run's last evaluation: its validation figures."""
    vals = [r for r in read_metrics(run_dir) if r.get("split") == "val"]
    if not vals:
        raise SokhanError(f"{run_dir} has no validation row in {METRICS}")
    return vals[-1]
