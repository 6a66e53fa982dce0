"""The last lines of a training command, shared by `train` and `finetune`."""

from __future__ import annotations

from sokhan.cli.arguments import console
from sokhan.train.engine import TrainResult


def report(result: TrainResult, next_step: str) -> int:
    """Say what was trained and what to run next; exit status 130 when Ctrl-C stopped it."""
    if result.interrupted:
        console.print(f"stopped at step {result.step} (checkpoint saved); continue with the same command and --resume")
        return 130
    console.print(f"done: {result.step} steps, {result.tokens:,} tokens in {result.elapsed:.0f}s; "
                  f"model in {result.run_dir}; next: {next_step}")
    return 0
