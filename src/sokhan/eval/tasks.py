"""Persian task evaluation for any causal model: multiple choice, reading comprehension, bits per character.

`run_task(lm, cfg, items)` runs one task (`sokhan.config.evaluate.EvaluateConfig`) on items read
by `sokhan.eval.task_data` and returns a `TaskResult`: one `Metric` per printed line, and what
`write_result` saves beside the model (`RUN/eval/<task>-<data file stem>.json`, atomically).

**multiple-choice** is scored as lm-evaluation-harness scores a `multiple_choice` task
(EleutherAI/lm-evaluation-harness, `lm_eval/api/task.py`, `ConfigurableTask.construct_requests`
and `process_results`, read at commit 000488380f82): each option is a continuation of one
context, its log-likelihood is Σ log p(continuation token | everything before it), and

* accuracy: the option of the highest log-likelihood is the prediction;
* accuracy, length-normalized (the harness's `acc_norm`): the highest log-likelihood divided by
  the option's length in *characters*: `completion_len = np.array([float(len(i)) for i in
  choices])`, Python's `len` of the choice string, not its UTF-8 bytes (a Persian letter is two
  bytes, a digit one) and without the delimiter. Here the option's text is the normalized one the
  model reads;
* chance: 1 / (the item's options), averaged over the items.

A tie goes to the first option, as `np.argmax` gives it. The context and continuation follow
the harness's ARC task (`lm_eval/tasks/arc/arc_easy.yaml`: ``"Question: {{question}}\\nAnswer:"``,
the choice after `target_delimiter` " "), in Persian and in two styles (`EvaluateConfig.prompt`):

* cloze: ``<|bos|>question\\nپاسخ:`` + `` option``;
* listed: ``<|bos|>`` + parsinlu_mc's prompt (the numbered options shown) + ``\\nپاسخ:`` + `` n. option``.

A chat model (its config.json names the chat template) gets the question, or the listed prompt, as
the user's turn rendered by its template (`sokhan.text.chat_template`), and the continuation opens
the assistant's turn with no delimiter, as the harness does under `apply_chat_template`; "listed"
is its default, since its answer "n. option" is the form parsinlu_mc's fine-tuning responses
have. Every text is normalized as the model's training text was, context and option apart. They are
encoded apart, where the harness encodes them joined and keeps the ids past the context's
(`_encode_pair`): the same ids, as every continuation starts a pre-token (a space, or a special
token before it) and sokhan's tokenizers never merge across one.

The sequences are scored in batches, longest first, padded on the right: a causal model's logits
at a position never read what comes after it. A Transformer reads at most `block_size` tokens, so
the context is cut from the left to leave the continuation room. Both are what the harness does
(`lm_eval/models/huggingface.py`, `HFLM._loglikelihood_tokens`: sorted longest first, padded,
`(context_enc + continuation_enc)[-(self.max_length + 1):][:-1]`). A recurrent model reads any
length and an n-gram scores by lookup (`log_probs`), so both read the whole context.

**reading-comprehension**: the model answers greedily (`sokhan.infer.sampling`, temperature 0):
a chat model in its template, stopping at `<|end|>`; any other after ``prompt\\nپاسخ:``, stopping
at the first line break. The prompt is cut from the left to leave room for `max_new_tokens`
(at least half the context stays the prompt's, as `infer.chat.chat_prompt` leaves it). Exact
match and token F1 are those of the official SQuAD v1.1 script (`evaluate-v1.1.py`: the best
over the reference answers, F1 from the bag of common tokens), after `answer_tokens`: the
model's Persian normalizer (letters, digits and spacing as in training), lowercase, every
punctuation character removed (SQuAD's `string.punctuation`, and every Unicode punctuation
character, so '،', '؛', '؟', '«', '»' and '٫' go too), English articles removed (SQuAD's
rule; kept for English answers), then split at whitespace. The zero-width non-joiner is part
of a Persian word and stays in it.

**bpc**: bits per character of a text file or folder, by the one rule of `sokhan eval`
(`sokhan.eval.bpc.score_documents`, documents cut as the model's data was cut).

**classify**: a classifier made by `sokhan finetune --task classify` reads every record as it read
its training data (the fields it was trained with unless others are named, the same pair template,
`sokhan.infer.classify`); the prediction is the label of the highest probability (the first of a
tie). Accuracy, macro-F1 and the share of the file's commonest label (the majority-class baseline)
are printed; the confusion matrix, every label's precision, recall and F1, and each record's
prediction are saved, and the matrix is drawn beside the JSON (`.png` and an offline `.html`);
the definitions are scikit-learn's (`sokhan.eval.classification`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import string
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sokhan.config import ClassifierConfig, SampleConfig
from sokhan.config.evaluate import EvaluateConfig
from sokhan.data.labelled import Fields, LabelledText
from sokhan.data.sources import file_documents, iter_documents
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.eval import classification
from sokhan.eval.bpc import model_doc_split, model_val_fingerprint, score_documents
from sokhan.eval.task_data import (
    ChoiceItem,
    ReadingItem,
    listed_prompt,
    read_choice_items,
    read_classify_items,
    read_reading_items,
)
from sokhan.infer.classify import label_probabilities
from sokhan.infer.sampling import stream_text
from sokhan.inspect.picture import Picture
from sokhan.inspect.render import model_name
from sokhan.inspect.save import save_picture
from sokhan.models.checkpoint import CONFIG, read_config, resolve_model_dir, run_folder, write_atomic
from sokhan.models.trained import TrainedModel
from sokhan.text.chat_template import TEMPLATE_NAME, ChatTemplate, Message

ANSWER_CUE = "پاسخ:"  # "Answer:", after which a model that is not a chat model writes its answer
ARTICLES = re.compile(r"\b(a|an|the)\b")
Request = tuple[list[int], list[int]]  # (context ids, continuation ids)


@dataclass(frozen=True)
class Metric:
    """One printed line: `accuracy 41.3 % (1,050 items)`."""

    name: str
    value: float          # a fraction for unit "%", else the figure itself
    count: int
    unit: str = "%"
    of: str = "items"

    def line(self) -> str:
        figure = f"{100 * self.value:.1f} %" if self.unit == "%" else f"{self.value:.4f}"
        return f"{self.name} {figure} ({self.count:,} {self.of})"


@dataclass
class TaskResult:
    """What a task measured: the metrics, how (`details`), and each item's outcome (`items`)."""

    task: str
    data: str
    metrics: list[Metric]
    details: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    picture: Picture | None = None  # drawn beside the JSON (classify: the confusion matrix)


