"""The Python API the tour is written with: `LanguageModel.predictions` / `fill`, and the commands as functions
(`sokhan.finetune`, `translate_train`, `sweep`), which check their options as the command line does."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import sokhan
from sokhan.data.fingerprint import TextFingerprint
from sokhan.errors import SokhanError
from sokhan.infer.fill import fill_masks

VERSE = "الا یا ایها الساقی ادر کاسا و ناولها"


@pytest.fixture(scope="module")
def char_data(tmp_path_factory):
    return sokhan.prepare(source="hafez", out_dir=tmp_path_factory.mktemp("api") / "data", tokenizer="char")


@pytest.fixture(scope="module")
def runs(char_data):
    """A few steps of a GPT, a GRU and a BERT, and a 4-gram count, on the same characters."""
    out = char_data.parent
    steps = dict(max_steps=4, batch_size=4, eval_interval=1000, eval_iters=1, warmup_steps=1, device="cpu")
    return {"gpt": sokhan.pretrain(data=char_data, out_dir=out / "gpt", model="gpt", preset="tiny", **steps),
            "gru": sokhan.pretrain(data=char_data, out_dir=out / "gru", model="gru", block_size=64, **steps),
            "bert": sokhan.pretrain(data=char_data, out_dir=out / "bert", model="bert", preset="tiny", **steps),
            "ngram": sokhan.pretrain(data=char_data, out_dir=out / "ngram", model="ngram", order=4)}


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_held_out_gives_back_the_val_text_prepare_wrote(char_data, tmp_path, tokenizer):
    # BPE: small shards, so that documents run from one shard into the next
    data = char_data if tokenizer == "char" else sokhan.prepare(source="hafez", out_dir=tmp_path, tokenizer="bpe",
                                                                 vocab_size=400, shard_tokens=5000)
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))["splits"]
    for split in ("val", "train"):
        documents = sokhan.held_out(data) if split == "val" else sokhan.held_out(data, split)
        fingerprint = TextFingerprint()
        for document in documents:
            fingerprint.add(document)
        # the very text, character for character: its fingerprint is the one prepare recorded
        assert (len(documents), fingerprint.chars) == (meta[split]["documents"], meta[split]["chars"])
        assert fingerprint.digest == meta[split]["fingerprint"]
    with pytest.raises(SokhanError, match="no 'test' split"):
        sokhan.held_out(data, "test")


def test_held_out_refuses_a_split_that_is_not_whole_documents(char_data, tmp_path, monkeypatch):
    import shutil

    from sokhan.data import shards

    data = shutil.copytree(char_data, tmp_path / "data")
    shard = data / json.loads((data / "meta.json").read_text(encoding="utf-8"))["splits"]["val"]["shards"][0]["file"]
    ids = np.fromfile(shard, dtype="<u2")
    ids[-1] = ids[-2]  # the last document loses its <|eos|>
    ids.tofile(shard)
    with pytest.raises(SokhanError, match=r"is not the \d+ documents meta\.json counts; prepare the data again"):
        sokhan.held_out(data)
    whole = sokhan.held_out(char_data)
    monkeypatch.setattr(shards, "READ_TOKENS", 7)  # reads that cut documents anywhere give the same text
    assert sokhan.held_out(char_data) == whole


@pytest.mark.parametrize("family", ["gpt", "gru", "ngram"])
def test_predictions_add_up_to_the_models_bits_per_char(runs, family):
    lm = sokhan.LanguageModel.load(runs[family], device="cpu")
    p = lm.predictions(VERSE)
    assert p.tokens[-1] == "<|eos|>" and "".join(p.tokens[:-1]) == lm.normalize(VERSE)
    assert p.log_probs.size(0) == len(p.ids) and p.log_probs.size(1) >= lm.tokenizer.vocab_size
    assert torch.allclose(p.log_probs.exp().sum(-1), torch.ones(len(p.ids)), atol=1e-4)  # a distribution each
    surprisal = p.surprisal()
    assert len(surprisal) == len(p.ids) and min(surprisal) >= 0
    # the one scale: the token-by-token bits, summed over the characters, are score's figure
    assert p.bits_per_char == pytest.approx(lm.bits_per_char(VERSE), rel=1e-5)
    assert p.chars == len(lm.normalize(VERSE)) + 1


def test_predictions_name_each_tokens_text_even_when_a_token_is_part_of_a_character(tiny_run):
    lm = sokhan.LanguageModel.load(tiny_run, device="cpu")  # BPE of 400 tokens: rare letters are bytes
    text = "ژاله ثمر دل، 🌹"
    p = lm.predictions(text)
    assert "".join(p.tokens) == lm.normalize(text) + "<|eos|>"
    assert "\ufffd" not in "".join(p.tokens) and "" in p.tokens  # a lone byte adds nothing until its letter ends


@pytest.mark.parametrize("family", ["gru", "ngram"])
def test_predictions_of_a_model_without_a_context_limit_read_any_length(runs, family):
    lm = sokhan.LanguageModel.load(runs[family], device="cpu")
    text = " ".join([VERSE] * 4)  # longer than the 64 tokens of the GRU's block
    assert len(lm.normalize(text)) > lm.block_size
    assert lm.predictions(text).bits_per_char == pytest.approx(lm.bits_per_char(text), rel=1e-5)


def test_predictions_are_the_models_next_token_probabilities(runs):
    lm = sokhan.LanguageModel.load(runs["gpt"], device="cpu")
    p = lm.predictions(VERSE)
    prefix = VERSE[:10]
    top_text, top_p = lm.next_token_probs(prefix, k=1)[0]
    row = p.log_probs[len(lm.normalize(prefix))].exp()  # the row that predicts the character after the prefix
    assert float(row.max()) == pytest.approx(top_p, rel=1e-4)
    assert lm.tokenizer.decode([int(row.argmax())]) == top_text


def test_predictions_refuse_what_they_cannot_score(runs):
    lm = sokhan.LanguageModel.load(runs["gpt"], device="cpu")
    with pytest.raises(SokhanError, match=r"^give a text to predict$"):
        lm.predictions("   ")
    with pytest.raises(SokhanError, match="more than the model's context") as e:
        lm.predictions("دل " * lm.block_size)
    assert "\n" not in str(e.value)
    with pytest.raises(SokhanError, match="masked-LM encoder"):
        sokhan.LanguageModel.load(runs["bert"], device="cpu").predictions(VERSE)


def test_fill_is_the_fill_command(runs):
    bert = sokhan.LanguageModel.load(runs["bert"], device="cpu")
    guesses = bert.fill("دل <mask> ز دستم <mask>", top_k=3)
    assert guesses == fill_masks(bert, "دل <mask> ز دستم <mask>", 3)
    assert len(guesses) == 2 and all(len(g) == 3 for g in guesses)
    assert all([p for _, p in g] == sorted((p for _, p in g), reverse=True) for g in guesses)  # likeliest first
    with pytest.raises(SokhanError, match="reads left to right"):
        sokhan.LanguageModel.load(runs["gpt"], device="cpu").fill("دل <mask>")


def test_finetune_as_a_function_makes_a_chat_model(runs, tmp_path):
    chat = sokhan.finetune(base=runs["gpt"], out_dir=tmp_path / "chat", lora=True, lora_rank=2, max_steps=2,
                           eval_interval=2, eval_iters=1, device="cpu")
    lm = sokhan.LanguageModel.load(chat, device="cpu")
    config = lm.config
    assert config["finetune"]["data"] == "chatterbot" and config["lora"]["rank"] == 2
    assert config["train"]["max_steps"] == 2 and config["train"]["lr"] == 3e-4  # the command's gentle defaults
    assert isinstance(lm.chat([{"role": "user", "content": "سلام"}], max_new_tokens=3, seed=0), str)


def test_the_commands_as_functions_check_their_options(runs, tmp_path):
    with pytest.raises(SokhanError, match=r"^unknown option 'lora_rnak' in sokhan.finetune"):
        sokhan.finetune(base=runs["gpt"], out_dir=tmp_path / "c", lora_rnak=2)
    with pytest.raises(SokhanError, match="--merge"):
        sokhan.finetune(base=runs["gpt"], out_dir=tmp_path / "c", merge=True)
    with pytest.raises(SokhanError, match=r"^unknown option 'order' in sokhan.translate_train"):
        sokhan.translate_train(data=tmp_path / "pairs.tsv", out_dir=tmp_path / "mt", order=3)
    with pytest.raises(SokhanError, match="n_embd"):
        sokhan.translate_train(data=tmp_path / "pairs.tsv", out_dir=tmp_path / "mt", n_embd=30, n_head=4)
    with pytest.raises(SokhanError, match=r"^unknown option 'size' in sokhan.sweep"):
        sokhan.sweep(out_dir=tmp_path / "sweep", size=["1x16"])
    with pytest.raises(SokhanError, match="LAYERSxWIDTH"):
        sokhan.sweep(out_dir=tmp_path / "sweep", sizes=["big"])
    assert not (tmp_path / "mt").exists() and not (tmp_path / "sweep").exists()  # checked before any work


def test_translate_train_as_a_function_takes_model_options(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"I see {n} birds.\tمن {n} پرنده می‌بینم.\n" for n in range(60)), encoding="utf-8")
    run = sokhan.translate_train(data=pairs, out_dir=tmp_path / "mt", vocab_size=300, max_steps=2, max_time=0,
                                 n_layer=1, n_embd=32, n_head=2, eval_interval=2, device="cpu")
    mt = sokhan.LanguageModel.load(run, device="cpu")
    config = mt.config
    assert (config["model"]["n_layer"], config["model"]["n_embd"], config["model"]["family"]) == (1, 32, "seq2seq")
    attention = sokhan.translation_attention(mt, "I see 7 birds.")
    assert attention.cross.shape[:2] == (1, 2)
    assert torch.allclose(attention.cross.sum(-1), torch.ones(attention.cross.shape[:-1]), atol=1e-5)


def test_sweep_as_a_function_returns_its_folder(tmp_path):
    out = sokhan.sweep(out_dir=tmp_path / "sweep", source="hafez", sizes=["1x16"], budgets=[1e8, 3e8], block_size=32,
                       batch_size=4, progress=False)
    record = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert [r["run"] for r in record["runs"]] == ["1x16-1e8", "1x16-3e8"]
    assert all(0 < r["val_bpc"] < math.log2(400) for r in record["runs"])
