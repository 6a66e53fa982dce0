"""`sokhan report RUN…`: a report card, one Markdown page and its pictures that say what each run is and how good.

For each run, from what its folder already holds and what one pass of the leaderboard's scorer
adds: the data (documents, characters, tokens, characters per token), the tokenizer, the model
(parameters, FLOPs per token), the training (steps, tokens, wall time, tokens/s; the curves of
all the runs in one picture), the held-out score on the project's one scale (bits per character
of the whole validation split, the leaderboard's figure; a masked encoder's masked loss and
accuracy; a translator's BLEU and chrF++ from its scores.json), every task result in its
`eval/` folder (`sokhan evaluate`), a few samples drawn with fixed seeds, and the machine
(processor, accelerator, memory, Python, torch, the sokhan commit).

nanochat wrote such a report.md for its runs and later dropped it; this one is for every
family, and writes nothing but report.md, curves.png/.html and report.json beside it.

FLOPs per token are Kaplan et al. 2020's count (Table 1): a forward pass costs about
2·N + 2·n_layer·n_ctx·d_model, N the non-embedding parameters, the second term the attention
scores over a full context; training about three times that (forward + backward). A recurrent
network is 2·N (no attention term); an n-gram looks its probabilities up and has none.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sokhan
from sokhan.api import LanguageModel
from sokhan.device import processor
from sokhan.errors import SokhanError
from sokhan.eval.leaderboard import summarize
from sokhan.infer.fill import fill_masks
from sokhan.inspect.curves import plot_curves
from sokhan.models.checkpoint import write_atomic

PROMPTS = ("دل", "الا یا ایها الساقی")                   # a causal model's samples begin so
CHAT_QUESTIONS = ("سلام، حالت چطوره؟",)                  # a chat model is asked
TRANSLATE = ("Transformers learn from data.",)           # a translator translates
FILL = ("دل <mask> است",)                                # a masked encoder fills
SAMPLE_TOKENS = 60


@dataclass
class Card:
    """One run's facts, each section a list of (what, value) rows (a value None: not known for this run)."""

    run: Path
    family: str
    sections: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    samples: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_report(runs: list[str | Path], out_dir: str | Path, device: str = "auto") -> Path:
    """Write out_dir/report.md (and report.json, curves.png/.html) for `runs`; returns the report's path."""
    if not runs:
        raise SokhanError("give at least one run folder")
    out = Path(out_dir)
    cards = [run_card(Path(run), device) for run in runs]
    try:
        out.mkdir(parents=True, exist_ok=True)
        curves = plot_curves([card.run for card in cards], out)
    except SokhanError as e:  # no metrics to draw (an n-gram is counted, not trained): the card says so
        curves = None
        cards[0].notes.append(f"no training curves: {e}")
    machine = environment()
    text = render(cards, machine, curves.name if curves is not None else None)
    path = out / "report.md"
    try:
        write_atomic(path, text)
        write_atomic(out / "report.json", json.dumps({"environment": machine, "runs": [
            {"run": str(c.run), "family": c.family, **{name: dict(rows) for name, rows in c.sections.items()},
             "samples": c.samples} for c in cards]}, ensure_ascii=False, indent=1, default=str) + "\n")
    except OSError as e:
        raise SokhanError(f"cannot write {path}: {e.strerror or e}") from None
    return path


# -- one run -----------------------------------------------------------------------------------------------------

def run_card(run: Path, device: str) -> Card:
    lm = LanguageModel.load(run, device=device)
    card = Card(run, lm.family)
    config = lm.config
    card.sections["data"] = data_rows(config)
    card.sections["tokenizer"] = [("kind", config.get("data", {}).get("tokenizer") or lm.tokenizer.kind),
                                  ("vocabulary", f"{lm.tokenizer.vocab_size:,}")]
    card.sections["model"] = model_rows(lm)
    card.sections["training"] = training_rows(config)
    card.sections["held-out"] = held_out_rows(run, lm, device, card.notes)
    card.sections["tasks"] = task_rows(run)
    card.samples = samples(lm)
    return card


