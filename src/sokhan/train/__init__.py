"""Training: the one engine, the tasks that say what each family learns, the optimizer and the metrics log."""

from __future__ import annotations

from pathlib import Path

import torch

from sokhan.errors import SokhanError
from sokhan.train.masking import MaskedLMTask
from sokhan.train.tasks import CausalLMTask, StreamLMTask, Task

# The task each family trains on (a counted family, `capabilities.lookup`, has none: it is counted).
TASKS: dict[str, type[Task]] = {"gpt": CausalLMTask, "bert": MaskedLMTask, "rnn": StreamLMTask,
                                "lstm": StreamLMTask, "gru": StreamLMTask}


def task_for(family: str, data_dir: str | Path, batch_size: int, block_size: int, device: torch.device) -> Task:
    if family == "seq2seq":  # its task reads sentence pairs, not a prepared corpus (sokhan.train.translation)
        raise SokhanError("a seq2seq model learns from sentence pairs, not a corpus: train it with "
                          "`sokhan translate-train --data DIR`")
    if family not in TASKS:
        raise SokhanError(f"family '{family}' is not trained by gradient descent")
    return TASKS[family](data_dir, batch_size, block_size, device)


__all__ = ["TASKS", "Task", "task_for"]
