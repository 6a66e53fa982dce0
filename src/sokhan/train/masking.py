"""Masked-language-model training: dynamic masking and the task the shared engine runs.

BERT's recipe (Devlin et al. 2019, §3.1 "Masked LM"): choose 15% of the input tokens; of
those, 80% become the mask token, 10% a random token, 10% stay as they are; predict the
original at every chosen position and nowhere else. Replacing only with the mask would
teach the model that real inputs are never worth predicting (the mask never occurs when
the model is used), hence the 10% + 10%.

BERT masked each sequence once, when the data was made; RoBERTa (Liu et al. 2019, §4.1)
draws a new mask each time a sequence is seen ("dynamic masking"), which is as good or
better and needs no copies of the data. Here a window is masked as it is drawn, with the
same generator that chose the window, so the engine's data-RNG state alone is the whole
data position and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sokhan.constants import IGNORE_INDEX
from sokhan.data.shards import TokenData
from sokhan.text.tokenizers import Tokenizer
from sokhan.train.distributed import GatherRows
from sokhan.train.tasks import Task, draw_for_all

MASK_RATE = 0.15                       # the fraction of tokens chosen for prediction
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1    # of the chosen: to the mask token, to a random token; the rest unchanged


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids: torch.Tensor | Sequence[int],
                generator: torch.Generator, rate: float = MASK_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a (B, T) int64 batch BERT's way: return (inputs, targets), both (B, T) on `ids`'s device.

    Each non-special position is chosen independently with probability `rate`; a chosen
    position becomes `mask_id` (80%), a random non-special token below `vocab_size` (10%) or
    stays (10%). `targets` holds the original id at chosen positions and IGNORE_INDEX elsewhere.
    The same amount is drawn from the (CPU) `generator` whatever the batch holds, so its state
    after the call depends only on its state before it and the batch shape.
    """
    if not 0 < rate < 1:
        raise ValueError(f"mask rate must be in (0, 1), got {rate}")
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[torch.as_tensor(special_ids, dtype=torch.long)] = True
    ordinary = (~special).nonzero().squeeze(1)
    if len(ordinary) == 0:
        raise ValueError("every token id is special: there is nothing to mask")
    cpu = ids.cpu()
    if cpu.numel() and (cpu.min() < 0 or cpu.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got {int(cpu.min())}..{int(cpu.max())}")
    chosen = (torch.rand(cpu.shape, generator=generator) < rate) & ~special[cpu]
    action = torch.rand(cpu.shape, generator=generator)
    random_tokens = ordinary[torch.randint(len(ordinary), cpu.shape, generator=generator)]
    inputs = torch.where(chosen & (action < MASK_SHARE), mask_id, cpu)
    inputs = torch.where(chosen & (action >= MASK_SHARE) & (action < MASK_SHARE + RANDOM_SHARE), random_tokens, inputs)
    targets = torch.where(chosen, cpu, IGNORE_INDEX)
    return inputs.to(ids.device), targets.to(ids.device)


class MaskedLMTask(Task):
    """Masked-token prediction on random windows of the prepared shards (the engine's Task).

    A batch is (inputs, targets) from `mask_tokens`. Its loss conditions on both sides, so it is
    not a text likelihood: no bits per character (the `Task` default, None). Windows start anywhere, so one may begin
    or end mid-document and span a document boundary (bos/eos are in it, never masked), as in
    RoBERTa's FULL-SENTENCES packing; no padding is needed.
    """

    def __init__(self, data_dir: str | Path, batch_size: int, block_size: int, device: torch.device | str,
                 rate: float = MASK_RATE):
        tokenizer = Tokenizer.load(Path(data_dir) / "tokenizer.json")
        self.mask_id = tokenizer.mask_id
        self.special_ids = torch.tensor(tokenizer.special_ids())
        self.vocab_size = tokenizer.vocab_size
        self.splits = {s: TokenData(data_dir, s) for s in ("train", "val")}
        self.batch_size, self.block_size, self.device, self.rate = batch_size, block_size, torch.device(device), rate
        for data in self.splits.values():  # fail now with a clear message, not at the first eval
            data.sample_batch(1, block_size, torch.Generator().manual_seed(0))

    def sample(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.splits[split].sample_batch(self.batch_size, self.block_size, generator)
        inputs, targets = mask_tokens(x, self.mask_id, self.vocab_size, self.special_ids, generator, self.rate)
        pinned = self.device.type == "cuda"  # page-locked memory lets the copy overlap the GPU's work
        if pinned:
            inputs, targets = inputs.pin_memory(), targets.pin_memory()
        return inputs.to(self.device, non_blocking=pinned), targets.to(self.device, non_blocking=pinned)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        return model(inputs, targets).loss

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """Under torchrun: windows and masks are drawn for the whole job's batch, each rank keeps its rows."""
        draw_for_all(self, world)

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def targets_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        """The masked positions: the only ones with a loss."""
        return int((batch[1] != IGNORE_INDEX).sum())

    def metrics(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """Loss and accuracy (the share of masked positions whose argmax is the original token)."""
        inputs, targets = batch
        out = model(inputs, targets)
        logits, loss = out.logits, out.loss
        chosen = targets != IGNORE_INDEX
        correct = (logits.argmax(-1) == targets) & chosen
        return {"loss": loss.item(), "accuracy": (correct.sum() / chosen.sum().clamp(min=1)).item()}