# --------------------------------------------------------------------------- the tasks

def load_items(cfg: EvaluateConfig, model: str | Path | None = None,
               ) -> list[ChoiceItem] | list[ReadingItem] | list[LabelledText] | None:
    """A task's items, every record checked (None for bpc, whose text is streamed when scored). The classify task
    reads the fields and labels of the classifier in the folder `model` (its config.json only: no weights)."""
    if cfg.task == "multiple-choice":
        return read_choice_items(cfg.data, cfg.limit)
    if cfg.task == "reading-comprehension":
        return read_reading_items(cfg.data, cfg.limit)
    if cfg.task == "classify":
        classifier = saved_classifier(model)
        return read_classify_items(cfg.data, classify_fields(cfg, classifier), classifier.labels, cfg.limit)
    text_documents(Path(cfg.data), "file")  # the path checked now, read later
    return None


def run_task(lm: TrainedModel, cfg: EvaluateConfig, items: list | None) -> TaskResult:
    """Run one task on `items` (from `load_items`) and time it."""
    if cfg.task == "classify":
        lm.require_classifier("the classify task")
    else:
        lm.require_causal(f"the {cfg.task} task")
    start = time.perf_counter()
    if cfg.task == "multiple-choice":
        result = multiple_choice(lm, items, cfg)
    elif cfg.task == "reading-comprehension":
        result = reading_comprehension(lm, items, cfg)
    elif cfg.task == "classify":
        result = classify(lm, items, cfg)
    else:
        result = bits_per_char(lm, cfg)
    result.seconds = time.perf_counter() - start
    return result


