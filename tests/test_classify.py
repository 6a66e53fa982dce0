"""Classification: `finetune --task classify` on a tiny GPT and a tiny BERT, `sokhan classify`, `evaluate --task
classify` (JSON, PNG and HTML), macro-F1 and the confusion matrix on a known answer, the pair template, pooling
that reads real tokens only, labels read and saved, resume, LoRA with the head, bad records, and every generating
command refusing a classifier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import one_line_error, train_tiny_model, write
from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import FINETUNE_DEFAULTS, ClassifierConfig, FinetuneConfig, ModelConfig, TrainConfig
from sokhan.data.labelled import Fields, label_order, read_labelled
from sokhan.errors import SokhanError
from sokhan.eval import classification
from sokhan.infer.classify import label_probabilities
from sokhan.inspect import read_html_data
from sokhan.models.checkpoint import latest_checkpoint, read_config
from sokhan.models.classifier import TransformerClassifier, pad_right, padding_mask
from sokhan.recipes.finetune import finetune
from sokhan.text.pair_template import PairTemplate

SUBJECTS = ["این فیلم", "آن کتاب", "غذای امروز", "هوای شهر", "این آهنگ", "سفر ما"]
GOOD, BAD = ["خوب", "عالی", "زیبا"], ["بد", "زشت", "تلخ"]
POSITIVE, NEGATIVE = "مثبت", "منفی"


def records(pairs: bool, subjects: list[str] = SUBJECTS) -> list[dict]:
    """Hand-made Persian reviews. Single texts: 'subject word بود', labelled by the word. Pairs: the subject, then
    the word as the second text, so that only the pair tells the label (a model that ignored it could not learn)."""
    out = []
    for subject in subjects:
        for words, label in ((GOOD, POSITIVE), (BAD, NEGATIVE)):
            for word in words:
                if pairs:
                    out.append({"متن": subject, "نظر": f"{word} بود", "برچسب": label})
                else:
                    out.append({"متن": f"{subject} {word} بود", "برچسب": label})
    return out


def jsonl(path: Path, rows: list[dict | str]) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))


def settings(out: Path, **train) -> TrainConfig:
    values = {**FINETUNE_DEFAULTS.to_dict(), "out_dir": str(out), "max_steps": 40, "eval_interval": 20,
              "eval_iters": 2, "batch_size": 8, "warmup_steps": 4, "lr": 3e-3, "progress": False, "device": "cpu"}
    return TrainConfig(**{**values, **train})


def fine_tune(base: Path, data: Path, out: Path, valid: Path | None = None, train: dict | None = None, **ft):
    fields = dict(text_field="متن", label_field="برچسب", pair_field="نظر" if "نظر" in data.read_text("utf-8") else "")
    config = FinetuneConfig(task="classify", base=str(base), data=str(data), val_data=str(valid or data),
                            **{**fields, **ft})
    return finetune(config, settings(out, **(train or {})))


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory) -> Path:
    return jsonl(tmp_path_factory.mktemp("pairs") / "train.jsonl", records(pairs=True))


@pytest.fixture(scope="module")
def gpt_classifier(tiny_run, pair_data, tmp_path_factory) -> Path:
    """The tiny GPT fine-tuned on the pairs: a second or two."""
    out = tmp_path_factory.mktemp("gpt-classifier") / "run"
    fine_tune(tiny_run, pair_data, out)
    return out


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("tiny-bert"), max_steps=10, model={"family": "bert"})



# --------------------------------------------------------------------------- metrics on a known answer

def test_confusion_matrix_and_macro_f1_on_a_known_answer():
    """Labels a, b, c, d; d is neither true nor predicted. By hand: F1 a = 2/3, b = 1/2, c = 0; macro over the
    labels that occur = 7/18 (scikit-learn's f1_score(average='macro') gives the same), not 7/24 over all four."""
    truth = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 0]
    matrix = classification.confusion_matrix(truth, predicted, 4)
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]  # rows true, columns predicted
    rows = classification.per_label(matrix)
    assert [round(r["f1"], 6) for r in rows] == [round(2 / 3, 6), 0.5, 0.0, 0.0]
    assert rows[0]["precision"] == pytest.approx(2 / 3) and rows[2]["recall"] == 0.0
    assert classification.macro_f1(matrix) == pytest.approx(7 / 18)
    assert classification.accuracy(matrix) == pytest.approx(0.5)
    assert classification.majority(matrix) == (0, pytest.approx(0.5))
    perfect = classification.confusion_matrix([0, 1, 1], [0, 1, 1], 2)
    assert classification.macro_f1(perfect) == 1.0 and classification.majority(perfect) == (1, pytest.approx(2 / 3))


