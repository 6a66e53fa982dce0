"""One scale for every family: bits per character, the leaderboard, `sokhan zoo`, and family mix-ups."""

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.device import processor
from sokhan.eval.bpc import bits_per_char, sequence_nll
from sokhan.eval.leaderboard import summarize
from sokhan.models import ModelConfig, build_model
from sokhan.train.optim import lr_at
from test_cli import assert_one_line_error, sokhan

FAMILIES = ("ngram-2", "ngram-3", "rnn", "lstm", "gru", "gpt", "bert")


@pytest.mark.parametrize("family", ["gpt", "rnn", "lstm", "gru"])
def test_uniform_model_scores_log2_vocab_per_token(tiny_run, family):
    """A model that predicts the uniform distribution pays log2(V) bits per token: bpc = log2(V)·tokens/chars."""
    lm = LanguageModel.load(tiny_run)
    vocab = lm.tokenizer.vocab_size
    model = build_model(ModelConfig(family=family, vocab_size=vocab, n_layer=1, n_head=2, n_embd=16, block_size=16,
                                    tie_weights=False)).eval()
    torch.nn.init.zeros_(model.lm_head.weight)  # every logit 0: uniform
    lm.model = model
    text = lm.normalize("الا یا ایها الساقی ادر کاسا و ناولها که عشق آسان نمود اول ولی افتاد مشکل‌ها")
    tokens = len(lm.tokenizer.encode_plain(text)) + 1  # + <|eos|>; the opening <|bos|> is context, not scored
    assert lm.bits_per_char(text) == pytest.approx(math.log2(vocab) * tokens / (len(text) + 1), rel=1e-6)
    nll, n = sequence_nll(model, np.arange(40) % vocab, block_size=16)  # sliding windows or carried state alike
    assert n == 39 and bits_per_char(nll, 78) == pytest.approx(math.log2(vocab) * 39 / 78, rel=1e-6)


def test_lr_schedule_follows_a_time_budget():
    assert lr_at(500, 1.0, 0.1, 10, 1_000_000, time_fraction=1.0) == pytest.approx(0.1)
    assert lr_at(500, 1.0, 0.1, 10, 1_000_000, time_fraction=0.5) == pytest.approx(0.55)
    assert lr_at(5, 1.0, 0.1, 10, 1_000_000, time_fraction=0.9) == pytest.approx(0.6)  # warmup is by steps
    assert lr_at(500, 1.0, 0.1, 10, 1000, time_fraction=0.0) == lr_at(500, 1.0, 0.1, 10, 1000)


MINIATURE = ["--source", "hafez", "--tokens", "6000", "--orders", "2,3", "--block-size", "32", "--batch-size", "8",
             "--no-progress"]  # 6,000 tokens: 24 steps of 8 × 32 for each network


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo")
    assert main(["zoo", "--out-dir", str(out), *MINIATURE]) == 0
    return out


def rows(folder: Path) -> dict[str, list[str]]:
    """leaderboard.md's rows by run: its cells."""
    table = (folder / "leaderboard.md").read_text(encoding="utf-8")
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]
             if line.startswith("|")]
    return {row[0]: row for row in cells}


def test_zoo_runs_every_family_end_to_end(zoo):
    assert set(rows(zoo)) == set(FAMILIES)
    assert (zoo / "leaderboard.png").stat().st_size > 10_000
    for run in FAMILIES:
        summary = summarize(zoo / run)
        assert summary.parameters > 0 and summary.tokens > 0
        if run == "bert":
            assert summary.val_bpc is None and 0 <= summary.masked_accuracy <= 1 and summary.masked_loss > 0
        else:
            assert summary.masked_loss is None and 0 < summary.val_bpc < math.log2(400)
    # counting beats guessing: the 3-gram is below the 2-gram on held-out text
    assert summarize(zoo / "ngram-3").val_bpc < summarize(zoo / "ngram-2").val_bpc