def data_rows(config: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the model was trained on: the prepared data's counts (config.json's data section, from its meta.json),
    and for a fine-tuned model what it was fine-tuned on."""
    data = config.get("data", {})
    rows: list[tuple[str, Any]] = [("source", data.get("source") or config.get("train", {}).get("data"))]
    for split, info in (data.get("splits") or {}).items():
        try:
            per_token = info["chars"] / info["tokens"] if "chars" in info else None
            counts = f"{info['documents']:,} documents, " + (f"{info['chars']:,} characters, " if per_token else "")
            rows.append((split, counts + f"{info['tokens']:,} tokens" +
                         (f" ({per_token:.2f} characters per token)" if per_token else "")))
        except (KeyError, TypeError, ZeroDivisionError):
            continue  # an older or foreign config: the counts are only a courtesy
    if "finetune" in config:
        tuned = config["finetune"]
        rows.append(("fine-tuned on", f"{tuned.get('data')} (from {tuned.get('base')}"
                                      f"{', LoRA' if tuned.get('lora') else ''})"))
    return rows


def model_rows(lm: LanguageModel) -> list[tuple[str, Any]]:
    cfg, caps = lm.model.config, lm.capabilities
    params = int(lm.model.num_parameters())
    rows: list[tuple[str, Any]] = [("family", cfg.family), ("parameters", f"{params:,}")]
    if caps.lookup:
        return rows + [("order", cfg.order), ("FLOPs per token", "none: probabilities are looked up")]
    rows.append(("shape", f"{cfg.n_layer} layers × {cfg.n_embd}, context {cfg.block_size}"))
    forward = forward_flops(lm.model, cfg, caps.attention)
    rows.append(("FLOPs per token", f"forward ≈ {forward / 1e6:,.2f} M, training ≈ {3 * forward / 1e6:,.2f} M"))
    return rows


def forward_flops(model: torch.nn.Module, cfg: Any, attention: bool) -> float:
    """Kaplan et al. 2020, Table 1: 2·N (non-embedding) + 2·n_layer·n_ctx·d_model for a Transformer."""
    embedding = sum(p.numel() for name, p in model.named_parameters()
                    if name.split(".")[0] in ("embed", "positions"))
    non_embedding = int(model.num_parameters()) - embedding
    return 2.0 * non_embedding + (2.0 * cfg.n_layer * cfg.block_size * cfg.n_embd if attention else 0.0)


def training_rows(config: dict[str, Any]) -> list[tuple[str, Any]]:
    progress = config.get("progress", {})
    tokens, seconds = int(progress.get("tokens", 0)), float(progress.get("elapsed", 0.0))
    rows: list[tuple[str, Any]] = [("steps", f"{progress.get('step', 0):,}"), ("tokens", f"{tokens:,}"),
                                   ("wall time", f"{seconds:,.0f} s")]
    if seconds > 0:
        rows.append(("tokens/s", f"{tokens / seconds:,.0f}"))
    train = config.get("train", {})
    rows += [(name, train[name]) for name in ("batch_size", "lr", "max_steps", "max_time", "device") if name in train]
    return rows


def held_out_rows(run: Path, lm: LanguageModel, device: str, notes: list[str]) -> list[tuple[str, Any]]:
    """The project's one scale where it applies, else what the family is measured by."""
    caps = lm.capabilities
    if caps.needs_source:
        scores = run / "scores.json"
        if not scores.is_file():
            return [("BLEU / chrF++", None)]
        data = json.loads(scores.read_text(encoding="utf-8"))
        return [(name, value) for name, value in data.items() if isinstance(value, (int, float, str))][:8]
    if caps.classifies:
        return [("measured by", "accuracy and macro-F1: see tasks")]
    if "finetune" in lm.config:
        return [("measured by", "tasks: a chat's loss covers its replies only, no text's bits per character")]
    try:
        summary = summarize(run, device=device)
    except SokhanError as e:  # a chat model's data is conversations, a run whose data folder is gone: said
        notes.append(f"{run}: no held-out figure ({e})")
        return [("bits per character", None)]
    if summary.val_bpc is not None:
        return [("bits per character", f"{summary.val_bpc:.3f} (whole validation split, text {summary.text})")]
    return [("masked loss", f"{summary.masked_loss:.4f}"),
            ("masked accuracy", f"{100 * summary.masked_accuracy:.1f} %")]


