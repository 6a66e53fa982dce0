"""Tests for sokhan.text.tokenizers: lossless round trips, save/load, special tokens, BPE merges."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sokhan.errors import SokhanError
from sokhan.text.normalize import normalize
from sokhan.text.tokenizers import SPECIAL_TOKENS, Tokenizer, train_bpe, train_char, train_tokenizer

ZWNJ = "\u200c"
LINES = [
    "می‌روم به خانه و کتاب‌ها را می‌خوانم.",
    "من هر روز به مدرسه می‌روم.",
    "می‌روم، می‌روم، می‌روم!",
    "ای ساقی، به نور باده برافروز جام ما",
    "کتاب خوب دوست خوبی است.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a small English text.",
]
CORPUS = [normalize(line) for line in LINES] * 40


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_bpe(iter(CORPUS), vocab_size=400)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_char(iter(CORPUS))


@pytest.fixture(scope="module", params=["bpe", "char"])
def tok(request) -> Tokenizer:
    return request.getfixturevalue(request.param)


def test_kinds_and_sizes(bpe, char):
    assert bpe.kind == "bpe" and char.kind == "char"
    assert bpe.vocab_size == 400
    # specials + 256 byte tokens + every distinct character of the corpus
    assert char.vocab_size == len(SPECIAL_TOKENS) + 256 + len(set("".join(CORPUS)))


PERSIAN_ALPHABET = ("ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهیآئءۀ" + "۰۱۲۳۴۵۶۷۸۹" + "\u064e\u0650\u0651\u0654"
                    + ZWNJ + " \n.،؟!«»")
# Lone surrogates are left out: they are not text (no UTF-8 form), and Hugging Face's encode rejects them.
persian_text = st.text(alphabet=st.sampled_from(PERSIAN_ALPHABET) | st.characters(codec="utf-8"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(text=persian_text | st.text())
def test_round_trip_bpe(bpe, text):
    text = normalize(text)
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=persian_text | st.text())
def test_round_trip_char(char, text):
    text = normalize(text)
    assert char.decode(char.encode(text)) == text


def test_round_trip_raw_edge_cases(tok):
    # unseen scripts, emoji, control characters, combining marks, leading spaces, a literal special token
    for text in ["😀 سلام\n\nدنیا", "\x00\x7f", "x\u0301y", "  two leading spaces", "a<|pad|> b", "中文", ""]:
        assert tok.decode(tok.encode(text)) == text


def test_special_tokens_at_fixed_ids(bpe, char):
    for i, token in enumerate(SPECIAL_TOKENS):
        assert bpe.token_id(token) == char.token_id(token) == i
        assert bpe.id_to_token(i) == char.id_to_token(i) == token
    assert (bpe.pad_id, bpe.bos_id, bpe.eos_id) == (0, 1, 2) == (char.pad_id, char.bos_id, char.eos_id)
    assert {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|mask|>"} <= set(SPECIAL_TOKENS)
    for token in SPECIAL_TOKENS:  # a special token in text is one id, never split into pieces
        assert bpe.encode(token) == char.encode(token) == [SPECIAL_TOKENS.index(token)]


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_save_load_round_trip(kind, request, tmp_path):
    tok = request.getfixturevalue(kind)
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    for loaded in (Tokenizer.load(path), Tokenizer.load(tmp_path)):  # a file, or the folder holding it
        assert loaded.kind == kind
        assert loaded.vocab_size == tok.vocab_size
        for text in [*LINES, "متن تازه‌ای با 😀 و 中文", "<|user|> سلام <|end|>"]:
            text = normalize(text)
            assert loaded.encode(text) == tok.encode(text)
            assert loaded.decode(loaded.encode(text)) == text
        for i, token in enumerate(SPECIAL_TOKENS):
            assert loaded.token_id(token) == i


def test_bpe_learns_merges(bpe, char):
    word = "کتاب"
    assert len(bpe.encode(word)) < len(word) == len(char.encode(word))
    assert len(bpe.encode(" the lazy dog")) < len(" the lazy dog")


def test_bpe_keeps_zwnj_words_whole(bpe):
    word = "می‌روم"
    assert ZWNJ in word
    assert len(bpe.encode(word)) == 1
    assert len(bpe.encode(" " + word)) == 1
    assert bpe.decode(bpe.encode(word)) == word


def test_char_tokenizer_is_one_token_per_seen_character(char):
    text = normalize(LINES[0])
    assert [char.id_to_token(i) for i in char.encode(text)] == list(text)
    # an unseen character falls back to its UTF-8 bytes
    assert [char.id_to_token(i) for i in char.encode("😀")] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]


def test_train_bpe_vocab_too_small():
    with pytest.raises(SokhanError):
        train_bpe(iter(CORPUS), vocab_size=len(SPECIAL_TOKENS) + 256)


def test_train_tokenizer_dispatch():
    assert train_tokenizer("char", iter(CORPUS), 0).kind == "char"
    with pytest.raises(SokhanError):
        train_tokenizer("wordpiece", iter(CORPUS), 400)


def test_load_missing(tmp_path):
    with pytest.raises(SokhanError):
        Tokenizer.load(tmp_path / "nope.json")
    with pytest.raises(SokhanError):
        Tokenizer.load(tmp_path)  # a folder without tokenizer.json


@pytest.mark.parametrize("content", [b"not json at all", b"\xff\xfe\x00garbage", b"{}", b'{"model": 1}'])
def test_load_garbage(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(SokhanError):
        Tokenizer.load(path)


def test_load_tokenizer_without_special_tokens(tmp_path, bpe):
    data = json.loads(bpe.hf.to_str())
    data["added_tokens"] = []
    data["model"]["vocab"] = {t: i for t, i in data["model"]["vocab"].items() if t not in SPECIAL_TOKENS}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SokhanError):
        Tokenizer.load(path)