def test_two_zoos_give_the_same_table(zoo, tmp_path):
    """The default budget is tokens, not seconds: a second zoo trains the same steps and gives the same table, to
    the digit, but for what this machine measured (wall time, tokens/s), which is named under the table."""
    assert main(["zoo", "--out-dir", str(tmp_path), *MINIATURE]) == 0
    first, second = rows(zoo), rows(tmp_path)
    assert set(first) == set(second) == set(FAMILIES)
    timed = [5, 6]  # wall time, tokens/s
    for run in FAMILIES:
        assert [c for i, c in enumerate(first[run]) if i not in timed] == \
            [c for i, c in enumerate(second[run]) if i not in timed], run
        a, b = summarize(zoo / run), summarize(tmp_path / run)
        assert a == dataclasses.replace(b, seconds=a.seconds, checkpoint=a.checkpoint, data=a.data)  # exactly
    assert summarize(zoo / "gpt").tokens == 24 * 8 * 32
    note = (tmp_path / "leaderboard.md").read_text(encoding="utf-8").splitlines()[-1]
    assert note.startswith("Times measured on ") and f"torch {torch.__version__}" in note
    assert f"{os.cpu_count()} cores" in note and processor() in note


def test_leaderboard_scores_the_whole_val_split_exactly(zoo):
    """The cached figure is the exact split score: recompute the n-gram's by hand from its counts."""
    summary = json.loads((zoo / "ngram-3" / "leaderboard.json").read_text())
    lm = LanguageModel.load(zoo / "ngram-3")
    from sokhan.data.shards import TokenData

    val = TokenData(zoo / "data", "val")
    nll = -lm.model.log_probs(np.asarray(val.tokens)).sum()
    assert summary["val_bpc"] == pytest.approx(nll / math.log(2) / val.num_chars, rel=1e-9)
    assert main(["leaderboard", str(zoo / "gpt"), str(zoo / "ngram-3"), "--out-dir", str(zoo / "two")]) == 0
    assert (zoo / "two" / "leaderboard.png").is_file()


def test_each_family_loads_and_does_what_it_can(zoo, capsys):
    for run in ("ngram-3", "rnn", "gru", "gpt"):
        lm = LanguageModel.load(zoo / run)
        assert lm.generate("دل", max_new_tokens=10, seed=1) == lm.generate("دل", max_new_tokens=10, seed=1)
        assert lm.bits_per_char("دل به می دادم") > 0
    assert main(["fill", str(zoo / "bert"), "دل <mask> است", "--top-k", "3"]) == 0
    assert capsys.readouterr().out.count("%") == 3


def test_family_mixups_are_one_clear_line(zoo, tmp_path):
    assert_one_line_error(sokhan("train", "--model", "transformer-xl", "--data", str(zoo / "data")), "transformer-xl")
    assert_one_line_error(sokhan("train", "--model", "ngram", "--order", "9", "--data", str(zoo / "data")), "order")
    assert_one_line_error(sokhan("train", "--model", "lstm", "--block-size", "10000", "--batch-size", "64",
                                 "--data", str(zoo / "data"), "--out-dir", str(tmp_path / "x")), "BPTT")
    assert_one_line_error(sokhan("fill", str(zoo / "bert"), "دل است"), "<mask>")
    assert_one_line_error(sokhan("fill", str(zoo / "gpt"), "دل <mask> است"), "gpt")
    assert_one_line_error(sokhan("sample", str(zoo / "bert")), "fill")
    assert_one_line_error(sokhan("eval", str(zoo / "bert"), str(zoo / "leaderboard.md")), "bert")
    assert_one_line_error(sokhan("finetune", "--base", str(zoo / "ngram-2"), "--out-dir", str(tmp_path / "c")), "ngram")


def test_every_zoo_family_has_a_recipe():
    from sokhan.config import ZOO_FAMILIES
    from sokhan.recipes.zoo import RECIPES

    assert tuple(RECIPES) == ZOO_FAMILIES
    assert all(model["family"] == name for name, (model, _) in RECIPES.items())


def test_the_table_names_the_machine_of_each_time():
    from sokhan.eval.leaderboard import RunSummary, measured_on

    def run(name: str, bpc: float, machine: str) -> RunSummary:
        return RunSummary(name, "gpt", "4×128", 1000, 5000, 2.0, bpc, None, None, machine=machine)

    same = [run("a", 2.5, "CPU X; torch 2.13.0"), run("b", 2.4, "CPU X; torch 2.13.0")]
    assert measured_on(same) == "Times measured on CPU X; torch 2.13.0."
    mixed = [*same, run("c", 2.6, "GPU Y; torch 2.13.0"), run("d", 3.0, "")]
    assert measured_on(mixed) == ("Times measured on CPU X; torch 2.13.0 (b, a); GPU Y; torch 2.13.0 (c); a machine "
                                  "not recorded (a run trained before sokhan kept it) (d).")
