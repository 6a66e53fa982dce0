"""`sokhan evaluate`: records read as their formats say, each metric on a known answer, the scorer against the
bits/char scorer for every causal family, the command end to end, the task list, and bad records as file:line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from helpers import one_line_error, write
from sokhan.api import LanguageModel
from sokhan.cli import main
from sokhan.config import PrepareConfig, TrainConfig
from sokhan.config.evaluate import EvaluateConfig, read_task_list
from sokhan.data.prepare import prepare
from sokhan.errors import SokhanError
from sokhan.eval import tasks
from sokhan.eval.bpc import sequence_nll
from sokhan.eval.task_data import listed_prompt, parse_choice, parse_reading, read_choice_items, read_reading_items
from sokhan.models.checkpoint import CONFIG, latest_checkpoint
from sokhan.recipes.pretrain import pretrain
from sokhan.text.chat_template import TEMPLATE_NAME, ChatTemplate, Message

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fa-sft"
BLOCK = 32
WORDS = ["دل", "می", "ساقی", "باده", "یار", "شب", "مهر", "ماه", "گل", "باغ", "جان", "راه", "کتاب", "آب"]


def mc_record(question: str, options: list[str], answer: int) -> dict:
    """A record in parsinlu_mc's format (SOURCE.md), written out by hand rather than by the code under test."""
    listing = "\n".join(f"{n}. {o}" for n, o in enumerate(options, start=1))
    return {"id": "x", "prompt": f"{question}\n\nگزینه‌ها:\n{listing}\n\nگزینهٔ درست را انتخاب کنید.",
            "response": f"{answer + 1}. {options[answer]}"}


def jsonl(path: Path, records: list[dict | str]) -> Path:
    """One record a line (a str is written as it is: a broken line, or a blank one)."""
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                               for r in records))


MC = [mc_record("پایتخت ایران کدام شهر است؟", ["تهران", "شیراز", "تبریز", "مشهد"], 0),
      mc_record("کدام رنگ است؟", ["سبز", "میز", "", ""], 0),
      {"question": "دو به اضافهٔ دو چند است؟", "options": ["سه", "چهار", "پنج"], "answer": 1}]
RC = [{"prompt": "متن: علی به مدرسه رفت.\n\nپرسش: علی کجا رفت؟", "response": "مدرسه", "all_answers": ["مدرسه",
       "به مدرسه"]},
      {"prompt": "متن: هوا سرد است.\n\nپرسش: هوا چگونه است؟", "answers": ["سرد"]}]


# --------------------------------------------------------------------------- tiny models

def train(data: Path, out: Path, **model) -> Path:
    cfg = TrainConfig(data=str(data), out_dir=str(out), max_steps=6, batch_size=4, eval_interval=1000, eval_iters=1,
                      warmup_steps=2, progress=False, device="cpu")
    return Path(pretrain(cfg, dict(preset="tiny", block_size=BLOCK, **model), Console(quiet=True)).run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny GPT, a GRU and a 3-gram on a char-level corpus of Persian words: seconds in all."""
    folder = tmp_path_factory.mktemp("evaluate")
    docs = [" ".join(WORDS[(i * 3 + k * 5) % len(WORDS)] for k in range(9)) + " ؟ ۱۲۳" for i in range(80)]
    write(folder / "corpus.txt", "\n\n".join(docs) + "\n")
    data = prepare(PrepareConfig(source=str(folder / "corpus.txt"), out_dir=str(folder / "data"), tokenizer="char",
                                 val_fraction=0.2), progress=False)
    return {"gpt": train(data, folder / "gpt", n_layer=1, n_head=2, n_embd=32),
            "gru": train(data, folder / "gru", family="gru", n_layer=1, n_embd=32),
            "ngram": train(data, folder / "ngram", family="ngram", order=3)}


@pytest.fixture
def gpt_run(runs, tmp_path) -> Path:
    """A copy of the tiny GPT's run, so that what a test writes into it stays the test's."""
    return Path(shutil.copytree(runs["gpt"], tmp_path / "gpt"))


def as_chat_model(run: Path) -> Path:
    """Mark a run's checkpoint as fine-tuned on conversations, as `sokhan finetune` marks one."""
    config_path = latest_checkpoint(run) / CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**config, "chat_template": TEMPLATE_NAME}), encoding="utf-8")
    return run


# --------------------------------------------------------------------------- records