def is_chat_model(lm: TrainedModel) -> bool:
    """Fine-tuned on conversations: its config.json names the chat template it was rendered with."""
    return lm.config.get("chat_template") == TEMPLATE_NAME


# --------------------------------------------------------------------------- multiple choice

def multiple_choice(lm: TrainedModel, items: list[ChoiceItem], cfg: EvaluateConfig) -> TaskResult:
    """Every option of every item scored in one batched pass, then accuracy, its length-normalized variant
    and chance (module docstring)."""
    chat = is_chat_model(lm)
    style = cfg.prompt if cfg.prompt != "auto" else ("listed" if chat else "cloze")
    requests, lengths = [], []
    for item in items:
        context = choice_context(lm, item, style, chat)
        for k in item.choices:
            where = f"{item.where}: option {k + 1}"
            text = lm.normalize(choice_text(item, k, style))
            if not text:
                raise SokhanError(f"{where} is empty once normalized: there is nothing to score")
            continuation = lm.tokenizer.encode_plain(text if chat else " " + text)
            requests.append(fit_context(lm, context, continuation, where))
            lengths.append(len(text))
    scores = continuation_logprobs(lm.model, requests, cfg.batch_size, lm.tokenizer.pad_id)
    outcomes, first = [], 0
    for item in items:
        last = first + len(item.choices)
        outcomes.append(choice_outcome(item, scores[first:last], lengths[first:last]))
        first = last
    n = len(items)
    metrics = [Metric("accuracy", sum(o["correct"] for o in outcomes) / n, n),
               Metric("accuracy, length-normalized", sum(o["correct_norm"] for o in outcomes) / n, n),
               Metric("chance", sum(1 / len(item.choices) for item in items) / n, n)]
    details = {"prompt": style, "chat_template": chat, "empty_options_skipped":
               sum(len(item.options) - len(item.choices) for item in items)}
    return TaskResult("multiple-choice", str(cfg.data), metrics, details, outcomes)


def choice_context(lm: TrainedModel, item: ChoiceItem, style: str, chat: bool) -> list[int]:
    """The ids every option of `item` continues (module docstring)."""
    text = item.question if style == "cloze" else listed_prompt(item.question, item.options)
    if chat:
        return ChatTemplate(lm.tokenizer, lm.normalize).encode([Message("user", text)], add_generation_prompt=True)[0]
    return lm.encode_prompt(f"{text}\n{ANSWER_CUE}")


def choice_text(item: ChoiceItem, k: int, style: str) -> str:
    """Option k as the answer the model is asked to give: its text (cloze), or 'n. text' (listed)."""
    return item.options[k] if style == "cloze" else f"{k + 1}. {item.options[k]}"


def fit_context(lm: TrainedModel, context: list[int], continuation: list[int], where: str) -> Request:
    """(context, continuation), the context cut from the left so that a Transformer reads both at once."""
    if not lm.capabilities.windowed:
        return context, continuation
    room = lm.block_size + 1 - len(continuation)  # the last token is predicted, never read
    if room < 1:
        raise SokhanError(f"{where} is {len(continuation)} tokens: more than the model's context of "
                          f"{lm.block_size} can score after any context")
    return context[-room:], continuation


