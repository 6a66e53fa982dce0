"""One scoring rule: `sokhan eval`, the Python API and the leaderboard score a text alike, and say which text."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from sokhan.api import LanguageModel
from sokhan.config import PrepareConfig, TrainConfig
from sokhan.data.fingerprint import TextFingerprint
from sokhan.data.prepare import prepare, split_of
from sokhan.data.shards import TokenData, load_meta
from sokhan.data.sources import iter_documents, split_text
from sokhan.errors import SokhanError
from sokhan.eval.bpc import sequence_nll
from sokhan.eval.leaderboard import MIXED_TEXTS, UNKNOWN, summarize, val_text, write_leaderboard
from sokhan.models import ModelConfig, build_model
from sokhan.recipes.pretrain import pretrain
from sokhan.text.normalize import NormalizerConfig, PersianNormalizer
from test_cli import assert_one_line_error, sokhan

WORDS = ["دل", "می", "ساقی", "باده", "یار", "شب", "مهر", "ماه", "گل", "باغ", "جان", "راه", "كتاب", "ي"]
SEED, VAL_FRACTION = 7, 0.25
BLOCK = 32


def paragraphs(n: int) -> str:
    """n documents in the writer's sense, each of two paragraphs (blank line between), three lines apart.

    Arabic kaf and yeh among the words, so normalization changes the text and the characters
    counted are the normalized ones.
    """
    docs = []
    for i in range(n):
        paras = ["\n".join(" ".join(WORDS[(i * 5 + p * 7 + j * 3 + k) % len(WORDS)] for k in range(4)) + f" {i}{p}"
                           for j in range(2)) for p in range(2)]
        docs.append("\n\n".join(paras))
    return "\n\n\n".join(docs) + "\n"


def train(data: Path, out: Path, **model) -> Path:
    cfg = TrainConfig(data=str(data), out_dir=str(out), max_steps=8, batch_size=4, eval_interval=1000, eval_iters=1,
                      warmup_steps=2, progress=False, device="cpu")
    return Path(pretrain(cfg, dict(preset="tiny", block_size=BLOCK, **model), Console(quiet=True)).run_dir)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scoring")
    (folder / "corpus.txt").write_text(paragraphs(60), encoding="utf-8")
    return prepare(PrepareConfig(source=str(folder / "corpus.txt"), out_dir=str(folder / "data"), tokenizer="char",
                                 val_fraction=VAL_FRACTION, seed=SEED), progress=False)


@pytest.fixture(scope="module")
def runs(dataset) -> dict[str, Path]:
    """A tiny GPT, a GRU and a 3-gram on the dataset: seconds in all."""
    return {"gpt": train(dataset, dataset.parent / "gpt", n_layer=1, n_head=2, n_embd=32),
            "gru": train(dataset, dataset.parent / "gru", family="gru", n_layer=1, n_embd=32),
            "ngram": train(dataset, dataset.parent / "ngram", family="ngram", order=3)}


def val_documents(dataset: Path) -> list[str]:
    """The dataset's val documents, found as prepare finds them: normalized, then split by their opening."""
    normalize = PersianNormalizer(NormalizerConfig.from_dict(load_meta(dataset)["normalizer"]))
    docs = [d for d in (normalize(raw).strip() for raw in iter_documents(str(dataset.parent / "corpus.txt"))) if d]
    return [d for d in docs if split_of(d, SEED, VAL_FRACTION) == "val"]


@pytest.fixture(scope="module")
def val_file(dataset) -> Path:
    """Exactly the val documents, written back out with a blank line between them."""
    path = dataset.parent / "val.txt"
    path.write_text("\n\n".join(val_documents(dataset)) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Turn an endless loop into a failure (SIGALRM interrupts the Python loop between model calls)."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds}s: an endless loop")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- the stride

