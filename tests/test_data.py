"""Data: sources -> prepare (normalize, split, tokenize, .bin) -> TokenData batches."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write
from sokhan.data import prepare as prepare_mod
from sokhan.data.prepare import PrepareConfig, prepare, split_of, token_dtype
from sokhan.data.shards import TokenData, load_meta
from sokhan.data.sources import CorpusWarning, iter_documents, letters_key
from sokhan.errors import SokhanError
from sokhan.text.normalize import NormalizerConfig, PersianNormalizer
from sokhan.text.tokenizers import Tokenizer, train_char

PERSIAN = re.compile(r"[\u0600-\u06FF]")


def persian_corpus(n: int) -> list[str]:
    """n distinct short Persian documents (a few lines each)."""
    words = ["دل", "می", "ساقی", "باده", "یار", "شب", "مهر", "ماه", "گل", "باغ", "جان", "راه"]
    docs = []
    for i in range(n):
        lines = [" ".join(words[(i * 7 + j * 3 + k) % len(words)] for k in range(5)) + f" {i}" for j in range(3)]
        docs.append("\n".join(lines))
    return docs


def normalized_docs(source: str, **kw) -> list[str]:
    norm = PersianNormalizer(NormalizerConfig())
    return [d for d in (norm(r).strip() for r in iter_documents(source, **kw)) if d]


def read_split_documents(out: Path, split: str) -> list[list[int]]:
    """The documents of a .bin file as id lists, checking every boundary is bos ... eos."""
    meta = load_meta(out)
    ids = np.asarray(TokenData(out, split).tokens).astype(np.int64)
    bos, eos = meta["bos_id"], meta["eos_id"]
    docs, i = [], 0
    while i < len(ids):
        assert ids[i] == bos, f"document {len(docs)} does not start with bos"
        j = i + 1
        while ids[j] != eos:
            assert ids[j] != bos, "bos inside a document"
            j += 1
        docs.append(ids[i + 1:j].tolist())
        i = j + 1
    return docs


# --------------------------------------------------------------------------- sources

def test_folder_of_txt_md_jsonl_sorted_recursive(tmp_path):
    write(tmp_path / "b.txt", "دوم یک\nادامه\n\n\n  \nدوم دو\n")
    write(tmp_path / "a" / "z.md", "اول\n")
    write(tmp_path / "c.jsonl", json.dumps({"text": "سوم"}, ensure_ascii=False) + "\n\n")
    write(tmp_path / "ignored.csv", "text\nنه\n")
    docs = list(iter_documents(str(tmp_path)))
    assert docs == ["اول", "دوم یک\nادامه", "دوم دو", "سوم"]
    assert list(iter_documents(str(tmp_path))) == docs  # re-iterable


def test_doc_split_modes(tmp_path):
    f = write(tmp_path / "c.txt", "\ufeffیک\nدو\r\n\nسه\n")
    assert list(iter_documents(str(f), doc_split="blank-line")) == ["یک\nدو", "سه"]
    assert list(iter_documents(str(f), doc_split="line")) == ["یک", "دو", "سه"]
    assert list(iter_documents(str(f), doc_split="file")) == ["یک\nدو\n\nسه"]
    with pytest.raises(SokhanError, match="doc_split"):
        iter_documents(str(f), doc_split="para")


def test_jsonl_field_and_errors(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "الف", "body": "ب"}\n{"text": "پ"}\n')
    assert list(iter_documents(str(f))) == ["الف", "پ"]
    with pytest.raises(SokhanError, match=r"d\.jsonl:2: no field 'body'"):
        list(iter_documents(str(f), text_field="body"))
    bad = write(tmp_path / "bad.jsonl", '{"text": "a"}\n\n{"text": "b",,}\n')
    with pytest.raises(SokhanError, match=r"bad\.jsonl:3: not valid JSON"):
        list(iter_documents(str(bad)))
    nonstr = write(tmp_path / "n.jsonl", '{"text": 5}\n')
    with pytest.raises(SokhanError, match=r"n\.jsonl:1: .*not a string"):
        list(iter_documents(str(nonstr)))


def test_decode_error_fail_and_skip(tmp_path):
    lines = [f"سطر {i}".encode() for i in range(1, 21)]
    lines[16] = b"bad \xff\xfe byte"  # line 17
    f = write(tmp_path / "corpus.txt", b"\n".join(lines) + b"\n")
    with pytest.raises(SokhanError, match=r"corpus\.txt:17: not valid UTF-8"):
        list(iter_documents(str(f), doc_split="line"))
    with pytest.warns(CorpusWarning, match=r"corpus\.txt:17: skipped 1 line"):
        docs = list(iter_documents(str(f), doc_split="line", on_decode_error="skip"))
    assert len(docs) == 19 and "سطر 17" not in docs and "سطر 18" in docs
    with pytest.raises(SokhanError, match="on_decode_error"):
        iter_documents(str(f), on_decode_error="ignore")


def test_hf_local_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["یک", "", "دو"], "body": ["x", "y", "z"]})
    ds.save_to_disk(str(tmp_path / "plain"))
    assert list(iter_documents(f"hf:{tmp_path / 'plain'}")) == ["یک", "دو"]
    assert list(iter_documents(f"hf:{tmp_path / 'plain'}", text_field="body")) == ["x", "y", "z"]
    dd = datasets.DatasetDict({"train": ds, "validation": datasets.Dataset.from_dict({"text": ["سه"]})})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert list(iter_documents(f"hf:{tmp_path / 'dict'}:validation")) == ["سه"]
    assert list(iter_documents(f"hf:{tmp_path / 'dict'}")) == ["یک", "دو"]
    with pytest.raises(SokhanError, match="no split 'test'"):
        list(iter_documents(f"hf:{tmp_path / 'dict'}:test"))
    with pytest.raises(SokhanError, match="no column 'content'"):
        list(iter_documents(f"hf:{tmp_path / 'plain'}", text_field="content"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SokhanError, match="neither a dataset made by save_to_disk nor data files"):
        iter_documents(f"hf:{tmp_path / 'nothing'}")


def test_embedded_hafez():
    docs = list(iter_documents("hafez"))
    assert len(docs) == 495
    assert all(d.strip() and PERSIAN.search(d) for d in docs)
    first = docs[0].split("\n\n")
    assert first[0] == "الا یا ایها الساقی ادر کاسا و ناولها\nکه عشق آسان نمود اول ولی افتاد مشکل ها"
    assert len(first) == 7 + 2  # 7 couplets, the interpretation and the alternative one
    import sys
    assert "hafez.entry" not in sys.modules  # the package itself was not imported


def test_embedded_fatol_hafez_grouped_into_ghazals():
    docs = list(iter_documents("fatol-hafez"))
    # Aligned with hafez.json: one document per ghazal (495), every couplet used once.
    assert len(docs) == 495
    couplets = [c for d in docs for c in d.split("\n\n")]
    assert all(len(c.split("\n")) == 2 for c in couplets)
    assert len(couplets) == 4191
    assert letters_key(docs[0].split("\n")[0]) == letters_key("الا یا ایها الساقی ادر کاسا و ناولها")
    assert docs[0].count("\n\n") == 6  # 7 couplets, like hafez.json's first ghazal
    assert docs[1].startswith("صلاحِ کار کجا")
    assert len(list(iter_documents("hafez,fatol-hafez"))) == 990


def test_fatol_fallback_groups_when_alignment_fails(monkeypatch):
    from sokhan.data import sources
    monkeypatch.setattr(sources, "_align_with_hafez", lambda couplets, ghazals: None)
    sources._fatol_groups.cache_clear()
    try:
        docs = list(iter_documents("fatol-hafez"))
    finally:
        sources._fatol_groups.cache_clear()
    assert len(docs) == -(-4191 // sources.FALLBACK_COUPLETS_PER_DOC)


def test_bad_source_specs(tmp_path):
    with pytest.raises(SokhanError, match=r"no such file or folder: .*nothere.txt"):
        iter_documents(str(tmp_path / "nothere.txt"))
    with pytest.raises(SokhanError, match="valid forms"):
        iter_documents("wikipedia")
    with pytest.raises(SokhanError, match=r"no .txt, .md, .jsonl or .parquet"):
        iter_documents(str(tmp_path))
    with pytest.raises(SokhanError, match="no such file or folder"):
        iter_documents(f"hafez,{tmp_path / 'missing'}")  # checked eagerly, before reading hafez


# --------------------------------------------------------------------------- prepare

@pytest.fixture(scope="module")
def hafez_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), vocab_size=400), progress=False)


def test_prepare_end_to_end_counts_and_boundaries(hafez_data):
    meta = json.loads((hafez_data / "meta.json").read_text(encoding="utf-8"))
    assert meta["format"] == 2 and meta["dtype"] == "uint16" and meta["tokenizer"] == "bpe"
    assert meta["normalizer"] == {"digits": "persian", "remove_diacritics": False, "join_affixes": True}
    tok = Tokenizer.load(hafez_data)
    assert (meta["vocab_size"], meta["bos_id"], meta["eos_id"], meta["pad_id"]) == \
        (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (400, 1, 2, 0)

    docs = normalized_docs("hafez")
    expected = {s: [d for d in docs if split_of(d, 1337, 0.05) == s] for s in ("train", "val")}
    for split in ("train", "val"):
        info = meta["splits"][split]
        raw = np.fromfile(hafez_data / f"{split}-00000.bin", dtype="<u2")  # one shard: 100M tokens each
        assert info["tokens"] == raw.size and raw.max() < tok.vocab_size
        got = read_split_documents(hafez_data, split)
        assert info["documents"] == len(got) == len(expected[split])
        assert info["chars"] == sum(len(d) + 1 for d in expected[split])
        assert [tok.decode(ids) for ids in got] == expected[split]  # lossless, in corpus order
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 495
    assert not set(expected["train"]) & set(expected["val"])
    assert sorted(p.name for p in hafez_data.iterdir()) == ["meta.json", "tokenizer.json", "train-00000.bin",
                                                            "val-00000.bin"]


def test_prepare_split_is_deterministic_and_seeded(tmp_path):
    write(tmp_path / "corpus.txt", "\n\n".join(persian_corpus(200)))
    cfg = dict(source=str(tmp_path / "corpus.txt"), tokenizer="char", val_fraction=0.2)
    a = prepare(PrepareConfig(out_dir=str(tmp_path / "a"), seed=1, **cfg), progress=False)
    b = prepare(PrepareConfig(out_dir=str(tmp_path / "b"), seed=1, **cfg), progress=False)
    c = prepare(PrepareConfig(out_dir=str(tmp_path / "c"), seed=2, **cfg), progress=False)
    for name in ("train-00000.bin", "val-00000.bin", "tokenizer.json", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "val-00000.bin").read_bytes() != (c / "val-00000.bin").read_bytes()
    for out in (a, c):
        tok = Tokenizer.load(out)
        train = {tok.decode(d) for d in read_split_documents(out, "train")}
        val = {tok.decode(d) for d in read_split_documents(out, "val")}
        assert train and val and not train & val and len(train) + len(val) == 200


def test_prepare_streams_in_batches_and_progress(tmp_path, monkeypatch):
    # More documents than one chunk (990 > 256), and with a tiny chunk too.
    out = prepare(PrepareConfig(source="hafez,fatol-hafez", out_dir=str(tmp_path / "big"), vocab_size=300),
                  progress=True)
    monkeypatch.setattr(prepare_mod, "CHUNK", 7)
    small = prepare(PrepareConfig(source="hafez,fatol-hafez", out_dir=str(tmp_path / "small"), vocab_size=300),
                    progress=False)
    meta = load_meta(out)
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 990
    for name in ("train-00000.bin", "val-00000.bin", "meta.json"):
        assert (out / name).read_bytes() == (small / name).read_bytes()


def test_dtype_chooser_and_uint32(tmp_path, monkeypatch):
    assert token_dtype(4096) == np.dtype("<u2") and token_dtype(65535) == np.dtype("<u2")
    assert token_dtype(65536) == np.dtype("<u4") and token_dtype(200_000) == np.dtype("<u4")
    write(tmp_path / "corpus.txt", "\n\n".join(persian_corpus(60)))
    cfg = dict(source=str(tmp_path / "corpus.txt"), tokenizer="char", val_fraction=0.3)
    narrow = prepare(PrepareConfig(out_dir=str(tmp_path / "u16"), **cfg), progress=False)
    monkeypatch.setattr(prepare_mod, "UINT16_MAX_VOCAB", 100)
    wide = prepare(PrepareConfig(out_dir=str(tmp_path / "u32"), **cfg), progress=False)
    assert load_meta(wide)["dtype"] == "uint32" and load_meta(narrow)["dtype"] == "uint16"
    assert (wide / "val-00000.bin").stat().st_size == 2 * (narrow / "val-00000.bin").stat().st_size
    for split in ("train", "val"):
        assert np.array_equal(np.asarray(TokenData(wide, split).tokens), np.asarray(TokenData(narrow, split).tokens))


def test_prepare_bad_inputs(tmp_path):
    with pytest.raises(SokhanError, match="no such file or folder"):
        prepare(PrepareConfig(source=str(tmp_path / "missing.txt"), out_dir=str(tmp_path / "o1")), progress=False)
    assert not (tmp_path / "o1").exists()

    write(tmp_path / "empty.txt", "\n  \n\u0640\u0640\n\n\u200b\n")  # only kashida / ZWSP: nothing after normalizing
    with pytest.raises(SokhanError, match="empty corpus"):
        prepare(PrepareConfig(source=str(tmp_path / "empty.txt"), out_dir=str(tmp_path / "o2"), tokenizer="char"),
                progress=False)
    assert not (tmp_path / "o2").exists()

    write(tmp_path / "three.txt", "\n\n".join(persian_corpus(3)))
    with pytest.raises(SokhanError, match=r"val split has \d document.*--val-fraction"):
        prepare(PrepareConfig(source=str(tmp_path / "three.txt"), out_dir=str(tmp_path / "o3"), tokenizer="char"),
                progress=False)

    # Enough val documents but too few tokens: tiny one-character documents.
    tiny = [chr(0x0627 + i) for i in range(26)]
    assert sum(split_of(d, 1337, 0.3) == "val" for d in tiny) >= 2
    write(tmp_path / "tiny.txt", "\n".join(tiny))
    with pytest.raises(SokhanError, match=r"val split has \d+ tokens, need at least 64"):
        prepare(PrepareConfig(source=str(tmp_path / "tiny.txt"), out_dir=str(tmp_path / "o4"), tokenizer="char",
                              doc_split="line", val_fraction=0.3), progress=False)

    seed = next(s for s in range(1000) if split_of("تنها", s, 0.5) == "val")
    write(tmp_path / "one.txt", "تنها")
    with pytest.raises(SokhanError, match="train split is empty"):
        prepare(PrepareConfig(source=str(tmp_path / "one.txt"), out_dir=str(tmp_path / "o5"), tokenizer="char",
                              val_fraction=0.5, seed=seed), progress=False)

    for bad in (0.0, 0.6, -0.1):
        with pytest.raises(SokhanError, match="val_fraction"):
            prepare(PrepareConfig(source="hafez", out_dir=str(tmp_path / "o6"), val_fraction=bad), progress=False)
    with pytest.raises(SokhanError, match="unknown tokenizer kind 'wordpiece'"):
        prepare(PrepareConfig(source="hafez", out_dir=str(tmp_path / "o6"), tokenizer="wordpiece"), progress=False)
    assert not (tmp_path / "o6").exists()


def test_failed_prepare_keeps_previous_dataset(tmp_path):
    corpus = write(tmp_path / "corpus.txt", "\n\n".join(persian_corpus(80)))
    out = prepare(PrepareConfig(source=str(corpus), out_dir=str(tmp_path / "out"), tokenizer="char",
                                val_fraction=0.3), progress=False)
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write(tmp_path / "corpus.txt", corpus.read_bytes() + b"\n\nbad \xff line\n")
    # Raised while the (Rust) BPE trainer pulls documents: it must come through as SokhanError.
    with pytest.raises(SokhanError, match=r"corpus\.txt:\d+: not valid UTF-8"):
        prepare(PrepareConfig(source=str(corpus), out_dir=str(out), tokenizer="bpe", vocab_size=300,
                              val_fraction=0.3), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, no temp folder left
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        prepare(PrepareConfig(source=str(corpus), out_dir=str(out), tokenizer="char", val_fraction=0.3,
                              on_decode_error="skip"), progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "notes.txt", "tokenizer.json", "train-00000.bin",
                                                     "val-00000.bin"]


# --------------------------------------------------------------------------- shards

def make_dataset(path: Path, tokens: dict[str, np.ndarray], dtype: str = "uint16") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    train_char(["ab"]).save(path / "tokenizer.json")  # a dataset has one; these tests read only the shards
    splits = {}
    for split, arr in tokens.items():
        arr.astype(np.dtype(dtype).newbyteorder("<")).tofile(path / f"{split}.bin")
        splits[split] = {"documents": 1, "tokens": int(arr.size), "chars": int(arr.size)}
    meta = {"format": 1, "dtype": dtype, "vocab_size": 70000, "tokenizer": "char", "normalizer": {}, "source": "test",
            "bos_id": 1, "eos_id": 2, "pad_id": 0, "splits": splits}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_sample_batch(hafez_data):
    data = TokenData(hafez_data, "train")
    assert data.num_tokens == data.meta["splits"]["train"]["tokens"] > 0
    assert data.num_chars == data.meta["splits"]["train"]["chars"] and data.dtype == np.dtype("<u2")
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    x, y = data.sample_batch(8, 32, g)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    g2 = torch.Generator()
    g2.set_state(state)
    offsets = torch.randint(data.num_tokens - 32, (8,), generator=g2)
    tokens = torch.from_numpy(np.asarray(data.tokens).astype(np.int64))
    for row, i in enumerate(offsets.tolist()):
        assert torch.equal(x[row], tokens[i:i + 32]) and torch.equal(y[row], tokens[i + 1:i + 33])
    g.set_state(state)
    x2, y2 = data.sample_batch(8, 32, g)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = data.sample_batch(8, 32, g)
    assert not torch.equal(x, x3)


def test_sample_batch_block_too_large(tmp_path):
    d = make_dataset(tmp_path / "d", {"train": np.arange(100), "val": np.arange(10)})
    val = TokenData(d, "val")
    with pytest.raises(SokhanError, match=r"val split has 10 tokens, fewer than block_size\+1=11"):
        val.sample_batch(2, 10, torch.Generator().manual_seed(0))
    x, y = val.sample_batch(4, 9, torch.Generator().manual_seed(0))  # exactly one possible window
    assert x.tolist() == [list(range(9))] * 4 and y.tolist() == [list(range(1, 10))] * 4


@pytest.mark.parametrize("n,batch,block", [(101, 3, 10), (100, 4, 10), (60, 2, 7), (50, 64, 7), (12, 1, 11)])
def test_iter_windows_covers_every_token_once(tmp_path, n, batch, block):
    d = make_dataset(tmp_path / "d", {"train": np.arange(n) + 65000, "val": np.arange(5)}, dtype="uint32")
    data = TokenData(d, "train")
    batches = list(data.iter_windows(batch, block))
    xs = torch.cat([x.reshape(-1) for x, _ in batches])
    ys = torch.cat([y.reshape(-1) for _, y in batches])
    assert ys.tolist() == list(range(65001, 65000 + n))  # every token after the first, exactly once, in order
    assert xs.tolist() == list(range(65000, 65000 + n - 1))
    assert all(x.shape == y.shape and x.shape[0] <= batch and x.shape[1] <= block for x, y in batches)
    assert all(x.shape[1] == block for x, _ in batches[:-1])
    assert next(iter(data.iter_windows(batch, block)))[0].tolist() == batches[0][0].tolist()  # deterministic


def test_token_data_errors(tmp_path):
    with pytest.raises(SokhanError, match="no such data folder"):
        TokenData(tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SokhanError, match="not a prepared dataset"):
        TokenData(tmp_path / "empty", "train")
    d = make_dataset(tmp_path / "d", {"train": np.arange(100), "val": np.arange(10)})
    with pytest.raises(SokhanError, match="no 'test' split"):
        TokenData(d, "test")
    with open(d / "train.bin", "r+b") as f:
        f.truncate(50)
    with pytest.raises(SokhanError, match="prepare the data again"):
        TokenData(d, "train")


def test_two_editions_of_a_ghazal_land_in_the_same_split():
    """hafez and the diacritized fatol-hafez hold the same poems: they must not straddle train/val."""
    normalize = PersianNormalizer()
    plain = {letters_key(normalize(d).split("\n", 1)[0]): split_of(normalize(d), 1337, 0.2)
             for d in iter_documents("hafez")}
    same = 0
    for doc in iter_documents("fatol-hafez"):
        key = letters_key(normalize(doc).split("\n", 1)[0])
        if key in plain:
            assert split_of(normalize(doc), 1337, 0.2) == plain[key]
            same += 1
    assert same >= 480