def choice_outcome(item: ChoiceItem, scores: Sequence[float], lengths: Sequence[int]) -> dict[str, Any]:
    """What one item scored: the prediction by log-likelihood, and by log-likelihood per character."""
    best = _first_max(scores)
    best_norm = _first_max([s / n for s, n in zip(scores, lengths)])
    predicted, predicted_norm = item.choices[best], item.choices[best_norm]
    loglik = dict(zip(item.choices, scores))
    return {"where": item.where, "answer_index": item.answer, "predicted_index": predicted,
            "predicted_index_norm": predicted_norm, "correct": predicted == item.answer,
            "correct_norm": predicted_norm == item.answer,
            "loglik": [_finite(loglik[i]) if i in loglik else None for i in range(len(item.options))]}


def _first_max(values: Sequence[float]) -> int:
    """The index of the largest value, the first of a tie (as np.argmax); −inf loses, NaN never wins."""
    return max(range(len(values)), key=lambda i: (values[i] if values[i] == values[i] else -np.inf, -i))


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None  # JSON has no -Infinity (an n-gram's probability 0)


@torch.inference_mode()
def continuation_logprobs(model: nn.Module, requests: Sequence[Request], batch_size: int, pad_id: int,
                          ) -> list[float]:
    """Σ log p(continuation | context) of each (context, continuation), in nats, in the order given.

    An n-gram (`lookup`) scores each sequence by `log_probs`; any other model scores up to
    `batch_size` sequences per forward pass, longest first so that rows of a batch are alike.
    """
    if model.capabilities.lookup:
        return [float(model.log_probs(np.asarray(c + x, dtype=np.int64))[-len(x):].sum()) for c, x in requests]
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    out = [0.0] * len(requests)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        for i, value in zip(rows, _batch_logprobs(model, [requests[i] for i in rows], pad_id)):
            out[i] = value
    return out