def test_parsinlu_mc_records_give_their_options_and_answer():
    item = parse_choice(mc_record("سؤال؟", ["الف ب", "ج", "د. ه", ""], 2), "f:1")
    assert item.question == "سؤال؟"
    assert item.options == ("الف ب", "ج", "د. ه", "")
    assert item.answer == 2
    assert item.choices == [0, 1, 2]             # the empty fourth (parsinlu_mc's padding) is no choice
    assert listed_prompt(item.question, item.options) == mc_record("سؤال؟", ["الف ب", "ج", "د. ه", ""], 2)["prompt"]
    bare = parse_choice({**mc_record("سؤال؟", ["یک", "دو"], 1), "response": "2"}, "f:1")
    assert bare.answer == 1


def test_plain_records_give_their_options_and_answer():
    item = parse_choice({"question": "q?", "options": ["a", "b", "c"], "answer": 2}, "f:1")
    assert (item.question, item.options, item.answer, item.choices) == ("q?", ("a", "b", "c"), 2, [0, 1, 2])


def test_reading_records_use_every_answer_there_is():
    assert parse_reading(RC[0], "f:1").answers == ("مدرسه", "به مدرسه")       # all_answers wins over response
    assert parse_reading(RC[1], "f:2").answers == ("سرد",)
    assert parse_reading({"prompt": "p", "response": "r"}, "f:3").answers == ("r",)


@pytest.mark.skipif(not (SHARED / "parsinlu_mc.test.jsonl").is_file(), reason=f"{SHARED} is absent")
def test_every_parsinlu_mc_record_reads_back_to_its_own_prompt_and_response():
    for split in ("train", "valid", "test"):
        path = SHARED / f"parsinlu_mc.{split}.jsonl"
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        items = read_choice_items(path)
        assert len(items) == len(records)
        for item, record in zip(items, records):
            assert listed_prompt(item.question, item.options) == record["prompt"]
            assert record["response"] == f"{item.answer + 1}. {item.options[item.answer]}"
            assert len(item.options) == 4 and 2 <= len(item.choices) <= 4


@pytest.mark.skipif(not (SHARED / "parsinlu_rc.test.jsonl").is_file(), reason=f"{SHARED} is absent")
def test_parsinlu_rc_records_keep_all_their_answers():
    items = read_reading_items(SHARED / "parsinlu_rc.test.jsonl")
    assert len(items) == 570
    assert any(len(item.answers) > 1 for item in items)


BAD_MC = [("{not json", "not valid JSON"),
          ("[1, 2]", "expected a JSON object"),
          ({"question": "q", "options": ["a", "b"]}, "no field 'answer'"),
          ({"question": "q", "options": ["a", "b"], "answer": 2}, "'answer' 2 is out of range: there are 2 options"),
          ({"question": "q", "options": ["a", "b"], "answer": -1}, "out of range"),
          ({"question": "q", "options": ["a", "b"], "answer": True}, "'answer' must be the index"),
          ({"question": "q", "options": "a b", "answer": 0}, "'options' must be a list of strings"),
          ({"question": "q", "options": ["a", ""], "answer": 0}, "fewer than two options with text"),
          ({"question": "q", "options": ["a", "b", ""], "answer": 2}, "the answer is option 3, which is empty"),
          ({"question": " ", "options": ["a", "b"], "answer": 0}, "'question' is empty"),
          ({**mc_record("q", ["a", "b"], 0), "response": "3. c"}, "names option 3, but the prompt lists 2"),
          ({**mc_record("q", ["a", "b"], 0), "response": "1. b"}, "gives option 1 as 'b'"),
          ({**mc_record("q", ["a", "b"], 0), "response": "الف"}, "'response' must be '<n>. <option text>'"),
          ({"prompt": "q\n1. a\n2. b", "response": "1. a"}, "'prompt' has no options"),
          ({"prompt": "q\n\nگزینه‌ها:\n1. a\n3. b", "response": "1. a"}, "line 2 of the options"),
          ({"text": "q"}, "not a multiple-choice record")]


