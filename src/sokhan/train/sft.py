"""Supervised fine-tuning data: conversations packed into rows, the loss on the assistant's tokens only.

Conversations are rendered with the chat template (`sokhan.text.chat_template`) and packed
end to end into rows of `block_size + 1` tokens, so no compute is spent on padding; the
labels are IGNORE_INDEX everywhere but the assistant's content and its `<|end|>`.
"""

from __future__ import annotations

import torch
from torch import nn

from sokhan.constants import IGNORE_INDEX
from sokhan.errors import SokhanError
from sokhan.text.chat_template import ChatTemplate, Message
from sokhan.train.distributed import GatherRows
from sokhan.train.tasks import Task, draw_for_all


class SFTTask(Task):
    """Random rows of packed conversations; targets are the assistant's tokens only.

    Its loss covers replies only, so it is not a bits-per-character of any text (the `Task`
    default, None).
    """

    def __init__(self, rows: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], batch_size: int,
                 device: torch.device):
        self.rows, self.labels, self.batch_size, self.device = rows, labels, batch_size, device

    def sample(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(self.rows[split]), (self.batch_size,), generator=generator)
        row, lab = self.rows[split][pick], self.labels[split][pick]
        return row[:, :-1].to(self.device), lab[:, 1:].to(self.device)

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """Under torchrun `batch_size` is per process: every rank draws the job's `world` × as many rows and keeps
        its own. Their targets (replies) differ in number from row to row, which the engine's weighting by
        targets over every rank absorbs, so N processes of batch B step as one process of batch N·B."""
        draw_for_all(self, world)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(batch[0], batch[1]).loss

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def targets_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        """The assistant's tokens: the only ones with a loss."""
        return int((batch[1] != IGNORE_INDEX).sum())


def pack(conversations: list[list[Message]], template: ChatTemplate, block_size: int,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate rendered conversations and cut rows of block_size + 1; drop rows with nothing to learn."""
    ids: list[int] = []
    labels: list[int] = []
    for conv in conversations:
        i, lab = template.encode(conv)
        ids += i[: block_size + 1]
        labels += lab[: block_size + 1]
    n = len(ids) // (block_size + 1)
    if n == 0:
        raise SokhanError(f"too little conversation data for one row of {block_size + 1} tokens")
    rows = torch.tensor(ids[: n * (block_size + 1)]).view(n, block_size + 1)
    labs = torch.tensor(labels[: n * (block_size + 1)]).view(n, block_size + 1)
    keep = (labs[:, 1:] != IGNORE_INDEX).any(dim=1)
    return rows[keep], labs[keep]