def test_the_confusion_picture_writes_its_counts_and_persian_labels(tmp_path):
    from sokhan.inspect.save import save_picture

    matrix = np.array([[3, 1], [0, 2]])
    picture = save_picture(classification.confusion_picture(matrix, [POSITIVE, NEGATIVE], "cm", "آزمون"), tmp_path)
    assert picture.png.stat().st_size > 5000
    panel = read_html_data(picture.html)["panels"][0]
    assert panel["kind"] == "heatmap" and panel["annotate"] is True
    assert panel["values"] == [[3, 1], [0, 2]] and panel["rows"] == panel["cols"] == [POSITIVE, NEGATIVE]


# --------------------------------------------------------------------------- data, labels, template

def test_labels_are_read_from_the_data_in_a_stable_order(tmp_path):
    assert label_order(["neutral", "entailment", "contradiction", "neutral"]) == ["contradiction", "entailment",
                                                                                  "neutral"]
    assert label_order(["2", "-3", "10", "-1", "0"]) == ["-3", "-1", "0", "2", "10"]  # integers by value
    rows = [{"t": "الف", "l": -3}, {"t": "ب", "l": 2}, {"t": "پ", "l": "-3"}]
    found = read_labelled(jsonl(tmp_path / "d.jsonl", rows), Fields("t", "", "l"))
    assert [r.label for r in found] == ["-3", "2", "-3"] and found[1].pair is None and found[0].where.endswith(":1")


def test_the_pair_template_lays_out_and_cuts_from_the_left(tiny_run):
    lm = LanguageModel.load(tiny_run)
    tok = lm.tokenizer
    template = PairTemplate(tok, lm.normalize, lm.block_size)
    one = template.encode("دل من")
    assert one.ids == [tok.bos_id, *tok.encode_plain(lm.normalize("دل من")), tok.eos_id] and not one.cut
    pair = template.encode("دل", "جان")
    assert pair.ids == [tok.bos_id, *tok.encode_plain("دل"), tok.eos_id, *tok.encode_plain("جان"), tok.eos_id]
    forged = template.encode("دل<|eos|>جان")  # a literal separator in a text is text
    assert forged.ids.count(tok.eos_id) == 1
    long_text, long_pair = "آغاز " + "باده " * 80 + "پایان", "سر " + "ساقی " * 80 + "ته"
    cut = template.encode(long_text, long_pair)
    assert cut.cut and len(cut.ids) == lm.block_size
    first, second = cut.ids.index(tok.eos_id), len(cut.ids) - 1
    assert second - first - 1 >= (lm.block_size - 3) // 2  # the pair keeps at least half of the room
    kept_text, kept_pair = tok.decode(cut.ids[1:first]), tok.decode(cut.ids[first + 1:second])
    assert kept_text.endswith("پایان") and "آغاز" not in kept_text  # cut from the left: the end stays
    assert kept_pair.endswith("ته") and not kept_pair.startswith("سر")
    short = template.encode("دل", long_pair)  # a short text leaves the pair the rest of the room
    heart = tok.encode_plain("دل")
    assert short.cut and short.ids[1:2 + len(heart)] == [*heart, tok.eos_id] and len(short.ids) == lm.block_size


@pytest.mark.parametrize("family,pooling", [("gpt", "last"), ("gpt", "mean"), ("bert", "first"), ("bert", "mean"),
                                            ("bert", "last")])