def _batch_logprobs(model: nn.Module, requests: Sequence[Request], pad_id: int) -> list[float]:
    """One forward pass over right-padded rows; the logits at position p predict token p + 1."""
    device = model_device(model)
    seqs = [c + x for c, x in requests]
    idx = torch.full((len(seqs), max(map(len, seqs)) - 1), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        idx[row, :len(seq) - 1] = torch.tensor(seq[:-1])
    logits = model(idx.to(device)).logits
    picked = torch.cat([logits[row, len(c) - 1:len(c) + len(x) - 1] for row, (c, x) in enumerate(requests)])
    targets = torch.tensor([t for _, x in requests for t in x], device=device)
    logp = torch.log_softmax(picked.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1).double()
    return [part.sum().item() for part in logp.split([len(x) for _, x in requests])]


# --------------------------------------------------------------------------- reading comprehension

def reading_comprehension(lm: TrainedModel, items: list[ReadingItem], cfg: EvaluateConfig) -> TaskResult:
    """A greedy answer to every item, then exact match and F1 against its answers, averaged."""
    chat = is_chat_model(lm)
    outcomes = []
    for item in items:
        prediction = greedy_answer(lm, item.prompt, cfg.max_new_tokens, chat)
        outcomes.append({"where": item.where, "prediction": prediction,
                         "exact_match": exact_match(prediction, item.answers, lm.normalize),
                         "f1": f1(prediction, item.answers, lm.normalize)})
    n = len(items)
    metrics = [Metric("exact match", sum(o["exact_match"] for o in outcomes) / n, n),
               Metric("F1", sum(o["f1"] for o in outcomes) / n, n)]
    details = {"chat_template": chat, "max_new_tokens": cfg.max_new_tokens}
    return TaskResult("reading-comprehension", str(cfg.data), metrics, details, outcomes)


def greedy_answer(lm: TrainedModel, prompt: str, max_new_tokens: int, chat: bool) -> str:
    """The model's answer to `prompt`, greedy, stripped (module docstring: where it stops, how the prompt is cut)."""
    if chat:
        ids = ChatTemplate(lm.tokenizer, lm.normalize).encode([Message("user", prompt)], add_generation_prompt=True)[0]
    else:
        ids = lm.encode_prompt(f"{prompt}\n{ANSWER_CUE}")
    room = max(lm.block_size - max_new_tokens, lm.block_size // 2)
    cfg = SampleConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=[] if chat else ["\n"])
    return "".join(stream_text(lm.model, lm.tokenizer, ids[-room:], cfg)).strip()


def answer_tokens(text: str, normalize: Callable[[str], str]) -> list[str]:
    """`text` as SQuAD v1.1 compares answers, after Persian normalization (module docstring)."""
    text = normalize(text).lower()
    text = "".join(ch for ch in text if not _punctuation(ch))
    return ARTICLES.sub(" ", text).split()


def _punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def exact_match(prediction: str, answers: Sequence[str], normalize: Callable[[str], str]) -> float:
    """1.0 when the prediction's tokens are some answer's tokens, else 0.0."""
    tokens = answer_tokens(prediction, normalize)
    return float(any(tokens == answer_tokens(a, normalize) for a in answers))


def f1(prediction: str, answers: Sequence[str], normalize: Callable[[str], str]) -> float:
    """The best token F1 of the prediction against any answer (SQuAD v1.1's `f1_score`, its max over answers)."""
    tokens = answer_tokens(prediction, normalize)
    return max(token_f1(tokens, answer_tokens(a, normalize)) for a in answers)


def token_f1(prediction: list[str], reference: list[str]) -> float:
    """Harmonic mean of precision and recall of the tokens in common (counted with repeats); 0 when none are."""
    same = sum((Counter(prediction) & Counter(reference)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(reference)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- bits per character

def bits_per_char(lm: TrainedModel, cfg: EvaluateConfig) -> TaskResult:
    """`sokhan eval`'s figure for a file, or for a folder read as `sokhan prepare` reads one."""
    doc_split = cfg.doc_split or model_doc_split(lm.config)
    score = score_documents(lm.model, lm.tokenizer, lm.normalize, text_documents(Path(cfg.data), doc_split),
                            lm.block_size, cfg.stride, what=str(cfg.data))
    metrics = [Metric("bits/char", score.bits_per_char, score.chars, unit="bits/char", of="characters")]
    details = {"documents": score.documents, "tokens": score.tokens, "nll_nats": score.nll, "doc_split": doc_split,
               "text_fingerprint": score.fingerprint,
               "is_model_validation_text": score.fingerprint == model_val_fingerprint(lm.config)}
    return TaskResult("bpc", str(cfg.data), metrics, details)


def text_documents(path: Path, doc_split: str) -> Iterator[str]:
    """A file's documents as `sokhan eval` reads them; a folder's as `sokhan prepare` reads a folder source
    (every .txt, .md, .jsonl and .parquet under it, sorted by path)."""
    if path.is_dir():
        if "," in str(path):  # a source spec joins sources with commas
            raise SokhanError(f"{path}: a folder whose path holds a comma cannot be read; rename or link it")
        return iter_documents(str(path.resolve()), doc_split=doc_split)
    return file_documents(path, doc_split=doc_split, on_decode_error="fail")


# --------------------------------------------------------------------------- classification

def saved_classifier(model: str | Path | None) -> ClassifierConfig:
    """The classifier section of a model folder's config.json, checked; a model that is not a classifier is refused."""
    folder = resolve_model_dir(model if model is not None else "")
    config = read_config(folder)
    if "classifier" not in config:
        family = config["model"].get("family", "?") if isinstance(config["model"], dict) else "?"
        raise SokhanError(f"{folder} is a '{family}' language model, not a classifier; the classify task needs one "
                          f"made by `sokhan finetune --task classify`")
    return ClassifierConfig.from_dict(config["classifier"], f"{folder / CONFIG} [classifier]")


def classify_fields(cfg: EvaluateConfig, classifier: ClassifierConfig) -> Fields:
    """The fields named in `cfg`, else the classifier's own; a pair field exactly when the classifier reads pairs."""
    fields = Fields(cfg.text_field or classifier.text_field,
                    classifier.pair_field if cfg.pair_field is None else cfg.pair_field,
                    cfg.label_field or classifier.label_field)
    if bool(fields.pair) != bool(classifier.pair_field):
        if classifier.pair_field:
            raise SokhanError(f"the classifier reads text pairs ({classifier.text_field}, {classifier.pair_field}): "
                              f"--pair-field must name the field of the second text")
        raise SokhanError(f"the classifier reads single texts ({classifier.text_field}): leave --pair-field out")
    return fields


def classify(lm: TrainedModel, items: list[LabelledText], cfg: EvaluateConfig) -> TaskResult:
    """Every record's label probabilities in batches, the likeliest label its prediction; the figures and the
    confusion matrix (module docstring)."""
    probs = label_probabilities(lm, [i.text for i in items], [i.pair for i in items], cfg.batch_size)
    labels = lm.labels
    index = {label: k for k, label in enumerate(labels)}
    truth = [index[item.label] for item in items]
    predicted = probs.values.argmax(dim=1).tolist()  # the first of a tie
    matrix = classification.confusion_matrix(truth, predicted, len(labels))
    best, share = classification.majority(matrix)
    n = len(items)
    metrics = [Metric("accuracy", classification.accuracy(matrix), n),
               Metric("macro-F1", classification.macro_f1(matrix), n),
               Metric("majority class", share, n)]
    saved = ClassifierConfig(**lm.config["classifier"])
    details = {"fields": dataclasses.asdict(classify_fields(cfg, saved)), "pooling": saved.pooling,
               "pair_encoding": saved.pair_encoding, "majority_label": labels[best], "cut_to_context": probs.cut,
               "context": lm.block_size, **classification.summary(matrix, labels)}
    outcomes = [{"where": item.where, "label": item.label, "predicted": labels[p],
                 "probability": round(float(probs.values[k, p]), 6), "correct": p == t}
                for k, (item, t, p) in enumerate(zip(items, truth, predicted))]
    result = TaskResult("classify", str(cfg.data), metrics, details, outcomes)
    figures = ", ".join(m.line().rsplit(" (", 1)[0] for m in metrics)
    result.picture = classification.confusion_picture(
        matrix, labels, Path(result_name("classify", str(cfg.data))).stem,
        f"{model_name(lm.path)} on {Path(cfg.data).name}", f"{figures} ({n:,} records)")
    return result


# --------------------------------------------------------------------------- results

def result_name(task: str, data: str) -> str:
    """The file a result is saved as: `<task>-<data file stem>.json`."""
    return f"{task}-{Path(os.path.abspath(data)).stem}.json"  # abspath: "." is the folder's own name


def result_path(lm: TrainedModel, task: str, data: str) -> Path:
    """Where a result is saved: the model's run folder (a checkpoint folder is pruned, the run stays)."""
    return run_folder(lm.path) / "eval" / result_name(task, data)


def write_result(lm: TrainedModel, cfg: EvaluateConfig, result: TaskResult) -> Path:
    """Save `result` as JSON beside the model, atomically (`write_atomic`), and return the path."""
    path = result_path(lm, result.task, result.data)
    record = {"task": result.task, "data": result.data, "data_sha256": _sha256(Path(result.data)),
              "model": str(lm.path), "family": lm.family, "step": lm.config.get("progress", {}).get("step"),
              "options": cfg.to_dict(), "seconds": round(result.seconds, 3),
              "metrics": {m.name: {"value": m.value, "count": m.count, "unit": m.unit, "of": m.of}
                          for m in result.metrics},
              "details": result.details, "items": result.items}
    if result.picture is not None:
        record["picture"] = [f"{result.picture.name}.png", f"{result.picture.name}.html"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record, ensure_ascii=False, indent=1, allow_nan=False) + "\n")
        if result.picture is not None:
            save_picture(result.picture, path.parent)
    except OSError as e:
        raise SokhanError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _sha256(path: Path) -> str | None:
    """The data file's digest, so that a result says which data it scored (None for a folder)."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
