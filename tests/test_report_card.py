"""`sokhan report`: the report card of runs of any family — what it says is what the runs hold and score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import train_tiny_model
from sokhan.api import LanguageModel
from sokhan.eval.leaderboard import summarize
from sokhan.recipes import report_card
from sokhan.recipes.report_card import forward_flops, write_report


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("bert"), max_steps=10, model={"family": "bert"})


def eval_result(run: Path) -> None:
    """A result as `sokhan evaluate` saves it."""
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "multiple-choice-mc.json").write_text(json.dumps({
        "task": "multiple-choice", "data": "/data/mc.jsonl",
        "metrics": {"accuracy": {"value": 0.4125, "count": 80, "unit": "%", "of": "items"}}}), encoding="utf-8")


def test_the_card_says_what_the_runs_hold_and_score(tiny_run, bert_run, tmp_path):
    eval_result(tiny_run)
    path = write_report([tiny_run, bert_run], tmp_path / "card", device="cpu")
    text = path.read_text(encoding="utf-8")
    gpt = LanguageModel.load(tiny_run, device="cpu")
    meta = gpt.config["data"]["splits"]["train"]
    assert f"{meta['documents']:,} documents, {meta['chars']:,} characters, {meta['tokens']:,} tokens" in text
    assert f"| parameters | {int(gpt.model.num_parameters()):,} |" in text
    assert f"| bits per character | {summarize(tiny_run, device='cpu').val_bpc:.3f} (whole validation split" in text
    assert "| multiple-choice · mc.jsonl · accuracy | 41.2 % (80 items) |" in text
    bert = summarize(bert_run, device="cpu")
    assert f"| masked loss | {bert.masked_loss:.4f} |" in text
    assert f"| torch | {torch.__version__} |" in text
    assert (tmp_path / "card" / "curves.png").stat().st_size > 1000
    card = json.loads((tmp_path / "card" / "report.json").read_text(encoding="utf-8"))
    assert [r["family"] for r in card["runs"]] == ["gpt", "bert"]
    assert card["environment"]["torch"] == torch.__version__
    # the samples are drawn with fixed seeds: the same card twice
    again = write_report([tiny_run, bert_run], tmp_path / "again", device="cpu").read_text(encoding="utf-8")
    assert again == text


def test_flops_per_token_follow_kaplan(tiny_run):
    """2·N + 2·n_layer·n_ctx·d (Kaplan et al. 2020, Table 1): N the non-embedding weights, about 12·n_layer·d² for a
    GPT block (attention 4d², MLP 8d²), the rest its norms and biases. Counting the embeddings in N would be off by
    the vocabulary's share (400 × d here)."""
    lm = LanguageModel.load(tiny_run, device="cpu")
    cfg = lm.model.config
    kaplan = 2 * 12 * cfg.n_layer * cfg.n_embd ** 2 + 2 * cfg.n_layer * cfg.block_size * cfg.n_embd
    assert forward_flops(lm.model, cfg, attention=True) == pytest.approx(kaplan, rel=0.05)


def test_the_commit_is_named_or_said_unknown(monkeypatch):
    named = report_card.sokhan_commit()
    assert named.startswith("version ") or len(named.split()[0]) >= 7

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert report_card.sokhan_commit().endswith("(not a git checkout)")


def test_the_command_writes_beside_the_run_and_refuses_a_missing_one(tiny_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "sokhan", "report", str(tiny_run), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tiny_run / "report" / "report.md").is_file()
    assert str(tiny_run / "report" / "report.md") in done.stderr.replace("\n", "")
    missing = subprocess.run([sys.executable, "-m", "sokhan", "report", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