def task_rows(run: Path) -> list[tuple[str, Any]]:
    """Every `sokhan evaluate` result saved in the run folder: a row per metric."""
    rows = []
    for path in sorted((run / "eval").glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            for name, metric in result["metrics"].items():
                value = (f"{100 * metric['value']:.1f} %" if metric.get("unit") == "%"
                         else f"{metric['value']:.4f}")
                rows.append((f"{result['task']} · {Path(result['data']).name} · {name}",
                             f"{value} ({metric['count']:,} {metric.get('of', 'items')})"))
        except (OSError, ValueError, KeyError, TypeError):
            rows.append((path.name, "unreadable"))
    return rows


def samples(lm: LanguageModel) -> list[tuple[str, str]]:
    """A few outputs with fixed seeds: what a reader can judge at a glance."""
    caps = lm.capabilities
    if caps.classifies:
        return []
    if caps.needs_source:
        return [(text, lm.translate(text)) for text in TRANSLATE]
    if not caps.causal:
        return [(text, " · ".join(f"{token} {p:.2f}" for token, p in guesses))
                for text in FILL for guesses in fill_masks(lm, text, top_k=5)]
    if "chat_template" in lm.config:
        return [(question, lm.chat([{"role": "user", "content": question}], max_new_tokens=SAMPLE_TOKENS,
                                   temperature=0.7, top_k=50, seed=0)) for question in CHAT_QUESTIONS]
    return [(prompt, prompt + lm.generate(prompt, max_new_tokens=SAMPLE_TOKENS, temperature=0.8, top_k=50, seed=i))
            for i, prompt in enumerate(PROMPTS)]


# -- the machine ---------------------------------------------------------------------------------------------------

def environment() -> dict[str, str]:
    return {"processor": processor(), "cores": str(os.cpu_count()), "memory": memory(),
            "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "python": platform.python_version(), "torch": torch.__version__, "sokhan": sokhan_commit(),
            "system": f"{platform.system()} {platform.release()}"}


def memory() -> str:
    try:
        return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def sokhan_commit() -> str:
    """The git commit of the sokhan source that ran (marked "+ changes" when its tree differs), or its version."""
    source = Path(sokhan.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"version {sokhan.__version__} (not a git checkout)"
    return head + (" + changes" if dirty else "")


# -- the page ------------------------------------------------------------------------------------------------------

def render(cards: list[Card], env: dict[str, str], curves: str | None) -> str:
    lines = ["# Report card", ""]
    lines += [f"Runs: {', '.join(f'`{c.run}` ({c.family})' for c in cards)}.", ""]
    if curves:
        lines += [f"![training curves]({curves}.png)", "", f"Interactive: [{curves}.html]({curves}.html)", ""]
    for card in cards:
        lines += [f"## `{card.run}` — {card.family}", ""]
        for name, rows in card.sections.items():
            if not rows:
                continue
            lines += [f"### {name}", "", "| | |", "|---|---|"]
            lines += [f"| {what} | {'not measured' if value is None else escape(str(value))} |" for what, value in rows]
            lines.append("")
        if card.samples:
            lines += ["### samples", ""]
            for given, said in card.samples:
                lines += [f"**{escape(given)}**", "", "```", said.strip(), "```", ""]
        lines += [f"- {escape(note)}" for note in card.notes] + ([""] if card.notes else [])
    lines += ["## machine", "", "| | |", "|---|---|"] + [f"| {k} | {escape(v)} |" for k, v in env.items()] + [""]
    return "\n".join(lines)


def escape(text: str) -> str:
    """A table cell's text: a pipe would end the cell, a line break the row."""
    return text.replace("|", "\\|").replace("\n", " ")
