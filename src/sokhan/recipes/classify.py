"""Recipe: fine-tune a pretrained GPT or BERT into a classifier of texts or text pairs, full or LoRA.

`sokhan finetune --task classify --base RUN --data train.jsonl --text-field … [--pair-field …]
--label-field …`: the labels are those the training data holds (`sokhan.data.labelled.label_order`),
the records are laid out by the pair template (`sokhan.text.pair_template`), and a linear head on
one pooled state of the pretrained stack scores them (`sokhan.models.classifier`); with
`--pair-encoding separate` the two texts of a pair are read apart and the head compares them. The engine,
checkpoints, resume, the progress bar and torchrun are the pretraining ones (`ClassifyTask`). The
model folder's config.json records the labels, the pooling, the fields and the template
(`classifier`), which `TrainedModel.load`, `sokhan classify` and `sokhan evaluate --task classify`
read back. With `--lora` the stack trains through adapters and the head is trained whole.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter

import torch
from rich.console import Console
from torch import nn

from sokhan.config import ClassifierConfig, FinetuneConfig, TrainConfig
from sokhan.data.labelled import Fields, LabelledText, label_order, read_labelled
from sokhan.data.prepare import hash_split
from sokhan.device import resolve_device
from sokhan.errors import SokhanError
from sokhan.models.checkpoint import latest_checkpoint, read_config
from sokhan.models.classifier import BACKBONES, TransformerClassifier, check_backbone
from sokhan.models.lora import apply_lora, merge_lora
from sokhan.models.trained import TrainedModel
from sokhan.recipes.adapters import train_and_save
from sokhan.text.pair_template import TEMPLATE_NAME, PairTemplate
from sokhan.train.classify import ClassifyTask, LabelledRows, encode_rows
from sokhan.train.engine import TrainResult

DEFAULT_POOLING = {"gpt": "last", "bert": "first"}  # GPT-1 §3.3 and BERT §4.1
SEPARATE_POOLING = "mean"  # Sentence-BERT §3: the mean of the outputs, their default (best in the ablation of §6)


def finetune_classifier(ft: FinetuneConfig, cfg: TrainConfig, console: Console) -> TrainResult:
    """Fine-tune `ft.base` into a classifier of `ft.data`'s records (module docstring); `cfg` is the engine's."""
    base = TrainedModel.load(ft.base, device="cpu")
    check_base(base)
    pooling = pooling_for(ft.pooling, base.family, ft.pair_encoding)
    check_backbone(base.family, pooling)
    records = load_records(ft, cfg.seed)
    labels = label_order(r.label for r in records["train"])
    if len(labels) < 2:
        raise SokhanError(f"{ft.data}: every record has the label '{labels[0]}'; a classifier needs at least two")
    check_resumed_labels(cfg, labels)
    classifier = ClassifierConfig(labels=labels, pooling=pooling,
                                  text_field=ft.text_field, pair_field=ft.pair_field, label_field=ft.label_field,
                                  template=TEMPLATE_NAME, pair_encoding=ft.pair_encoding)
    template = PairTemplate(base.tokenizer, base.normalize, base.block_size)
    separate = classifier.pair_encoding == "separate"
    rows = {split: encode_rows(found, template, labels, separate) for split, found in records.items()}
    describe(rows, labels, base.block_size, console)
    torch.manual_seed(cfg.seed)  # the head's initial weights
    model = classifier_from(base, classifier).train()
    run_config = classifier_run_config(base, ft, cfg, classifier)
    if ft.lora:
        adapt(model, ft, run_config, console)
    task = ClassifyTask(rows, cfg.batch_size, resolve_device(cfg.device))
    return train_and_save(model, task, ft, cfg, run_config, base, console)


def check_base(base: TrainedModel) -> None:
    """A classifier is built on a pretrained Transformer language model: a GPT or a BERT, not a classifier."""
    if base.capabilities.classifies:
        raise SokhanError(f"{base.path} is a classifier already; fine-tune its pretrained base instead "
                          f"(finetune.base in its config.json: {base.config.get('finetune', {}).get('base', '?')})")
    if base.capabilities.needs_source or base.family not in BACKBONES:
        raise SokhanError(f"{base.path} is a '{base.family}' model; a classifier is built on a pretrained "
                          f"{' or '.join(BACKBONES)}")


def pooling_for(pooling: str, family: str, pair_encoding: str = "joint") -> str:
    """`auto` is the family's own — [CLS] (first) for BERT, the last token for GPT — and the mean when the texts of a
    pair are read separately (Sentence-BERT's)."""
    if pooling != "auto":
        return pooling
    return SEPARATE_POOLING if pair_encoding == "separate" else DEFAULT_POOLING[family]


def load_records(ft: FinetuneConfig, seed: int) -> dict[str, list[LabelledText]]:
    """The train and validation records: `ft.val_data`, or `ft.val_fraction` of `ft.data` held out by a hash of
    the record (the same text, pair and label always fall on the same side)."""
    fields = Fields(ft.text_field, ft.pair_field, ft.label_field)
    records = read_labelled(ft.data, fields)
    if ft.val_data:
        return {"train": records, "val": read_labelled(ft.val_data, fields)}
    splits: dict[str, list[LabelledText]] = {"train": [], "val": []}
    for record in records:
        key = json.dumps([record.text, record.pair, record.label], ensure_ascii=False)
        splits[hash_split(key, seed, ft.val_fraction)].append(record)
    for split, found in splits.items():
        if not found:
            raise SokhanError(f"{ft.data}: the {split} split is empty; change --val-fraction or give --valid FILE")
    return splits


def check_resumed_labels(cfg: TrainConfig, labels: list[str]) -> None:
    """A resumed run continues a head of the same labels, in the same order (the data may not have changed them)."""
    found = latest_checkpoint(cfg.out_dir) if cfg.resume else None
    if found is None:
        return
    saved = read_config(found).get("classifier", {}).get("labels")
    if saved != labels:
        raise SokhanError(f"{cfg.out_dir} was trained on the labels {saved}; this data holds {labels}: resume it with "
                          f"the data it began with, or start a new --out-dir")


def describe(rows: dict[str, LabelledRows], labels: list[str], block_size: int, console: Console) -> None:
    """One line on the data: records per split, each label's count in train, and how many were cut to fit."""
    counts = Counter(rows["train"].labels.tolist())
    shown = ", ".join(f"{label} {counts[i]:,}" for i, label in enumerate(labels[:8]))
    cut = sum(r.cut for r in rows.values())
    console.print(f"records: {len(rows['train']):,} train, {len(rows['val']):,} val; {len(labels)} labels ({shown}"
                  f"{', …' if len(labels) > 8 else ''}); {cut:,} cut to the context of {block_size} tokens",
                  highlight=False, soft_wrap=True)


def classifier_from(base: TrainedModel, classifier: ClassifierConfig) -> TransformerClassifier:
    """The base's stack, every weight as trained (LoRA adapters of a base merged first), and a new head."""
    if "lora" in base.config:
        merge_lora(base.model)
    model = TransformerClassifier(base.model.config, classifier)
    missing, unexpected = model.load_state_dict(base.model.state_dict(), strict=False)
    if sorted(missing) != ["head.bias", "head.weight"] or unexpected:  # the same stack: a bug if not
        raise AssertionError(f"classifier from {base.path}: missing {missing}, unexpected {unexpected}")
    if model.lm_head.weight is not model.embed.weight:  # an untied token head is kept but never read: frozen, so
        model.lm_head.requires_grad_(False)            # DDP does not wait for a gradient that never comes
    return model


def classifier_run_config(base: TrainedModel, ft: FinetuneConfig, cfg: TrainConfig,
                          classifier: ClassifierConfig) -> dict:
    """The base's config.json (model, normalizer, data) with this run's train, finetune and classifier sections;
    the base's own fine-tune marks (chat template, adapters merged above) are not the classifier's."""
    run_config = copy.deepcopy(base.config)
    for key in ("progress", "lora", "chat_template"):
        run_config.pop(key, None)
    run_config.update(train=dataclasses.asdict(cfg), finetune=dataclasses.asdict(ft), classifier=classifier.to_dict())
    return run_config


def adapt(model: nn.Module, ft: FinetuneConfig, run_config: dict, console: Console) -> None:
    """LoRA adapters on the stack's linear layers (everything else frozen), the head trained whole."""
    wrapped = apply_lora(model, ft.lora_targets, ft.lora_rank, ft.lora_alpha, ft.lora_dropout)
    model.head.requires_grad_(True)
    run_config["lora"] = {"targets": ft.lora_targets, "rank": ft.lora_rank, "alpha": ft.lora_alpha}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    console.print(f"LoRA rank {ft.lora_rank} on {len(wrapped)} layers, and the head: {trainable:,} trainable "
                  f"parameters")