@pytest.mark.parametrize("stride", [0, -1, 17])
def test_a_stride_outside_one_to_the_context_is_refused(stride):
    """Before: 0 silently meant the default, −1 looped for ever, 17 > 16 failed on a tensor size."""
    model = build_model(ModelConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    with time_limit(20), pytest.raises(SokhanError, match=rf"stride must be between 1 and .* 16 tokens, got {stride}"):
        sequence_nll(model, [i % 50 for i in range(100)], block_size=16, stride=stride)
    assert sequence_nll(model, list(range(40)), 16, stride=16)[1] == sequence_nll(model, list(range(40)), 16, 1)[1]


def test_api_and_cli_refuse_a_bad_stride(runs, val_file):
    lm = LanguageModel.load(runs["gpt"])
    with time_limit(20), pytest.raises(SokhanError, match="stride"):
        lm.bits_per_char("دل و جان", stride=-1)
    assert_one_line_error(sokhan("eval", str(runs["gpt"]), str(val_file), "--stride", str(BLOCK + 1)),
                          f"stride must be between 1 and the model's context of {BLOCK} tokens, got {BLOCK + 1}")
    for bad in ("0", "-1"):
        assert_one_line_error(sokhan("eval", str(runs["gpt"]), str(val_file), "--stride", bad), "--stride")


# --------------------------------------------------------------------------- one rule, one text

def test_prepare_records_the_fingerprint_and_doc_split_it_scores_by(dataset, runs):
    meta = load_meta(dataset)
    assert meta["doc_split"] == "blank-line"
    docs = val_documents(dataset)
    expected = TextFingerprint()
    for doc in docs:
        expected.add(doc)
    val = meta["splits"]["val"]
    assert (val["fingerprint"], val["chars"], val["documents"]) == (expected.digest, expected.chars, len(docs))
    assert meta["splits"]["train"]["fingerprint"] != val["fingerprint"]
    lm = LanguageModel.load(runs["gpt"])
    assert lm.config["data"]["doc_split"] == "blank-line"
    assert lm.config["data"]["splits"]["val"]["fingerprint"] == val["fingerprint"]


def test_a_corpus_of_records_is_evaluated_one_document_per_file(tmp_path):
    """Hafez, .jsonl and hub records are documents of their own (a ghazal keeps blank lines between its
    couplets): eval reads a text file as one, not cut at blank lines by a doc_split that never applied."""
    from sokhan.data.sources import eval_doc_split

    (tmp_path / "a.txt").write_text("x\n\ny\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "c.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    assert eval_doc_split("hafez", "blank-line") == "file"
    assert eval_doc_split("hafez,fatol-hafez", "line") == "file"
    assert eval_doc_split(str(tmp_path / "b.jsonl"), "blank-line") == "file"
    assert eval_doc_split(str(tmp_path / "records"), "blank-line") == "file"
    assert eval_doc_split(f"hafez,{tmp_path / 'a.txt'}", "line") == "line"
    assert eval_doc_split(str(tmp_path), "blank-line") == "blank-line"  # a folder holding a .txt
    meta = prepare(PrepareConfig(source="hafez", out_dir=str(tmp_path / "hafez"), tokenizer="char"), progress=False)
    assert load_meta(meta)["doc_split"] == "file"


@pytest.mark.parametrize("family", ["gpt", "gru", "ngram"])
def test_eval_of_the_val_documents_is_the_leaderboards_figure(runs, dataset, val_file, family):
    """The file of val documents scores, to the last bit, what the leaderboard scores on val.bin.

    Before: the file was one document, blank lines included (fewer characters, other tokens).
    """
    lm = LanguageModel.load(runs[family])
    score = lm.score(val_file.read_text(encoding="utf-8"))
    val = load_meta(dataset)["splits"]["val"]
    assert (score.chars, score.documents, score.fingerprint) == (val["chars"], val["documents"], val["fingerprint"])
    assert score.tokens == val["tokens"] - 1
    assert score.bits_per_char == summarize(runs[family]).val_bpc  # bit for bit: the same ids, the same windows
    assert lm.bits_per_char(val_file.read_text(encoding="utf-8")) == score.bits_per_char


def test_cli_eval_prints_the_leaderboards_figure_and_what_it_divides_by(runs, dataset, val_file):
    val = load_meta(dataset)["splits"]["val"]
    proc = sokhan("eval", str(runs["gpt"]), str(val_file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == f"{summarize(runs['gpt']).val_bpc:.4f}"
    assert f"{val['chars']:,} characters in {val['documents']:,} documents after normalization" in proc.stdout
    assert f"text {val['fingerprint'][:8]} = the model's validation text" in proc.stdout
    other = val_file.with_name("other.txt")
    other.write_text(val_file.read_text(encoding="utf-8") + "\nیک سطر دیگر\n", encoding="utf-8")
    proc = sokhan("eval", str(runs["gpt"]), str(other), "--doc-split", "file")
    assert proc.returncode == 0, proc.stderr
    assert " in 1 documents" in proc.stdout and "validation text" not in proc.stdout


def test_doc_split_defaults_to_the_models_and_can_be_overridden(runs, val_file):
    lm = LanguageModel.load(runs["gpt"])
    text = val_file.read_text(encoding="utf-8")
    whole = lm.score(text, doc_split="file")
    normalized = lm.normalize(text).strip()
    assert (whole.documents, whole.chars) == (1, len(normalized) + 1)
    lm.config["data"]["doc_split"] = "line"
    assert lm.score(text).documents == len([line for line in text.splitlines() if line.strip()])
    del lm.config["data"]["doc_split"]  # a model saved before doc_split was recorded: prepare's default
    assert lm.score(text).documents == len(list(split_text(text, "blank-line")))


def test_a_string_is_cut_as_a_file_holding_it_is(tmp_path):
    text = "\ufeffیک\r\nدو\n \t\nسه\r\n\n\nچهار"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    for doc_split in ("blank-line", "line", "file"):
        assert list(split_text(text, doc_split)) == list(iter_documents(str(path), doc_split=doc_split)), doc_split


def test_a_literal_special_token_in_the_corpus_is_text(tmp_path):
    """prepare encodes '<|user|>' in a document as characters, as `sokhan eval` does (it was one special id)."""
    docs = paragraphs(40).replace(" 0", " <|user|>").split("\n\n")  # the first two paragraphs hold it
    (tmp_path / "c.txt").write_text("\n\n".join(docs), encoding="utf-8")
    out = prepare(PrepareConfig(source=str(tmp_path / "c.txt"), out_dir=str(tmp_path / "d"), tokenizer="char",
                                val_fraction=0.3), progress=False)
    from sokhan.text.tokenizers import Tokenizer

    tok = Tokenizer.load(out)
    special = tok.token_id("<|user|>")
    assert special in tok.encode(docs[0])  # the library's own encode would read markup
    for split in ("train", "val"):
        assert special not in np.asarray(TokenData(out, split).tokens), split


# --------------------------------------------------------------------------- the leaderboard: one ranking per text

def test_leaderboard_ranks_only_runs_on_the_same_text(tmp_path, dataset, runs):
    """Runs on datasets with another split seed, or without a fingerprint, get their own tables, and a line why."""
    other = prepare(PrepareConfig(source=str(dataset.parent / "corpus.txt"), out_dir=str(tmp_path / "seed8"),
                                  tokenizer="char", val_fraction=VAL_FRACTION, seed=SEED + 1), progress=False)
    old = tmp_path / "old"
    shutil.copytree(dataset, old)
    meta = json.loads((old / "meta.json").read_text(encoding="utf-8"))
    for info in meta["splits"].values():
        info.pop("fingerprint", None)  # as prepared before fingerprints
    (old / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    paths = [runs["ngram"], runs["gpt"], train(other, tmp_path / "ngram-seed8", family="ngram", order=3),
             train(old, tmp_path / "ngram-old", family="ngram", order=3)]
    summaries = [summarize(p) for p in paths]
    texts = [s.text for s in summaries]
    assert texts[0] == texts[1] == load_meta(dataset)["splits"]["val"]["fingerprint"][:8]
    assert texts[2] not in (texts[0], UNKNOWN) and texts[3] == UNKNOWN

    printed = io.StringIO()
    pictures = write_leaderboard(summaries, tmp_path / "board", Console(file=printed, width=200), "test")
    assert MIXED_TEXTS in " ".join(printed.getvalue().split())
    md = (tmp_path / "board" / "leaderboard.md").read_text(encoding="utf-8")
    sections = md.split("## validation text ")[1:]
    assert [s.split("\n", 1)[0] for s in sections] == [texts[0], texts[2], f"{UNKNOWN} ({old})"]
    assert ["ngram" in sections[0] and "gpt" in sections[0], "ngram-seed8" in sections[1],
            "ngram-old" in sections[2]] == [True] * 3
    assert sorted(p.png.name for p in pictures) == sorted(
        [f"leaderboard-{texts[0]}.png", f"leaderboard-{texts[2]}.png", f"leaderboard-{UNKNOWN}-3.png"])

    single = write_leaderboard(summaries[:2], tmp_path / "one", Console(file=io.StringIO()), "test")
    assert [p.png.name for p in single] == ["leaderboard.png"]  # one text: one table, one plot, as a zoo gives
    assert (tmp_path / "one" / "leaderboard.md").read_text(encoding="utf-8").startswith("| run |")


def test_the_leaderboard_cache_scores_a_re_prepared_data_folder_again(tmp_path, dataset):
    """The cache is of a checkpoint on a text: prepared again with another split, the folder holds another."""
    corpus = dataset.parent / "corpus.txt"
    data = prepare(PrepareConfig(source=str(corpus), out_dir=str(tmp_path / "data"), tokenizer="char",
                                 val_fraction=VAL_FRACTION, seed=SEED), progress=False)
    run = train(data, tmp_path / "ngram", family="ngram", order=3)
    before = summarize(run)
    prepare(PrepareConfig(source=str(corpus), out_dir=str(data), tokenizer="char", val_fraction=VAL_FRACTION,
                          seed=SEED + 1), progress=False)
    after = summarize(run)
    assert after.text == val_text(data) != before.text and after.val_bpc != before.val_bpc
    assert summarize(run) == after  # and that is cached in turn
