"""Training tasks: what a batch is and how a model's loss on it is taken; the one part of training a family owns.

The engine is the same for every family; each family's task is named in `TASKS`:
next-token windows for the GPT, truncated BPTT for recurrent networks, dynamic masking for
BERT (`masking.py`), packed conversations for chat fine-tuning (`sft.py`), labelled texts and
pairs for a classifier (`classify.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from sokhan.data.shards import TokenData
from sokhan.errors import SokhanError
from sokhan.models.recurrent import RecurrentState
from sokhan.train.distributed import GatherRows, row_slice
from sokhan.units import bits_per_char

Batch = Any


class Task:
    """What the engine asks of a family's task. A subclass defines `sample`, `loss` (the mean over
    the batch's targets) and `tokens_in`; the rest have defaults it may widen:

    * `targets_in(batch)`: how many targets the loss averages over, by which gradient
      accumulation weights each micro-batch (default: every token, `tokens_in`);

    * `bits_per_char(split, loss)`: the evaluation loss on the bits-per-character scale, or None
      where the loss is not a text likelihood (masked tokens, a chat's replies);
    * `metrics(model, batch)`: evaluation figures of one batch, "loss" among them (a masked LM
      adds its accuracy);
    * `state_dict()` / `load_state_dict(state)`: what a resume must restore beyond the data RNG
      (the hidden state a recurrent model carries from batch to batch);
    * `set_progress(done)`: how far the run is before each step's batches are drawn, 0 → 1 by
      whichever budget (steps or time) ends it first; a curriculum opens its data by it
      (translation's shortest-first), the default ignores it. A resumed run restores the step and
      the time spent, so it is told the same figure it would have been.
    * `split_rows(rank, world, gather)`: under torchrun, make `sample` draw the batch of all
      `world` processes together (every rank the same), of which the engine keeps this rank's rows
      (`sokhan.train.distributed.take_rows`); a task whose batches cannot be split so refuses.
      A task that can draw the whole batch but read only this rank's rows (the token shards'
      windows) does so, and says so with `reads_own_rows`.
    """

    reads_own_rows = False

    def sample(self, split: str, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def tokens_in(self, batch: Batch) -> int:
        raise NotImplementedError

    def targets_in(self, batch: Batch) -> int:
        return self.tokens_in(batch)

    def bits_per_char(self, split: str, loss: float) -> float | None:
        return None

    def metrics(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        return {"loss": self.loss(model, batch).item()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore by default."""

    def set_progress(self, done: float) -> None:
        """No curriculum by default: every batch may be drawn from the first step."""

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        raise SokhanError(f"{type(self).__name__} cannot split its batches exactly across the processes of a "
                          f"torchrun job; train it in one process")


def draw_for_all(task: Any, world: int) -> None:
    """A task of `batch_size` rows per process draws `world` × as many: the job's global batch."""
    task.batch_size *= world


class CausalLMTask(Task):
    """Next-token prediction on random windows of the prepared token shards (nanoGPT's sampler)."""

    def __init__(self, data_dir: str | Path, batch_size: int, block_size: int, device: torch.device):
        self.splits = {s: TokenData(data_dir, s) for s in ("train", "val")}
        self.batch_size, self.block_size, self.device = batch_size, block_size, device
        self.rows: slice | None = None  # under torchrun: this rank's rows of the job's batch
        for data in self.splits.values():  # fail now with a clear message, not at the first eval
            data.sample_batch(1, block_size, torch.Generator().manual_seed(0))

    def sample(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.splits[split].sample_batch(self.batch_size, self.block_size, generator, self.device,
                                               rows=self.rows)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return model(x, y).loss

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[1].numel()

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """Every rank draws the offsets of the job's windows and reads only its own rows from the shards."""
        draw_for_all(self, world)
        self.rows, self.reads_own_rows = row_slice(self.batch_size, rank, world), True

    def bits_per_char(self, split: str, loss: float) -> float:
        """Mean nats per token → bits per character, with the split's own token and character counts."""
        data = self.splits[split]
        return bits_per_char(loss * data.num_tokens, data.num_chars)


class StreamBatch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    fresh: bool  # the streams start over: forget the carried hidden state


class StreamLMTask(CausalLMTask):
    """Truncated backpropagation through time (Williams & Peng 1990), as recurrent LMs train.

    The train split is cut into `batch_size` contiguous stripes read in order, `block_size`
    tokens at a time; row b of each batch continues row b of the previous one, so the hidden
    state is carried across batches (detached: gradients flow back `block_size` steps only).
    The stream position and the hidden state are task state, saved with each checkpoint, so a
    resumed run continues exactly. Evaluation uses random windows from a fresh state, as the
    Transformer's does.
    """

    def __init__(self, data_dir: str | Path, batch_size: int, block_size: int, device: torch.device):
        super().__init__(data_dir, batch_size, block_size, device)
        self._cut_stripes()
        self.position = 0
        self.carry = RecurrentState()
        self.rank, self.world, self.gather = 0, 1, None

    def _cut_stripes(self) -> None:
        train = self.splits["train"]
        self.stripe = (train.num_tokens - 1) // self.batch_size
        if self.stripe < self.block_size:
            raise SokhanError(f"BPTT length {self.block_size} is larger than the data: the train split's "
                              f"{train.num_tokens} tokens make {self.batch_size} streams of {self.stripe}; "
                              f"lower --block-size or --batch-size")

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """The job's global batch is `world` × batch_size streams, the stripes one process with that batch
        reads; each rank carries the hidden state of its own rows, gathered whole into a checkpoint."""
        super().split_rows(rank, world, gather)
        self._cut_stripes()
        self.rank, self.world, self.gather = rank, world, gather

    def sample(self, split: str, generator: torch.Generator) -> StreamBatch | tuple[torch.Tensor, torch.Tensor]:
        if split != "train":
            return super().sample(split, generator)
        fresh = self.position == 0
        starts = (np.arange(self.batch_size) * self.stripe + self.position)[self.rows or slice(None)]
        buf = torch.from_numpy(self.splits["train"].tokens[starts[:, None] + np.arange(self.block_size + 1)]
                               .astype(np.int64)).to(self.device)
        self.position += self.block_size
        if self.position + self.block_size > self.stripe:  # an epoch ends: start the streams over
            self.position = 0
        return StreamBatch(buf[:, :-1], buf[:, 1:], fresh)

    def loss(self, model: nn.Module, batch: StreamBatch | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if not isinstance(batch, StreamBatch):
            return super().loss(model, batch)
        if batch.fresh:
            self.carry = RecurrentState()
        self.carry.detach()
        return model(batch.x, batch.y, cache=self.carry).loss

    def state_dict(self) -> dict[str, Any]:
        hidden = self.carry.hidden
        parts = () if hidden is None else hidden if isinstance(hidden, tuple) else (hidden,)  # LSTM: (h, c)
        if self.gather is not None:  # under torchrun: every rank's rows (dim 1 of (layers, batch, width))
            parts = tuple(self.gather(h, 1) for h in parts)
        hidden = [h.detach().cpu() for h in parts]
        return {"position": self.position, "hidden": hidden}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
        hidden = [h.to(self.device) for h in state["hidden"]]
        if self.world > 1:  # this rank's rows of the whole job's state
            hidden = [h[:, self.rank * h.size(1) // self.world: (self.rank + 1) * h.size(1) // self.world]
                      for h in hidden]
        self.carry = RecurrentState(None if not hidden else hidden[0] if len(hidden) == 1 else tuple(hidden))
