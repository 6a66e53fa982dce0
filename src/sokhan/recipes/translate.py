"""Recipe: train the paper's encoder–decoder to translate English → Persian, then score it.

1. prepare: read the parallel text (aligned files, a TSV or a Hugging Face dataset, and any
   `add_train` sources), normalize the Persian side with the project's normalizer, drop empty and
   misaligned pairs (counts printed), train one byte-level BPE on both languages
   (`sokhan.data.parallel`);
2. train on the one engine (`sokhan.train.engine`): batches by token count opened shortest
   first (the curriculum), label smoothing 0.1, warmup then cosine (or the paper's inverse
   square root), checkpoints, exact resume;
3. translate the test split with beam search and print BLEU and chrF++ (sacrebleu), and a few
   sample translations, the sentence of the project's tour among them.

The run folder is a model folder (`sokhan translate OUT "…"`), with `scores.json` beside it.

Under torchrun (`torchrun --nproc_per_node N -m sokhan translate-train …`, DDP) the processes share
out the training only: rank 0 prepares the data (in the run folder, which every process must see)
while the others wait, and scores the test split alone after training (the others end when training
does).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sokhan.config import (
    NormalizerConfig,
    TrainConfig,
    TranslateConfig,
    TranslateTrainConfig,
    check_out_dir,
)
from sokhan.data.parallel import ParallelData, prepare_parallel
from sokhan.device import resolve_device
from sokhan.errors import SokhanError
from sokhan.eval.translation import TranslationScore, translation_scores
from sokhan.infer.translate import translate_lines
from sokhan.inspect.curves import draw_loss_curve
from sokhan.models import build_model
from sokhan.models.checkpoint import latest_checkpoint, write_atomic
from sokhan.models.trained import TrainedModel
from sokhan.recipes.pretrain import model_config_for
from sokhan.text.normalize import PersianNormalizer
from sokhan.text.tokenizers import Tokenizer
from sokhan.train import distributed
from sokhan.train.engine import Trainer, TrainResult
from sokhan.train.translation import TranslationTask

DEFAULT_PRESET = "seq2seq-small"
# The example the project's texts walk through the Transformer with (its reference translation:
# "ترنسفورمرها از داده‌ها یاد می‌گیرند"), and two everyday sentences, far from the training text.
TOUR_SENTENCES = ("Transformers learn from data.", "The weather is nice today.", "I love reading books.")
SAMPLES_FROM_TEST = 3


@dataclass
class TranslateResult:
    train: TrainResult
    score: TranslationScore | None = None          # on the test split (else valid), None when stopped early
    split: str = "test"
    samples: list[dict[str, str]] = field(default_factory=list)


def translate_train(cfg: TranslateTrainConfig, model: dict[str, Any] | None = None,
                    console: Console | None = None) -> TranslateResult:
    """Prepare `cfg.data`, train the encoder–decoder that `model` describes (ModelConfig values; preset
    seq2seq-small unless given), and score it on the test split.

    Under torchrun every process runs this. Rank 0 alone prepares the data (the others wait for it:
    `distributed.rank0_first`), prints, writes the loss curve (the engine's `on_save` runs on rank 0) and, once
    training is over, translates the test split and writes the scores: beam search over the split
    runs in that one process, which the others do not wait for. A `--batch-tokens` batch is the
    whole job's, shared out by rows (`TranslationTask.split_rows`)."""
    console = console or Console(stderr=True)
    check_run_folder(cfg)
    train_cfg = train_config(cfg)
    group = distributed.start(train_cfg.fsdp, train_cfg.dist_timeout, resolve_device(cfg.device))
    if group is not None and not group.main:  # only rank 0 speaks
        console = Console(stderr=True, quiet=True)
    try:
        data_dir = Path(cfg.out_dir) / "data"
        distributed.rank0_first(group, "preparing the data", lambda: prepare_data(cfg, data_dir, console))
        data = ParallelData(data_dir)
        trained = train_translator(cfg, train_cfg, model, data, console)
    finally:  # leave the group this recipe joined (the engine leaves open a group it did not create)
        if group is not None:
            group.close()
    result = TranslateResult(trained)
    if trained.interrupted or (group is not None and not group.main):
        return result
    return score_run(result, cfg, data, console)


def check_run_folder(cfg: TranslateTrainConfig) -> None:
    """What every rank can refuse alike before any work (so none waits for another that stopped)."""
    if not cfg.data:
        raise SokhanError("translate-train needs --data: a folder of train.en/train.fa, a .tsv file or hf:NAME")
    check_out_dir(cfg.out_dir)
    out = Path(cfg.out_dir)
    if latest_checkpoint(out) is not None and not cfg.resume:  # before preparing: it would replace the run's data
        raise SokhanError(f"{out} already has checkpoints; pass --resume to continue, or another --out-dir")


def train_config(cfg: TranslateTrainConfig) -> TrainConfig:
    """The engine's settings for a translation run."""
    return TrainConfig(data=str(Path(cfg.out_dir) / "data"), out_dir=cfg.out_dir, max_steps=cfg.max_steps,
                       max_time=cfg.max_time, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                       lr_schedule=cfg.lr_schedule, beta2=0.98, weight_decay=0.01, eval_interval=cfg.eval_interval,
                       eval_iters=20, seed=cfg.seed, device=cfg.device, resume=cfg.resume, progress=cfg.progress,
                       dist_timeout=cfg.dist_timeout)


def prepare_data(cfg: TranslateTrainConfig, data_dir: Path, console: Console) -> None:
    """Write the parallel folder (the tokenizer among it), or keep a resumed run's own."""
    if cfg.resume and (data_dir / "meta.json").is_file():
        console.print(f"resuming: the prepared data in {data_dir} is reused")
        return
    prepare_parallel(cfg.data, data_dir, PersianNormalizer(NormalizerConfig()), vocab_size=cfg.vocab_size,
                     max_ratio=cfg.max_ratio, seed=cfg.seed, on_decode_error=cfg.on_decode_error,
                     source_lang=cfg.source_lang, target_lang=cfg.target_lang, add_train=cfg.add_train,
                     add_repeat=cfg.add_train_repeat, console=console)


def train_translator(cfg: TranslateTrainConfig, train_cfg: TrainConfig, model: dict[str, Any] | None,
                     data: ParallelData, console: Console) -> TrainResult:
    """Build the model and the task on the prepared data and train them on the engine (every rank alike)."""
    tokenizer_json = data.tokenizer_path.read_text(encoding="utf-8")
    # As pretraining: the resumed checkpoint's config, or the preset <- the values, with the data's vocabulary.
    model_cfg = model_config_for(train_cfg, data.meta, {"preset": DEFAULT_PRESET, **(model or {})})
    if model_cfg.family != "seq2seq":
        raise SokhanError(f"translate-train trains the encoder–decoder (family seq2seq), not '{model_cfg.family}'; "
                          f"choose a seq2seq preset (seq2seq-tiny, seq2seq-small, seq2seq-base)")
    torch.manual_seed(cfg.seed)
    net = build_model(model_cfg)
    tok = Tokenizer.load(data.tokenizer_path)
    task = TranslationTask(data, cfg.batch_tokens, model_cfg.block_size, cfg.label_smoothing,
                           resolve_device(cfg.device), cfg.seed, tok.pad_id, tok.bos_id, tok.eos_id,
                           curriculum=cfg.curriculum)
    for split, n in task.dropped.items():
        if n:
            console.print(f"{split}: {n:,} pairs longer than the context of {model_cfg.block_size} tokens left out")
    run_config = {
        "format": 1,
        "model": model_cfg.to_dict(),
        "train": dataclasses.asdict(train_cfg),
        "normalizer": NormalizerConfig().to_dict(),
        "data": {"source": cfg.data, "tokenizer": "bpe", "kind": "parallel", "splits": data.meta["splits"]},
        "translation": {"source_lang": data.meta["source_lang"], "target_lang": data.meta["target_lang"],
                        "batch_tokens": cfg.batch_tokens, "label_smoothing": cfg.label_smoothing,
                        "curriculum": cfg.curriculum},
    }
    console.print(f"model: seq2seq, {net.num_parameters() / 1e6:.2f}M parameters, {model_cfg.n_layer} + "
                  f"{model_cfg.n_layer} layers, d_model {model_cfg.n_embd}, {model_cfg.n_head} heads; "
                  f"{len(task.batches['train']):,} train batches of ≤ {cfg.batch_tokens:,} tokens")
    return Trainer(net, task, train_cfg, run_config, tokenizer_json, console, on_save=draw_loss_curve).fit()


def score_run(result: TranslateResult, cfg: TranslateTrainConfig, data: ParallelData,
              console: Console) -> TranslateResult:
    """Translate the test split (valid when there is none) with beam search; print and save the scores."""
    split = "test" if "test" in data.splits() else "valid"
    sources, references = data.texts(split)
    if cfg.eval_sentences:
        sources, references = sources[: cfg.eval_sentences], references[: cfg.eval_sentences]
    translator = TrainedModel.load(cfg.out_dir, device=cfg.device)
    decode = TranslateConfig(beam=cfg.beam)
    console.print(f"translating the {split} split ({len(sources):,} sentences, beam {cfg.beam}) …")
    hypotheses = list(translate_lines(translator, sources, decode))
    result.score, result.split = translation_scores(hypotheses, references), split
    console.print(f"[bold]{split}: {result.score}[/]")
    console.print(f"  {result.score.bleu_signature}\n  {result.score.chrf_signature}", highlight=False)
    tour = list(translate_lines(translator, TOUR_SENTENCES, decode))
    result.samples = [{"source": s, "translation": h, "reference": r}
                      for s, h, r in zip(sources[:SAMPLES_FROM_TEST], hypotheses, references)]
    result.samples += [{"source": s, "translation": h} for s, h in zip(TOUR_SENTENCES, tour)]
    for sample in result.samples:
        console.print(f"  EN  {sample['source']}\n  FA  {sample['translation']}", highlight=False)
        if "reference" in sample:
            console.print(f"  REF {sample['reference']}", highlight=False)
    out = Path(cfg.out_dir)
    write_atomic(out / f"{split}.hyp.{data.meta['target_lang']}", "".join(h + "\n" for h in hypotheses))
    write_atomic(out / "scores.json", json.dumps({
        "split": split, **result.score.to_dict(), "beam": cfg.beam, "step": result.train.step,
        "train_seconds": round(result.train.elapsed, 1), "parameters": translator.model.num_parameters(),
        "samples": result.samples}, ensure_ascii=False, indent=2))
    return result
