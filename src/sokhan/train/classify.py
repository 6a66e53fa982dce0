"""Fine-tuning for classification: labelled texts (or pairs) as padded rows, one label per row.

The records are laid out by the pair template (`sokhan.text.pair_template`) and stored padded on
the right; a batch is `batch_size` rows drawn at random (with replacement, as the other tasks draw
windows), cut to its longest row. The loss is the mean cross-entropy of the rows' labels under the
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


@dataclass
class LabelledRows:
    """A split's records as the model reads them: ids padded on the right, their lengths, the label indices."""

    ids: torch.Tensor      # (N, longest) int64
    lengths: torch.Tensor  # (N,)
    labels: torch.Tensor   # (N,) indices into the classifier's labels
    cut: int               # records cut to fit the context

    def __len__(self) -> int:
        return len(self.labels)


def encode_rows(records: list[LabelledText], template: PairTemplate, labels: list[str]) -> LabelledRows:
    """Every record laid out by `template`, its label as an index into `labels` (a label not among them is
    one `file:line:` error: the validation file holds a label the training data never showed)."""
    index = {label: i for i, label in enumerate(labels)}
    rows, targets, cut = [], [], 0
    for record in records:
        if record.label not in index:
            raise SokhanError(f"{record.where}: label '{record.label}' is not one of the {len(labels)} labels of the "
                              f"training data ({', '.join(labels[:10])}{', …' if len(labels) > 10 else ''})")
        encoded = template.encode(record.text, record.pair)
        rows.append(encoded.ids)
        targets.append(index[record.label])
        cut += encoded.cut
    ids, lengths = pad_right(rows, template.tokenizer.pad_id)
    return LabelledRows(ids, lengths, torch.tensor(targets, dtype=torch.long), cut)


class ClassifyBatch(NamedTuple):
    idx: torch.Tensor      # (B, T) token ids, padded on the right
    padding: torch.Tensor  # (B, T) True at real tokens
    labels: torch.Tensor   # (B,) label indices


class ClassifyTask(Task):
    """Random rows of labelled records; one target per row (its label)."""

    def __init__(self, rows: dict[str, LabelledRows], batch_size: int, device: torch.device):
        self.rows, self.batch_size, self.device = rows, batch_size, device

    def sample(self, split: str, generator: torch.Generator) -> ClassifyBatch:
        data = self.rows[split]
        pick = torch.randint(len(data), (self.batch_size,), generator=generator)
        lengths = data.lengths[pick]
        width = int(lengths.max())
        idx = data.ids[pick, :width]
        return ClassifyBatch(idx.to(self.device), padding_mask(lengths, width).to(self.device),
                             data.labels[pick].to(self.device))

    def split_rows(self, rank: int, world: int, gather: GatherRows) -> None:
        """Under torchrun `batch_size` is per process: every rank draws the job's `world` × as many rows and the
        engine keeps each rank's own (every row one target, so N processes of batch B step as one of N·B)."""
        draw_for_all(self, world)

    def loss(self, model: nn.Module, batch: ClassifyBatch) -> torch.Tensor:
        return model(batch.idx, batch.labels, padding=batch.padding).loss

    def tokens_in(self, batch: ClassifyBatch) -> int:
        """The real tokens read (padding is not)."""
        return int(batch.padding.sum())

    def targets_in(self, batch: ClassifyBatch) -> int:
        """One label per row."""
        return batch.labels.numel()

    def metrics(self, model: nn.Module, batch: ClassifyBatch) -> dict[str, float]:
        out = model(batch.idx, batch.labels, padding=batch.padding)
        accuracy = (out.logits.argmax(dim=-1) == batch.labels).float().mean()
        return {"loss": out.loss.item(), "accuracy": accuracy.item()}