@pytest.mark.parametrize("record, message", BAD_MC)
def test_a_bad_multiple_choice_record_is_its_file_and_line(tmp_path, record, message):
    path = jsonl(tmp_path / "mc.jsonl", [MC[0], "", record])   # the blank line still counts: the record is line 3
    with pytest.raises(SokhanError, match=f"^{re.escape(str(path))}:3: ") as e:
        read_choice_items(path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("record, message", [({"response": "r"}, "no field 'prompt'"),
                                             ({"prompt": "p"}, "no answer: give 'response' or 'answers'"),
                                             ({"prompt": "p", "answers": []}, "'answers' must be a non-empty list"),
                                             ({"prompt": "p", "all_answers": ["a", 3]}, "'all_answers' must be"),
                                             ({"prompt": 5, "response": "r"}, "'prompt' must be a string")])
def test_a_bad_reading_record_is_its_file_and_line(tmp_path, record, message):
    path = jsonl(tmp_path / "rc.jsonl", [RC[0], record])
    with pytest.raises(SokhanError, match=f"^{re.escape(str(path))}:2: ") as e:
        read_reading_items(path)
    assert message in str(e.value)


def test_limit_reads_the_first_items_only(tmp_path):
    path = jsonl(tmp_path / "mc.jsonl", [MC[0], MC[2], "{broken"])
    assert [item.answer for item in read_choice_items(path, limit=2)] == [0, 1]   # line 3 is never read
    with pytest.raises(SokhanError, match=":3: not valid JSON"):
        read_choice_items(path)
    with pytest.raises(SokhanError, match="has no records"):
        read_choice_items(jsonl(tmp_path / "empty.jsonl", [""]))


# --------------------------------------------------------------------------- known answers

def test_accuracy_length_normalized_accuracy_and_chance_on_known_log_likelihoods(runs, monkeypatch):
    """Log-likelihoods chosen by hand, per option text: the harness's argmax, and argmax per character."""
    items = [parse_choice({"question": "q1", "options": ["ب", "پپپپ"], "answer": 1}, "f:1"),
             parse_choice({"question": "q2", "options": ["ت", "ثثث"], "answer": 0}, "f:2"),
             parse_choice({"question": "q3", "options": ["ج", "چ", "حححححححححح", ""], "answer": 2}, "f:3"),
             parse_choice({"question": "q4", "options": ["ab", "ژ"], "answer": 0}, "f:4")]
    loglik = {"ب": -2.0, "پپپپ": -4.0,            # acc picks ب (wrong); per char −2 vs −1: پپپپ (right)
              "ت": -1.0, "ثثث": -3.0,             # both pick ت (right)
              "ج": -5.0, "چ": -6.0, "حححححححححح": -7.0,  # acc picks ج (wrong); per char −0.7 wins (right)
              "ab": -3.0, "ژ": -2.0}              # per char −1.5 vs −2: ab (right); per UTF-8 byte ژ would win
    lm = LanguageModel.load(runs["gpt"])

    def fake(model, requests, batch_size, pad_id):
        return [loglik[lm.tokenizer.decode(continuation).strip()] for _, continuation in requests]

    monkeypatch.setattr(tasks, "continuation_logprobs", fake)
    result = tasks.multiple_choice(lm, items, EvaluateConfig(task="multiple-choice", data="f", prompt="cloze"))
    values = {m.name: m.value for m in result.metrics}
    assert values["accuracy"] == pytest.approx(1 / 4)
    assert values["accuracy, length-normalized"] == pytest.approx(1.0)
    assert values["chance"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3 + 1 / 2) / 4)   # the empty option is no option
    assert [o["predicted_index"] for o in result.items] == [0, 0, 0, 1]
    assert [o["predicted_index_norm"] for o in result.items] == [1, 0, 2, 0]
    assert result.items[2]["loglik"] == [-5.0, -6.0, -7.0, None]
    assert result.details["empty_options_skipped"] == 1


def test_a_tie_goes_to_the_first_option_and_nan_never_wins():
    item = parse_choice({"question": "q", "options": ["a", "b", "c"], "answer": 1}, "f:1")
    assert tasks.choice_outcome(item, [-1.0, -1.0, float("nan")], [1, 1, 1])["predicted_index"] == 0
    assert tasks.choice_outcome(item, [float("nan"), -3.0, float("-inf")], [1, 1, 1])["predicted_index"] == 1


