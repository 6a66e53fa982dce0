"""Fine-tuning for classification: labelled texts (or pairs) as padded rows, one label per row.

The records are laid out by the pair template (`sokhan.text.pair_template`) and stored padded on
the right — for a classifier that reads pairs separately, the texts and their pairs as two such
tables, row for row; a batch is `batch_size` rows drawn at random (with replacement, as the other
tasks draw windows), cut to its longest row. The loss is the mean cross-entropy of the rows' labels under the
classifier's head (`sokhan.models.classifier`), so a row is a target: gradient accumulation and
torchrun weigh micro-batches by rows. Evaluation adds the accuracy of the batches drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from sokhan.data.labelled import LabelledText
from sokhan.errors import SokhanError
from sokhan.models.classifier import pad_right, padding_mask
from sokhan.text.pair_template import PairTemplate
from sokhan.train.distributed import GatherRows
from sokhan.train.tasks import Task, draw_for_all


class PaddedRows(NamedTuple):
    """Token rows padded on the right: (N, longest) int64 ids and each row's length."""

    ids: torch.Tensor      # (N, longest) int64
    lengths: torch.Tensor  # (N,)

    def take(self, pick: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `pick`, cut to the longest of them, and their padding mask, on `device`."""
        lengths = self.lengths[pick]
        width = int(lengths.max())
        return self.ids[pick, :width].to(device), padding_mask(lengths, width).to(device)


@dataclass
class LabelledRows:
    """A split's records as the model reads them: the token rows, the label indices, and (pairs read separately)
    the second texts' rows, row for row."""

    texts: PaddedRows      # each record's text, or its whole pair laid out as one sequence
    labels: torch.Tensor   # (N,) indices into the classifier's labels
    cut: int               # records cut to fit the context
    pairs: PaddedRows | None = None  # the second texts, each alone (pair encoding `separate`)

    def __len__(self) -> int:
        return len(self.labels)


def encode_rows(records: list[LabelledText], template: PairTemplate, labels: list[str],
                separate: bool = False) -> LabelledRows:
    """Every record laid out by `template` (with `separate`, a pair's two texts each alone), its label as an index
    into `labels` (a label not among them is one `file:line:` error: the validation file holds a label the training
    data never showed)."""
    index = {label: i for i, label in enumerate(labels)}
    rows, second, targets, cut = [], [], [], 0
    for record in records:
        if record.label not in index:
            raise SokhanError(f"{record.where}: label '{record.label}' is not one of the {len(labels)} labels of the "
                              f"training data ({', '.join(labels[:10])}{', …' if len(labels) > 10 else ''})")
        encoded = template.encode_record(record.text, record.pair, separate)
        rows.append(encoded[0].ids)
        second.extend(e.ids for e in encoded[1:])
        targets.append(index[record.label])
        cut += any(e.cut for e in encoded)
    pairs = PaddedRows(*pad_right(second, template.tokenizer.pad_id)) if separate else None
    return LabelledRows(PaddedRows(*pad_right(rows, template.tokenizer.pad_id)), torch.tensor(targets), cut, pairs)


class ClassifyBatch(NamedTuple):
    idx: torch.Tensor      # (B, T) token ids, padded on the right
    padding: torch.Tensor  # (B, T) True at real tokens
    labels: torch.Tensor   # (B,) label indices
    pair: torch.Tensor | None = None          # (B, T2) the second texts, read separately
    pair_padding: torch.Tensor | None = None  # (B, T2)


class ClassifyTask(Task):
    """Random rows of labelled records; one target per row (its label)."""

    def __init__(self, rows: dict[str, LabelledRows], batch_size: int, device: torch.device):
        self.rows, self.batch_size, self.device = rows, batch_size, device

    def sample(self, split: str, generator: torch.Generator) -> ClassifyBatch:
        data = self.rows[split]
        pick = torch.randint(len(data), (self.batch_size,), generator=generator)
        idx, padding = data.texts.take(pick, self.device)
        pair, pair_padding = data.pairs.take(pick, self.device) if data.pairs is not None else (None, None)
        return ClassifyBatch(idx, padding, data.labels[pick].to(self.device), pair, pair_padding)

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """Under torchrun `batch_size` is per process: every rank draws the job's `world` × as many rows and the
        engine keeps each rank's own (every row one target, so N processes of batch B step as one of N·B)."""
        draw_for_all(self, world)

    def loss(self, model: nn.Module, batch: ClassifyBatch) -> torch.Tensor:
        return model(batch.idx, batch.labels, padding=batch.padding, pair=batch.pair,
                     pair_padding=batch.pair_padding).loss

    def tokens_in(self, batch: ClassifyBatch) -> int:
        """The real tokens read (padding is not), of both texts when a pair is read separately."""
        return int(batch.padding.sum()) + (int(batch.pair_padding.sum()) if batch.pair_padding is not None else 0)

    def targets_in(self, batch: ClassifyBatch) -> int:
        """One label per row."""
        return batch.labels.numel()

    def metrics(self, model: nn.Module, batch: ClassifyBatch) -> dict[str, float]:
        out = model(batch.idx, batch.labels, padding=batch.padding, pair=batch.pair, pair_padding=batch.pair_padding)
        accuracy = (out.logits.argmax(dim=-1) == batch.labels).float().mean()
        return {"loss": out.loss.item(), "accuracy": accuracy.item()}
