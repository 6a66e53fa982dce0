"""Configs of translation: how a sentence is decoded (`TranslateConfig`) and the `translate-train` recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sokhan.config.base import SEED_MAX, SEED_MIN, Config, option
from sokhan.config.data import DECODE_ERROR_MODES, check_bpe_vocab
from sokhan.config.model import MAX_VOCAB
from sokhan.config.train import DEVICE_HELP, check_device

TOO_LONG = ("truncate", "refuse")   # a source sentence longer than the model's context


@dataclass(frozen=True)
class TranslateConfig(Config):
    section: ClassVar[str] = "translate"

    beam: int = option(4, "beam size (the paper's 4); 1 is greedy decoding", low=1, high=64)
    length_penalty: float = option(0.6, "beam search's length penalty α (Wu et al. 2016: a hypothesis's log "
                                   "probability is divided by ((5 + length) / 6)^α; the paper's 0.6)", low=0,
                                   high=10)
    max_length_ratio: float = option(2.0, "at most this many target tokens per source token, plus 10 (and never "
                                     "beyond the model's context)", low=0, low_open=True, high=100)
    too_long: str = option("truncate", "a source longer than the model's context: cut it with a warning, or "
                           "refuse it", choices=TOO_LONG, what="too-long mode")
    batch_size: int = option(32, "sentences decoded together", low=1, high=4096)


# The model options a translation model does not read: not the family, not the n-gram's, and the vocabulary is the
# tokenizer's (translate-train's own vocab_size). `sokhan translate-train` offers the others as flags.
TRANSLATOR_SKIPPED_MODEL_OPTIONS = ("family", "vocab_size", "order", "smoothing", "discount")


@dataclass(frozen=True)
class TranslateTrainConfig(Config):
    section: ClassVar[str] = "translate_train"

    data: str = option("", "parallel text: a folder of aligned files (train.en/train.fa, optional valid.* and "
                       "test.*), a source<TAB>target .tsv file, or hf:NAME_OR_PATH[:SPLIT] (a 'translation' "
                       "column of {en, fa})")
    add_train: list[str] = option(help="more training pairs (repeatable): a PREFIX of aligned PREFIX.en/PREFIX.fa, "
                                  "a .tsv, a folder's train split or hf:NAME:SPLIT; a pair whose source is in "
                                  "valid or test is left out", factory=list)
    add_train_repeat: int = option(1, "each added pair is trained on this many times as often as a pair of --data "
                                   "(upsampling a small set beside a large one)", low=1, high=1000)
    out_dir: str = option("runs/translate", "the run folder: data/, checkpoints/, metrics.jsonl, scores.json")
    source_lang: str = option("en", "the language suffix of the source files (train.en)")
    target_lang: str = option("fa", "the language suffix of the target files (train.fa), normalized as Persian")
    vocab_size: int = option(8000, "size of the one BPE vocabulary both languages share", low=1, high=MAX_VOCAB)
    max_ratio: float = option(3.0, "drop training pairs whose lengths in characters differ by more than this "
                              "factor (misaligned lines)", low=1)
    on_decode_error: str = option("fail", "a line that is not valid UTF-8: stop with file:line, or skip the pair",
                                  choices=DECODE_ERROR_MODES)
    # ≈ 45 minutes of training on a 2-core CPU, so prepare + train + the test evaluation fit in an hour.
    max_time: float = option(2700.0, "seconds of training at most (0: no limit)", low=0)
    max_steps: int = option(100_000, "optimizer steps at most", low=1)
    batch_tokens: int = option(2048, "tokens per batch (source and target, padding included): sentences of "
                               "similar length are batched together", low=16)
    lr: float = option(3e-3, "peak learning rate of AdamW (β₂ 0.98, as the paper)", low=0, low_open=True)
    min_lr: float = option(1e-5, "the learning rate never falls below this", low=0)
    warmup_steps: int = option(200, "steps of linear warmup", low=0)
    lr_schedule: str = option("cosine", "after warmup: a cosine to min_lr over the time budget, or the paper's "
                              "inverse square root of the step", choices=("cosine", "inverse-sqrt"))
    curriculum: float = option(0.5, "shortest pairs first: over this fraction of the run the training batches open "
                               "from the shortest to all (Platanios et al. 2019's square-root competence); 0: all "
                               "from the start", low=0, high=1)
    label_smoothing: float = option(0.1, "§5.4 label smoothing ε_ls: the paper's 0.1", low=0, high=1, high_open=True)
    eval_interval: int = option(250, "evaluate the validation loss and save every N steps", low=1)
    beam: int = option(4, "beam size of the final test evaluation", low=1, high=64)
    eval_sentences: int = option(0, "test sentences translated for the final BLEU/chrF++ (0: all)", low=0)
    device: str = option("auto", DEVICE_HELP)
    seed: int = option(1337, "seed of the validation hold-out, the weights and the batches", low=SEED_MIN,
                       high=SEED_MAX)
    resume: bool = option(False, "continue the run in out_dir where it stopped (its prepared data is reused)")
    progress: bool = option(True, "show progress bars (on a terminal)")
    dist_timeout: float = option(600.0, "under torchrun: seconds a process waits for the others (rank 0's prepare "
                                 "among them) before it gives up", low=1)

    def check(self) -> None:
        check_device(self.device)
        check_bpe_vocab("bpe", self.vocab_size)