def test_exact_match_and_f1_on_hand_computed_cases(runs):
    normalize = LanguageModel.load(runs["gpt"]).normalize
    cases = [("کتاب‌های خوب.", ["دفتر", "کتاب‌های خوب"], 1.0, 1.0),   # punctuation goes; the best answer counts
             ("«تهران»،", ["تهران"], 1.0, 1.0),                         # Persian punctuation too
             ("۱۲ نفر", ["12 نفر"], 1.0, 1.0),                         # digits normalized as in training
             ("كتاب خوب", ["کتاب بد"], 0.0, 0.5),                      # Arabic kaf → ک; 1 of 2 tokens each way
             ("x y y", ["y y z"], 0.0, 2 / 3),                          # repeats count: 2 common of 3
             ("a y y", ["y y z"], 0.0, 0.8),                            # 'a' is an article: 2 of 2, 2 of 3
             ("The Tehran!", ["tehran"], 1.0, 1.0),                     # SQuAD's lowercase and articles
             ("می روم", ["می‌روم"], 1.0, 1.0),                          # the normalizer joins می with ZWNJ
             ("هیچ", ["چیزی دیگر"], 0.0, 0.0)]
    for prediction, answers, em, f1 in cases:
        assert tasks.exact_match(prediction, answers, normalize) == em, prediction
        assert tasks.f1(prediction, answers, normalize) == pytest.approx(f1), prediction
    assert tasks.answer_tokens("«کتاب‌ها»، و دفترها؟", normalize) == ["کتاب‌ها", "و", "دفترها"]  # ZWNJ stays


def test_reading_comprehension_averages_exact_match_and_f1(runs, monkeypatch):
    items = [parse_reading(RC[0], "f:1"), parse_reading(RC[1], "f:2"),
             parse_reading({"prompt": "p", "response": "الف ب ج د"}, "f:3")]
    answers = iter(["به مدرسه", "گرم", "الف ب"])  # EM 1, F1 1 · EM 0, F1 0 · EM 0, F1 2·1·0.5/1.5 = 2/3
    monkeypatch.setattr(tasks, "greedy_answer", lambda *args: next(answers))
    lm = LanguageModel.load(runs["gpt"])
    result = tasks.reading_comprehension(lm, items, EvaluateConfig(task="reading-comprehension", data="f"))
    values = {m.name: m.value for m in result.metrics}
    assert values["exact match"] == pytest.approx(1 / 3)
    assert values["F1"] == pytest.approx((1 + 0 + 2 / 3) / 3)


# --------------------------------------------------------------------------- the scorer

@pytest.mark.parametrize("family", ["gpt", "gru", "ngram"])
def test_continuation_log_likelihood_is_the_bits_per_char_scorers_difference(runs, family):
    """log p(x | c) = −(nll(c + x) − nll(c)) by `sequence_nll`, batched and padded or not, for every causal family."""
    lm = LanguageModel.load(runs[family])
    texts = [("دل و جان", " یار"), ("شب", " مهر و ماه گل"), ("باغ راه کتاب آب", " می"), ("گل", " ساقی")]
    requests = [(lm.encode_prompt(c), lm.tokenizer.encode_plain(x)) for c, x in texts]
    expected = [sequence_nll(lm.model, c, BLOCK)[0] - sequence_nll(lm.model, c + x, BLOCK)[0] for c, x in requests]
    for batch_size in (1, 3):
        got = tasks.continuation_logprobs(lm.model, requests, batch_size, lm.tokenizer.pad_id)
        assert got == pytest.approx(expected, abs=1e-4)


def test_a_context_and_an_option_encoded_apart_are_the_ids_of_the_two_joined(tiny_run):
    """The harness encodes context + continuation whole and keeps the ids past the context's (`_encode_pair`);
    sokhan's byte-level BPE gives the same ids encoded apart, since a continuation begins a pre-token."""
    lm = LanguageModel.load(tiny_run)
    for record in MC[:2] + [mc_record("کدام عدد؟", ["-12", "۳.۵", "«گل»", "the end"], 0)]:
        item = parse_choice(record, "f:1")
        for style in ("cloze", "listed"):
            context = lm.normalize(item.question if style == "cloze" else listed_prompt(item.question, item.options))
            context += "\n" + tasks.ANSWER_CUE
            for k in item.choices:
                option = " " + lm.normalize(tasks.choice_text(item, k, style))
                apart = lm.tokenizer.encode_plain(context) + lm.tokenizer.encode_plain(option)
                assert lm.tokenizer.encode_plain(context + option) == apart, (context, option)


def test_a_transformers_context_is_cut_from_the_left(runs):
    lm = LanguageModel.load(runs["gpt"])
    context, continuation = list(range(100)), [7, 8, 9]
    kept, same = tasks.fit_context(lm, context, continuation, "f:1: option 1")
    assert same == continuation and kept == context[-(BLOCK + 1 - 3):]
    assert len(kept) + len(continuation) - 1 == BLOCK                 # the input is exactly the context window
    request = (lm.encode_prompt(" ".join(WORDS * 4)), lm.tokenizer.encode_plain(" یار"))
    fitted = tasks.fit_context(lm, *request, "f:1")
    assert tasks.continuation_logprobs(lm.model, [fitted], 1, 0)[0] < 0
    with pytest.raises(SokhanError, match=r"^f:1: option 2 is 40 tokens: more than the model's context of 32"):
        tasks.fit_context(lm, context, list(range(40)), "f:1: option 2")
    recurrent = LanguageModel.load(runs["gru"])
    assert tasks.fit_context(recurrent, context, continuation, "f:1")[0] == context   # reads any length