def test_pooling_reads_the_real_tokens_only(family, pooling):
    """A row's scores are the same alone or padded in a batch beside a longer row: padding is never read."""
    torch.manual_seed(0)
    cfg = ModelConfig.create(preset="tiny", family=family, vocab_size=60, n_layer=2, n_head=2, n_embd=32,
                             block_size=16)
    head = ClassifierConfig(labels=["a", "b", "c"], pooling=pooling, text_field="t", pair_field="", label_field="l",
                            template="sokhan-pair-v1")
    model = TransformerClassifier(cfg, head).eval()
    rows = [[1, 5, 6, 7, 8, 9, 2], [1, 11, 2]]
    idx, lengths = pad_right(rows, 0)
    batched = model(idx, padding=padding_mask(lengths, idx.size(1))).logits
    for k, row in enumerate(rows):
        torch.testing.assert_close(batched[k], model(torch.tensor([row])).logits[0], rtol=0, atol=1e-5)
    with pytest.raises(SokhanError, match="seen only itself"):
        TransformerClassifier(ModelConfig.create(preset="tiny", vocab_size=60),
                              ClassifierConfig(**{**head.to_dict(), "pooling": "first"}))


def test_the_classifier_starts_from_the_base_stack_and_freezes_an_untied_token_head(tiny_run):
    """Every weight of the base is the classifier's; a token head that is not the embedding is never read, so it is
    frozen (under torchrun DDP would otherwise wait for its gradient)."""
    from sokhan.models import GPT
    from sokhan.models.trained import TrainedModel
    from sokhan.recipes.classify import classifier_from

    lm = LanguageModel.load(tiny_run)
    head = ClassifierConfig(labels=["a", "b"], pooling="last", text_field="t", pair_field="", label_field="l",
                            template="sokhan-pair-v1")
    tied = classifier_from(lm, head)
    x = torch.randint(5, lm.tokenizer.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(tied.stack(x)[0], lm.model.stack(x)[0], rtol=0, atol=0)
    assert tied.lm_head.weight.requires_grad  # tied: it is the embedding, which trains
    untied_cfg = ModelConfig.create(preset="tiny", vocab_size=lm.tokenizer.vocab_size, tie_weights=False)
    untied = TrainedModel(GPT(untied_cfg), lm.tokenizer, lm.normalize, {}, Path("untied"))
    model = classifier_from(untied, head)
    assert not model.lm_head.weight.requires_grad and model.embed.weight.requires_grad


# --------------------------------------------------------------------------- end to end

def test_a_gpt_classifier_end_to_end(gpt_classifier, tiny_run, pair_data, tmp_path, capsys):
    """finetune (pairs, labels from the data) → classify → evaluate: JSON, PNG and HTML beside it, above the
    majority class on held-out subjects."""
    saved = read_config(latest_checkpoint(gpt_classifier))
    assert saved["classifier"] == {"labels": [POSITIVE, NEGATIVE], "pooling": "last", "text_field": "متن",
                                   "pair_field": "نظر", "label_field": "برچسب", "template": "sokhan-pair-v1",
                                   "pair_encoding": "joint"}
    lm = LanguageModel.load(gpt_classifier)
    assert lm.capabilities.classifies and lm.labels == [POSITIVE, NEGATIVE]
    assert lm.model.head.weight.shape == (2, lm.model.config.n_embd)
    base = LanguageModel.load(tiny_run)
    assert not torch.equal(lm.model.blocks[0].attn.qkv.weight, base.model.blocks[0].attn.qkv.weight)  # trained

    assert main(["classify", str(gpt_classifier), "غذای دیروز", "عالی بود", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == [POSITIVE, NEGATIVE]  # the likeliest first
    shares = [float(line.split("%")[0]) for line in lines]
    assert shares[0] >= shares[1] and sum(shares) == pytest.approx(100, abs=0.15)

    test = jsonl(tmp_path / "test.jsonl", records(pairs=True, subjects=["غذای دیروز", "آن نقاشی"])[:10])
    assert main(["evaluate", str(gpt_classifier), "--task", "classify", "--data", str(test), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "  accuracy " in out and "  macro-F1 " in out and "  majority class 60.0 % (10 items)" in out
    result = json.loads((gpt_classifier / "eval" / "classify-test.json").read_text(encoding="utf-8"))
    items = result["items"]
    matrix = np.zeros((2, 2), dtype=int)
    for item in items:
        matrix[lm.labels.index(item["label"]), lm.labels.index(item["predicted"])] += 1
    assert result["details"]["confusion_matrix"] == matrix.tolist()
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(np.trace(matrix) / 10)
    assert result["metrics"]["macro-F1"]["value"] == pytest.approx(classification.macro_f1(matrix))
    assert result["metrics"]["accuracy"]["value"] > result["metrics"]["majority class"]["value"]  # it learnt
    for suffix in (".png", ".html"):
        assert (gpt_classifier / "eval" / f"classify-test{suffix}").stat().st_size > 1000
    drawn = read_html_data(gpt_classifier / "eval" / "classify-test.html")["panels"][0]
    assert drawn["values"] == matrix.tolist() and drawn["rows"] == [POSITIVE, NEGATIVE]


def test_a_bert_classifier_end_to_end(tiny_bert, tmp_path, capsys):
    """BERT: [CLS] (first) pooling by default, mean on request; single texts; evaluate draws its matrix."""
    data = jsonl(tmp_path / "train.jsonl", records(pairs=False))
    fine_tune(tiny_bert, data, tmp_path / "first", train={"max_steps": 30})
    fine_tune(tiny_bert, data, tmp_path / "mean", pooling="mean", train={"max_steps": 30})
    assert read_config(latest_checkpoint(tmp_path / "first"))["classifier"]["pooling"] == "first"
    assert read_config(latest_checkpoint(tmp_path / "mean"))["classifier"]["pooling"] == "mean"
    test = jsonl(tmp_path / "test.jsonl", records(pairs=False, subjects=["غذای دیروز", "آن نقاشی"]))
    for run in ("first", "mean"):
        assert main(["evaluate", str(tmp_path / run), "--task", "classify", "--data", str(test), "--device",
                     "cpu"]) == 0
        result = json.loads((tmp_path / run / "eval" / "classify-test.json").read_text(encoding="utf-8"))
        assert result["family"] == "bert" and sum(map(sum, result["details"]["confusion_matrix"])) == 12
        assert (tmp_path / run / "eval" / "classify-test.png").is_file()
        assert (tmp_path / run / "eval" / "classify-test.html").is_file()
    lm = LanguageModel.load(tmp_path / "first")
    assert [label for label, _ in lm.classify("این فیلم خوب بود")] in ([POSITIVE, NEGATIVE], [NEGATIVE, POSITIVE])
    capsys.readouterr()


def test_a_classifier_that_reads_pairs_separately_end_to_end(tiny_run, pair_data, tmp_path, capsys):
    """--pair-encoding separate: each text read alone and mean-pooled (u, v), the head reads (u, v, |u − v|,
    u ∗ v) (InferSent §3.1, fine-tuned as Sentence-BERT §3) — checked against the stack run on each text by hand;
    saved, read back by classify and evaluate, above the majority class on held-out subjects; padding never read."""
    out = tmp_path / "separate"
    fine_tune(tiny_run, pair_data, out, pair_encoding="separate")
    saved = read_config(latest_checkpoint(out))["classifier"]
    assert saved["pair_encoding"] == "separate" and saved["pooling"] == "mean"  # auto: Sentence-BERT's mean
    lm = LanguageModel.load(out)
    model, n_embd = lm.model, lm.model.config.n_embd
    assert model.head.weight.shape == (2, 4 * n_embd)

    template = PairTemplate(lm.tokenizer, lm.normalize, lm.block_size)
    texts = [("غذای دیروز", "عالی بود"), ("آن نقاشی بزرگ", "زشت بود")]

    def pooled(text: str) -> torch.Tensor:  # one text alone: the mean of its final (normed) states
        ids = torch.tensor([template.encode(text).ids])
        return model.final_norm(model.stack(ids)[0])[0].mean(dim=0)

    with torch.no_grad():
        by_hand = torch.stack([model.head(torch.cat([u, v, (u - v).abs(), u * v]))
                               for u, v in ((pooled(a), pooled(b)) for a, b in texts)])
    probs = label_probabilities(lm, [a for a, _ in texts], [b for _, b in texts])  # batched and padded
    torch.testing.assert_close(probs.values, torch.softmax(by_hand, dim=-1), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="give the pair"):
        model(torch.tensor([template.encode("دل").ids]))

    assert main(["classify", str(out), "غذای دیروز", "عالی بود", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == POSITIVE
    test = jsonl(tmp_path / "test.jsonl", records(pairs=True, subjects=["غذای دیروز", "آن نقاشی"])[:10])
    assert main(["evaluate", str(out), "--task", "classify", "--data", str(test), "--device", "cpu"]) == 0
    assert "(read separately)" in capsys.readouterr().out
    result = json.loads((out / "eval" / "classify-test.json").read_text(encoding="utf-8"))
    assert result["details"]["pair_encoding"] == "separate"
    assert result["metrics"]["accuracy"]["value"] > result["metrics"]["majority class"]["value"]  # it learnt


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tiny_run, pair_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fine_tune(tiny_run, pair_data, straight, train={"max_steps": 8, "lr_decay_steps": 8, "eval_interval": 4})
    first = fine_tune(tiny_run, pair_data, resumed, train={"max_steps": 4, "lr_decay_steps": 8, "eval_interval": 4})
    assert first.step == 4
    again = fine_tune(tiny_run, pair_data, resumed, train={"max_steps": 8, "lr_decay_steps": 8, "eval_interval": 4,
                                                           "resume": True})
    assert again.step == 8
    a, b = (LanguageModel.load(run).model.state_dict() for run in (straight, resumed))
    assert a.keys() == b.keys() and "head.weight" in a
    assert all(torch.equal(a[name], b[name]) for name in a)  # bit-exact
    other = jsonl(tmp_path / "other.jsonl", [{**r, "برچسب": "دیگر"} if i == 0 else r
                                             for i, r in enumerate(records(pairs=True))])
    with pytest.raises(SokhanError, match="was trained on the labels"):  # other labels cannot continue this head
        fine_tune(tiny_run, other, resumed, train={"max_steps": 12, "lr_decay_steps": 8, "resume": True})


def test_lora_trains_the_adapters_and_the_head(tiny_run, pair_data, tmp_path):
    out = tmp_path / "lora"
    fine_tune(tiny_run, pair_data, out, lora=True, lora_rank=4, merge=True)
    adapted, merged, base = (LanguageModel.load(p) for p in (out, out / "merged", tiny_run))
    state = adapted.model.state_dict()
    assert torch.equal(state["blocks.0.attn.qkv.base.weight"], base.model.state_dict()["blocks.0.attn.qkv.weight"])
    assert state["blocks.0.attn.qkv.lora_b"].abs().sum() > 0  # the adapters trained
    assert not torch.allclose(state["head.weight"], torch.zeros_like(state["head.weight"]))
    adapter = load_file(out / "adapter" / "adapter.safetensors")
    assert {"head.weight", "head.bias"} <= set(adapter) and all(".lora_" in k or k.startswith("head.") for k in adapter)
    assert torch.equal(adapter["head.weight"], state["head.weight"])
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["classifier"]["labels"] == adapted.labels
    x = torch.randint(5, adapted.tokenizer.vocab_size, (3, 12))
    with torch.no_grad():
        torch.testing.assert_close(merged.model(x).logits, adapted.model(x).logits, rtol=0, atol=1e-5)
    assert merged.labels == adapted.labels and "lora" not in merged.config


# --------------------------------------------------------------------------- mistakes, each one line

def test_bad_records_and_fields_are_one_line(tiny_run, gpt_classifier, pair_data, tmp_path, capsys):
    run = ["finetune", "--task", "classify", "--base", str(tiny_run), "--text-field", "متن", "--pair-field", "نظر",
           "--label-field", "برچسب", "--out-dir", str(tmp_path / "x"), "--device", "cpu"]
    good = {"متن": "الف", "نظر": "ب", "برچسب": POSITIVE}
    cases = [({"متن": "الف", "برچسب": POSITIVE}, "no field 'نظر'"),
             ({**good, "متن": 5}, "'متن' must be a string, got the number 5"),
             ({**good, "نظر": "  "}, "'نظر' is empty"),
             ({**good, "برچسب": True}, "must be a label (a string or an integer), got true"),
             ({**good, "برچسب": 1.5}, "got the number 1.5"),
             ("{not json", "not valid JSON")]
    for record, message in cases:
        bad = jsonl(tmp_path / "bad.jsonl", [good, {**good, "برچسب": NEGATIVE}, record])
        one_line_error(capsys, main([*run, "--data", str(bad)]), f"{bad}:3:", message)
    same = jsonl(tmp_path / "same.jsonl", [good, good])
    one_line_error(capsys, main([*run, "--data", str(same)]), "the val split is empty")  # one record, twice
    one_line_error(capsys, main([*run, "--data", str(same), "--valid", str(same)]), "a classifier needs at least two")
    valid = jsonl(tmp_path / "valid.jsonl", [{**good, "برچسب": "خنثی"}])
    one_line_error(capsys, main([*run, "--data", str(pair_data), "--valid", str(valid)]),
                   f"{valid}:1: label 'خنثی' is not one of the 2 labels")
    one_line_error(capsys, main(["finetune", "--task", "classify", "--base", str(tiny_run)]), "give --data FILE.jsonl")
    one_line_error(capsys, main(["finetune", "--pair-field", "نظر"]), "pair_field is an option of --task classify")
    one_line_error(capsys, main([*run, "--data", str(pair_data), "--pooling", "first"]), "seen only itself")
    single = [a for a in run if a not in ("--pair-field", "نظر")]
    one_line_error(capsys, main([*single, "--data", str(pair_data), "--pair-encoding", "separate"]),
                   "--pair-encoding separate", "--pair-field")
    one_line_error(capsys, main(["finetune", "--pair-encoding", "separate"]),
                   "pair_encoding is an option of --task classify")
    one_line_error(capsys, main([*run, "--base", str(gpt_classifier), "--data", str(pair_data)]),
                   "is a classifier already")

    evaluate = ["evaluate", str(gpt_classifier), "--task", "classify", "--device", "cpu", "--data"]
    unknown = jsonl(tmp_path / "unknown.jsonl", [good, {**good, "برچسب": "خنثی"}])
    one_line_error(capsys, main([*evaluate, str(unknown)]), f"{unknown}:2: label 'خنثی' is not one the classifier "
                   f"knows ({POSITIVE}, {NEGATIVE})")
    renamed = jsonl(tmp_path / "renamed.jsonl", [{"a": "الف", "b": "ب", "y": POSITIVE}])
    one_line_error(capsys, main([*evaluate, str(renamed)]), f"{renamed}:1: no field 'متن'")
    assert main([*evaluate, str(renamed), "--text-field", "a", "--pair-field", "b", "--label-field", "y"]) == 0
    assert "a + b → y" in capsys.readouterr().out  # other fields, named
    one_line_error(capsys, main([*evaluate, str(renamed), "--text-field", "a", "--pair-field", "", "--label-field",
                                 "y"]), "reads text pairs")
    one_line_error(capsys, main(["classify", str(gpt_classifier), "فقط یک متن"]), "give the second text too")
    one_line_error(capsys, main(["classify", str(tiny_run), "متن"]), "not a classifier")
    one_line_error(capsys, main(["evaluate", str(tiny_run), "--task", "classify", "--data", str(pair_data)]),
                   "not a classifier")


def test_generating_commands_refuse_a_classifier_in_one_line(gpt_classifier, tmp_path, capsys):
    model = str(gpt_classifier)
    text = write(tmp_path / "t.txt", "دل من\n")
    mc = jsonl(tmp_path / "mc.jsonl", [{"question": "؟", "options": ["الف", "ب"], "answer": 0}])
    for argv in (["sample", model], ["chat", model], ["serve", model], ["eval", model, str(text)],
                 ["fill", model, "دل <mask>"], ["translate", model, "Hello."],
                 ["evaluate", model, "--task", "multiple-choice", "--data", str(mc)],
                 ["inspect", "next", model, "دل"]):
        one_line_error(capsys, main([*argv, "--device", "cpu"]), "is a classifier", "sokhan classify")
    one_line_error(capsys, main(["finetune", "--base", model, "--out-dir", str(tmp_path / "chat")]), "is a classifier")
    one_line_error(capsys, main(["leaderboard", model]), "is a classifier")
    one_line_error(capsys, main(["export", model, str(tmp_path / "hf")]), "is a classifier")
    lm = LanguageModel.load(gpt_classifier)
    with pytest.raises(SokhanError, match="is a classifier"):
        lm.generate("دل")
    copy = Path(shutil.copytree(latest_checkpoint(gpt_classifier), tmp_path / "broken"))
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config["classifier"]["labels"] = [POSITIVE]
    (copy / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(SokhanError, match=r"\[classifier\]: a classifier has 2 to"):
        LanguageModel.load(copy)
