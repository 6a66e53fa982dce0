"""One scale for every family: bits per character, the leaderboard, `sokhan zoo`, and family mix-ups."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sokhan.api import LanguageModel
from sokhan.cli import main
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


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo")
    code = main(["zoo", "--out-dir", str(out), "--source", "hafez", "--budget", "1.5", "--orders", "2,3",
                 "--block-size", "32", "--batch-size", "8", "--no-progress"])
    assert code == 0
    return out


def test_zoo_runs_every_family_end_to_end(zoo):
    table = (zoo / "leaderboard.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == set(FAMILIES)
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