def test_options_are_put_as_the_model_was_trained_to_read_them(runs, gpt_run, monkeypatch):
    """A plain model: <bos>question\\nپاسخ: then ' option'; a chat model: its template, then 'n. option'."""
    item = parse_choice(mc_record("رنگ آسمان؟", ["آبی", "سبز"], 0), "f:1")
    seen = []

    def spy(model, requests, batch_size, pad_id):
        seen.extend(requests)
        return [-1.0] * len(requests)

    monkeypatch.setattr(tasks, "continuation_logprobs", spy)
    plain = LanguageModel.load(gpt_run)
    tasks.multiple_choice(plain, [item], EvaluateConfig(task="multiple-choice", data="f"))
    assert seen[0] == (plain.encode_prompt("رنگ آسمان؟\nپاسخ:"), plain.tokenizer.encode_plain(" آبی"))
    assert seen[1][1] == plain.tokenizer.encode_plain(" سبز")
    seen.clear()
    chat = LanguageModel.load(as_chat_model(gpt_run))
    result = tasks.multiple_choice(chat, [item], EvaluateConfig(task="multiple-choice", data="f"))
    prompt = mc_record("رنگ آسمان؟", ["آبی", "سبز"], 0)["prompt"]
    context = ChatTemplate(chat.tokenizer, chat.normalize).encode([Message("user", prompt)], True)[0]
    assert seen[0] == (context[-(BLOCK + 1 - len(seen[0][1])):], chat.tokenizer.encode_plain(chat.normalize("1. آبی")))
    assert context[-1] == chat.tokenizer.token_id("<|assistant|>")
    assert result.details == {"prompt": "listed", "chat_template": True, "empty_options_skipped": 0}


def test_bpc_of_a_file_is_sokhan_evals_figure_and_a_folder_reads_every_file(runs, tmp_path):
    lm = LanguageModel.load(runs["gpt"])
    first, second = "دل و جان\n\nیار و ساقی", "شب مهر\n\nگل باغ"
    write(tmp_path / "texts" / "a.txt", first)
    write(tmp_path / "texts" / "b" / "c.md", second)
    one = tasks.run_task(lm, EvaluateConfig(task="bpc", data=str(tmp_path / "texts" / "a.txt")), None)
    assert one.metrics[0].value == pytest.approx(lm.bits_per_char(first), abs=1e-9)
    both = tasks.run_task(lm, EvaluateConfig(task="bpc", data=str(tmp_path / "texts")), None)
    assert both.metrics[0].value == pytest.approx(lm.bits_per_char(first + "\n\n" + second), abs=1e-9)
    assert both.details["documents"] == 4 and both.metrics[0].count == lm.score(first + "\n\n" + second).chars


# --------------------------------------------------------------------------- the command

def test_the_command_prints_a_line_per_metric_and_saves_the_json_beside_the_model(gpt_run, tmp_path, capsys):
    data = jsonl(tmp_path / "quiz.test.jsonl", MC)
    assert main(["evaluate", str(gpt_run), "--task", "multiple-choice", "--data", str(data), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    saved = json.loads((gpt_run / "eval" / "multiple-choice-quiz.test.json").read_text(encoding="utf-8"))
    assert out[0].startswith(f"multiple-choice  {data}  (cloze prompt; model {latest_checkpoint(gpt_run)}")
    accuracy = saved["metrics"]["accuracy"]["value"]
    assert out[1] == f"  accuracy {100 * accuracy:.1f} % (3 items)"
    assert out[2].startswith("  accuracy, length-normalized ") and out[2].endswith(" % (3 items)")
    assert out[3] == "  chance 36.1 % (3 items)"                              # (1/4 + 1/2 + 1/3) / 3
    assert [o["where"] for o in saved["items"]] == [f"{data}:1", f"{data}:2", f"{data}:3"]
    assert accuracy == sum(o["correct"] for o in saved["items"]) / 3
    assert saved["model"] == str(latest_checkpoint(gpt_run)) and saved["options"]["prompt"] == "auto"
    assert not list((gpt_run / "eval").glob("*.tmp"))


def test_a_task_list_runs_every_table_and_flags_win(gpt_run, tmp_path, capsys):
    mc, rc = jsonl(tmp_path / "mc.jsonl", MC), jsonl(tmp_path / "rc.jsonl", RC)
    text = write(tmp_path / "text.txt", "دل و جان\n\nیار")
    listing = write(tmp_path / "tasks.toml", f'[quiz]\ntask = "multiple-choice"\ndata = "{mc}"\nlimit = 2\n\n'
                                            f'[reading]\ntask = "reading-comprehension"\ndata = "{rc}"\n'
                                            f'max_new_tokens = 4\n\n[text]\ntask = "bpc"\ndata = "{text}"\n')
    assert main(["evaluate", str(gpt_run), "--tasks", str(listing), "--device", "cpu"]) == 0
    saved = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (gpt_run / "eval").iterdir()}
    assert sorted(saved) == ["bpc-text.json", "multiple-choice-mc.json", "reading-comprehension-rc.json"]
    assert saved["multiple-choice-mc.json"]["metrics"]["accuracy"]["count"] == 2            # the table's limit
    assert saved["reading-comprehension-rc.json"]["options"]["max_new_tokens"] == 4
    assert "  exact match " in capsys.readouterr().out
    assert main(["evaluate", str(gpt_run), "--tasks", str(listing), "--limit", "1", "--device", "cpu"]) == 0
    again = json.loads((gpt_run / "eval" / "multiple-choice-mc.json").read_text(encoding="utf-8"))
    assert again["metrics"]["accuracy"]["count"] == 1                                      # the flag wins



def test_bad_records_stop_the_command_with_one_line_before_any_work(gpt_run, tmp_path, capsys):
    good = jsonl(tmp_path / "good.jsonl", MC)
    bad = jsonl(tmp_path / "bad.jsonl", [MC[0], {"question": "q", "options": ["a", "b"], "answer": 5}])
    listing = write(tmp_path / "tasks.toml", f'[a]\ntask = "multiple-choice"\ndata = "{good}"\n\n'
                                            f'[b]\ntask = "multiple-choice"\ndata = "{bad}"\n')
    code = main(["evaluate", str(gpt_run), "--tasks", str(listing)])
    one_line_error(capsys, code, f"{bad}:2: 'answer' 5 is out of range")
    assert not (gpt_run / "eval").exists()                          # nothing scored, nothing saved
    quiz = jsonl(tmp_path / "quiz.jsonl", [MC[2]])
    code = main(["evaluate", str(gpt_run), "--task", "reading-comprehension", "--data", str(quiz)])
    one_line_error(capsys, code, f"{quiz}:1: no field 'prompt'")     # a quiz is not a reading test


@pytest.mark.parametrize("table, message", [('task = "bpc"\n', "[t] of"),
                                            ('task = "bpc"\ndata = "x"\nsize = 3\n', "unknown option 'size'"),
                                            ('task = "quiz"\ndata = "x"\n', "unknown task 'quiz'"),
                                            ('task = "bpc"\ndata = "x"\nlimit = -1\n', "limit must be ≥ 0")])
def test_a_bad_task_list_is_one_line_naming_its_table(tmp_path, table, message):
    listing = write(tmp_path / "tasks.toml", "[t]\n" + table)
    with pytest.raises(SokhanError, match=re.escape(message)):
        read_task_list(listing)


def test_task_list_and_flag_mistakes_are_one_line(gpt_run, tmp_path, capsys):
    mc = jsonl(tmp_path / "mc.jsonl", MC)
    listing = write(tmp_path / "tasks.toml", 'task = "bpc"\n')
    one_line_error(capsys, main(["evaluate", str(gpt_run), "--tasks", str(listing)]), "not a table")
    twice = write(tmp_path / "twice.toml", f'[a]\ntask = "multiple-choice"\ndata = "{mc}"\n\n'
                                          f'[b]\ntask = "multiple-choice"\ndata = "{mc}"\nlimit = 1\n')
    one_line_error(capsys, main(["evaluate", str(gpt_run), "--tasks", str(twice)]), "[a] and [b] would both save")
    one_line_error(capsys, main(["evaluate", str(gpt_run), "--tasks", str(twice), "--task", "bpc"]),
                   "--task and --data name one task")
    one_line_error(capsys, main(["evaluate", str(gpt_run), "--data", str(mc)]), "give --task")
    one_line_error(capsys, main(["evaluate", str(gpt_run), "--task", "bpc", "--data", str(tmp_path / "none")]),
                   "none")
