"""Parallel data: read_parallel's forms -> clean_pairs -> prepare_parallel -> ParallelData."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from rich.console import Console

from helpers import write
from sokhan.config import NormalizerConfig
from sokhan.data import parallel
from sokhan.data.parallel import (
    FilterCounts,
    ParallelData,
    clean_pairs,
    hold_out,
    prepare_parallel,
    read_parallel,
)
from sokhan.data.sources import CorpusWarning
from sokhan.errors import SokhanError
from sokhan.text.normalize import PersianNormalizer, normalize_source
from sokhan.text.tokenizers import Tokenizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "en-fa"
NORMALIZE = PersianNormalizer(NormalizerConfig())
QUIET = Console(stderr=True, quiet=True)

NOUNS = [("book", "کتاب"), ("house", "خانه"), ("garden", "باغ"), ("flower", "گل"), ("friend", "دوست"),
         ("city", "شهر"), ("road", "راه"), ("sea", "دریا"), ("tree", "درخت"), ("bird", "پرنده")]
VERBS = [("I see the {}", "من {} را می‌بینم"), ("you love the {}", "تو {} را دوست داری"),
         ("we find the {}", "ما {} را پیدا می‌کنیم"), ("they want the {}", "آنها {} را می‌خواهند"),
         ("she draws the {}", "او {} را می‌کشد"), ("he remembers the {}", "او {} را به یاد می‌آورد")]


def corpus() -> list[tuple[str, str]]:
    """60 short English–Persian pairs: every verb with every noun."""
    return [(en.format(n_en) + ".", fa.format(n_fa) + ".") for en, fa in VERBS for n_en, n_fa in NOUNS]


def write_aligned(folder: Path, stem: str, pairs: list[tuple[str, str]]) -> None:
    write(folder / f"{stem}.en", "".join(s + "\n" for s, _ in pairs))
    write(folder / f"{stem}.fa", "".join(t + "\n" for _, t in pairs))


# --------------------------------------------------------------------------- reading

def test_aligned_folder_reads_every_split_and_dev_as_valid(tmp_path):
    pairs = corpus()
    write_aligned(tmp_path / "a", "train", pairs[:40])
    write_aligned(tmp_path / "a", "valid", pairs[40:50])
    write_aligned(tmp_path / "a", "test", pairs[50:])
    splits = read_parallel(str(tmp_path / "a"))
    assert splits == {"train": pairs[:40], "valid": pairs[40:50], "test": pairs[50:]}

    write_aligned(tmp_path / "b", "train", pairs[:40])
    write_aligned(tmp_path / "b", "dev", pairs[40:50])
    assert read_parallel(str(tmp_path / "b")) == {"train": pairs[:40], "valid": pairs[40:50]}
    write_aligned(tmp_path / "b", "valid", pairs[50:])
    with pytest.raises(SokhanError, match=r"both valid\.\* and dev\.\*"):
        read_parallel(str(tmp_path / "b"))

    # The language suffixes are the languages given.
    write(tmp_path / "c" / "train.eng", "hello\n")
    write(tmp_path / "c" / "train.pes", "سلام\n")
    assert read_parallel(str(tmp_path / "c"), source_lang="eng", target_lang="pes") == {"train": [("hello", "سلام")]}
    with pytest.raises(SokhanError, match=r"no train\.en/train\.fa"):
        read_parallel(str(tmp_path / "c"))


def test_misaligned_and_missing_partner_files(tmp_path):
    write(tmp_path / "train.en", "one\ntwo\nthree\n")
    write(tmp_path / "train.fa", "یک\nدو\n")
    with pytest.raises(SokhanError, match=r"train\.en has 3 lines but .*train\.fa has 2: the files must be "
                                          r"line-aligned"):
        read_parallel(str(tmp_path))
    # A last line without its newline is still a line: these two are aligned.
    write(tmp_path / "train.fa", "یک\nدو\nسه")
    assert read_parallel(str(tmp_path))["train"][2] == ("three", "سه")

    write(tmp_path / "test.fa", "یک\n")
    with pytest.raises(SokhanError, match=r"test\.en is missing: test\.fa needs its line-aligned translation"):
        read_parallel(str(tmp_path))


def test_a_file_prefix_reads_its_aligned_pair_of_files_as_train(tmp_path):
    pairs = corpus()[:5]
    write_aligned(tmp_path, "tatoeba_test", pairs)
    assert read_parallel(str(tmp_path / "tatoeba_test")) == {"train": pairs}
    write(tmp_path / "tatoeba_test.en", "one more line\n" + (tmp_path / "tatoeba_test.en").read_text("utf-8"))
    with pytest.raises(SokhanError, match=r"tatoeba_test\.en has 6 lines but .*tatoeba_test\.fa has 5"):
        read_parallel(str(tmp_path / "tatoeba_test"))
    write(tmp_path / "only.en", "hello\n")
    with pytest.raises(SokhanError, match=r"only\.fa is missing: only\.en needs its line-aligned translation"):
        read_parallel(str(tmp_path / "only"))


def test_an_undecodable_line_fails_or_drops_its_pair_from_both_sides(tmp_path):
    write(tmp_path / "train.en", b"one\ntwo\nthree\nfour\n")
    write(tmp_path / "train.fa", "یک\n".encode() + b"bad \xff\n" + "سه\nچهار\n".encode())
    with pytest.raises(SokhanError, match=r"train\.fa:2: not valid UTF-8"):
        read_parallel(str(tmp_path))
    with pytest.warns(CorpusWarning, match=r"train\.fa:2: skipped 1 line"):
        pairs = read_parallel(str(tmp_path), on_decode_error="skip")["train"]
    assert pairs == [("one", "یک"), ("three", "سه"), ("four", "چهار")]  # 'two' went with its partner

    # A skipped last line is still counted: the files stay aligned, not "4 lines but 3".
    write(tmp_path / "train.fa", "یک\nدو\nسه\n".encode() + b"\xff\n")
    with pytest.warns(CorpusWarning):
        assert read_parallel(str(tmp_path), on_decode_error="skip")["train"][-1] == ("three", "سه")
    with pytest.raises(SokhanError, match="on_decode_error"):
        read_parallel(str(tmp_path), on_decode_error="ignore")


def test_tsv_file_and_folder(tmp_path):
    f = write(tmp_path / "pairs.tsv", "hello\tسلام\n\ngood night\tشب بخیر\n")
    assert read_parallel(str(f)) == {"train": [("hello", "سلام"), ("good night", "شب بخیر")]}  # blank line: no pair
    write(tmp_path / "bad.tsv", "hello\tسلام\nno tab here\n")
    with pytest.raises(SokhanError, match=r"bad\.tsv:2: expected 'source<TAB>target', found 0 tabs"):
        read_parallel(str(tmp_path / "bad.tsv"))
    write(tmp_path / "bad.tsv", "a\tb\tc\n")
    with pytest.raises(SokhanError, match=r"bad\.tsv:1: .*found 2 tabs"):
        read_parallel(str(tmp_path / "bad.tsv"))

    write(tmp_path / "d" / "train.tsv", "hello\tسلام\n")
    write(tmp_path / "d" / "dev.tsv", "bye\tخداحافظ\n")
    assert read_parallel(str(tmp_path / "d")) == {"train": [("hello", "سلام")], "valid": [("bye", "خداحافظ")]}
    write(tmp_path / "d" / "train.en", "hello\n")
    with pytest.raises(SokhanError, match=r"both train\.tsv and train\.en/train\.fa"):
        read_parallel(str(tmp_path / "d"))


def test_other_specs_name_the_valid_forms(tmp_path):
    for spec in (str(tmp_path / "nowhere"), str(write(tmp_path / "notes.txt", "hello\n"))):
        with pytest.raises(SokhanError, match=r"valid forms: a folder with line-aligned train\.en/train\.fa"):
            read_parallel(spec)
    with pytest.raises(SokhanError, match="both 'en'"):
        read_parallel(str(tmp_path), target_lang="en")
    with pytest.raises(SokhanError, match="not a code"):
        read_parallel(str(tmp_path), target_lang="../fa")


def test_hf_local_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")

    def translations(rows):
        return datasets.Dataset.from_dict({"translation": [{"en": en, "fa": fa} for en, fa in rows]})

    pairs = corpus()
    dd = datasets.DatasetDict({"train": translations(pairs[:40]), "validation": translations(pairs[40:50]),
                               "test": translations(pairs[50:])})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert read_parallel(f"hf:{tmp_path / 'dict'}") == {"train": pairs[:40], "valid": pairs[40:50],
                                                        "test": pairs[50:]}
    # A split named: it is train (prepare then holds a valid split out of it).
    assert read_parallel(f"hf:{tmp_path / 'dict'}:validation") == {"train": pairs[40:50]}
    with pytest.raises(SokhanError, match="no split 'dev'"):
        read_parallel(f"hf:{tmp_path / 'dict'}:dev")

    translations(pairs[:5]).save_to_disk(str(tmp_path / "plain"))  # one Dataset, no splits: all train
    assert read_parallel(f"hf:{tmp_path / 'plain'}") == {"train": pairs[:5]}

    datasets.DatasetDict({"test": translations(pairs[:5])}).save_to_disk(str(tmp_path / "testonly"))
    with pytest.raises(SokhanError, match=r"has no train split \(splits: test\); name the one to train on"):
        read_parallel(f"hf:{tmp_path / 'testonly'}")

    # An en-de dataset: no row has 'fa'.
    en_de = datasets.Dataset.from_dict({"translation": [{"en": "hello", "de": "hallo"}]})
    en_de.save_to_disk(str(tmp_path / "en-de"))
    with pytest.raises(SokhanError, match=r"row 0: translation has no 'fa' \(keys: de, en\)"):
        read_parallel(f"hf:{tmp_path / 'en-de'}")
    datasets.Dataset.from_dict({"text": ["hello"]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(SokhanError, match=r"row 0: no column 'translation' \(columns: text\)"):
        read_parallel(f"hf:{tmp_path / 'text'}")

    # One row without 'fa' among rows with it: Arrow stores a null, which is an empty side (cleaned away, counted).
    holes = datasets.Dataset.from_dict({"translation": [{"en": "hello", "fa": "سلام"}, {"en": "bye"}]})
    holes.save_to_disk(str(tmp_path / "holes"))
    raw = read_parallel(f"hf:{tmp_path / 'holes'}")["train"]
    assert raw == [("hello", "سلام"), ("bye", "")]
    assert clean_pairs(raw, NORMALIZE)[1].empty == 1


def test_hf_hub_dataset_without_a_split_reads_its_splits(monkeypatch):
    """A hub name (no network here: the two calls to the hub are replaced) maps validation onto valid."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda name: ["train", "validation", "test"])
    rows = {"train": [("hello", "سلام")], "validation": [("bye", "خداحافظ")], "test": [("yes", "بله")]}
    read = []

    def fake_rows(name, split, columns=None):
        read.append((name, split))
        return iter([{"translation": {"en": en, "fa": fa}} for en, fa in rows[split]])

    monkeypatch.setattr(parallel, "iter_hf_rows", fake_rows)
    assert read_parallel("hf:someone/opus-en-fa") == {"train": rows["train"], "valid": rows["validation"],
                                                      "test": rows["test"]}
    read.clear()
    assert read_parallel("hf:someone/opus-en-fa:test") == {"train": rows["test"]}
    assert read == [("someone/opus-en-fa", "test")]


# --------------------------------------------------------------------------- cleaning

def test_clean_pairs_normalizes_filters_and_counts():
    raw = [
        ("  The\tbook\u00a0 is  here. ", "كتاب اينجاست."),  # Arabic kaf and yeh
        ("", "خالی"),
        ("   ", "خالی"),
        ("empty target", " \u200c "),
        ("A long English sentence that has nothing to do with its target at all.", "بله"),
        ("Cafe\u0301 two\u2028lines", "دو\u2028خط"),
        ("ok", "باشه"),
    ]
    kept, counts = clean_pairs(raw, NORMALIZE)
    assert kept == [("The book is here.", "کتاب اینجاست."), ("Café two lines", "دو خط"), ("ok", "باشه")]
    assert counts == FilterCounts(read=7, kept=3, empty=3, ratio=1)
    assert str(counts) == "7 pairs read: 3 kept, 3 with an empty side, 1 with a length ratio above 3"
    assert clean_pairs(raw, NORMALIZE, max_ratio=100)[1].ratio == 0
    with pytest.raises(SokhanError, match="max_ratio must be at least 1"):
        clean_pairs(raw, NORMALIZE, max_ratio=0.5)
    assert normalize_source("\u00a0a \t b\n") == "a b"


def test_hold_out_keeps_a_source_sentences_pairs_together():
    pairs = [(f"s{i % 40}", f"t{i}") for i in range(100)]  # 40 sources, most with 2-3 translations
    train, valid = hold_out(pairs, 10, seed=1)
    assert 8 <= len(valid) <= 10 and len(train) + len(valid) == 100
    assert not {s for s, _ in train} & {s for s, _ in valid}
    assert hold_out(pairs, 10, seed=1) == (train, valid)  # deterministic
    assert hold_out(pairs, 10, seed=2)[1] != valid


# --------------------------------------------------------------------------- prepare + ParallelData

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A folder with train and test only (valid is held out), prepared with BPE 320; the cleaned train pairs."""
    root = tmp_path_factory.mktemp("parallel")
    pairs = corpus()
    noisy = pairs[:54] + [("   ", "خالی"), ("A very long sentence that a three-word target cannot translate.", "یک")]
    write_aligned(root / "raw", "train", [(s, t.replace("ی", "ي")) for s, t in noisy])
    write_aligned(root / "raw", "test", pairs[54:])
    out = prepare_parallel(str(root / "raw"), root / "out", NORMALIZE, vocab_size=320, valid_size=5, console=QUIET)
    return out, clean_pairs(noisy, NORMALIZE)[0]


def test_prepare_round_trip(prepared):
    out, cleaned = prepared
    data = ParallelData(out)
    assert data.splits() == ["train", "valid", "test"]
    tok = Tokenizer.load(data.tokenizer_path)
    assert tok.vocab_size == data.meta["vocab_size"] <= 320
    for split in data.splits():
        sources, targets = data.pairs(split)
        texts = data.texts(split)
        assert all(a.dtype == np.int64 for a in sources + targets)
        assert [tok.decode(ids) for ids in sources] == texts[0]
        assert [tok.decode(ids) for ids in targets] == texts[1]
    train, valid = data.texts("train"), data.texts("valid")
    # Train and the held-out valid are the cleaned pairs, in order, with the Persian normalized (ي -> ی).
    assert sorted([*zip(*train), *zip(*valid)]) == sorted(cleaned)
    assert [p for p in cleaned if p in set(zip(*train))] == list(zip(*train))  # the order is kept
    assert not any("ي" in t for t in train[1])
    assert len(valid[0]) == 5 and not set(train[0]) & set(valid[0])
    assert data.texts("test") == tuple(map(list, zip(*corpus()[54:])))


def test_prepare_meta_counts(prepared):
    out, cleaned = prepared
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    data = ParallelData(out)
    assert meta["kind"] == "parallel" and meta["source_lang"] == "en" and meta["target_lang"] == "fa"
    train = meta["splits"]["train"]
    assert train["filtered"] == {"read": 56, "kept": 54, "empty": 1, "ratio": 1}
    assert train["pairs"] + meta["splits"]["valid"]["pairs"] == train["filtered"]["kept"] == len(cleaned)
    assert meta["splits"]["valid"]["held_out_from"] == "train"
    for split, info in meta["splits"].items():
        sources, targets = data.pairs(split)
        assert info["pairs"] == len(sources) == len(targets)
        assert info["source_tokens"] == sum(map(len, sources)) and info["target_tokens"] == sum(map(len, targets))
    assert not list(out.glob(".prepare-parallel-*"))  # the temporary folder is gone


def test_prepared_files_are_checked(prepared, tmp_path):
    out, _ = prepared
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    tensors = safetensors.numpy.load_file(str(copy / "train.safetensors"))
    vocab = ParallelData(copy).meta["vocab_size"]
    tensors["target_ids"][3] = vocab
    safetensors.numpy.save_file(tensors, str(copy / "train.safetensors"))
    with pytest.raises(SokhanError, match=rf"train\.safetensors: target_ids holds token id {vocab}, outside"):
        ParallelData(copy).pairs("train")
    tensors["target_ids"][3] = 0
    tensors["source_offsets"][2] = tensors["source_offsets"][1] - 1
    safetensors.numpy.save_file(tensors, str(copy / "train.safetensors"))
    with pytest.raises(SokhanError, match="source_offsets do not run from 0"):
        ParallelData(copy).pairs("train")
    (copy / "valid.safetensors").write_bytes(b"garbage")
    with pytest.raises(SokhanError, match=r"valid\.safetensors: not a readable safetensors file"):
        ParallelData(copy).pairs("valid")
    with pytest.raises(SokhanError, match="no 'dev' split"):
        ParallelData(copy).pairs("dev")

    (copy / "meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SokhanError, match=r"meta\.json: not valid JSON"):
        ParallelData(copy)
    (copy / "meta.json").write_text(json.dumps({"format": 1, "dtype": "uint16", "splits": {}}), encoding="utf-8")
    with pytest.raises(SokhanError, match="not 'parallel'"):
        ParallelData(copy)
    (copy / "meta.json").unlink()
    with pytest.raises(SokhanError, match="run `sokhan translate-train` to prepare it"):
        ParallelData(copy)


def test_prepare_refuses_what_it_cannot_do(tmp_path):
    pairs = corpus()
    write_aligned(tmp_path / "raw", "train", pairs)
    with pytest.raises(SokhanError, match="is the data folder itself"):
        prepare_parallel(str(tmp_path / "raw"), tmp_path / "raw", NORMALIZE, vocab_size=300, console=QUIET)
    assert (tmp_path / "raw" / "train.en").read_text(encoding="utf-8").splitlines() == [s for s, _ in pairs]
    write_aligned(tmp_path / "tiny", "train", pairs[:9])  # 10 % of 9 pairs is no pair
    with pytest.raises(SokhanError, match="cannot hold out a valid split"):
        prepare_parallel(str(tmp_path / "tiny"), tmp_path / "out", NORMALIZE, vocab_size=300, console=QUIET)
    assert not (tmp_path / "out").exists()
    write_aligned(tmp_path / "empty", "train", [("hello", " ")])
    with pytest.raises(SokhanError, match="train: no pair is left after cleaning"):
        prepare_parallel(str(tmp_path / "empty"), tmp_path / "out", NORMALIZE, vocab_size=300, console=QUIET)


def test_added_training_pairs_join_train_repeated_and_never_from_valid_or_test(tmp_path):
    """--add-train: a prefix and a TSV join train `add_repeat` times; a pair whose source valid or test holds is
    left out (counted), a folder gives only its train split, and the tokenizer learns each added pair once."""
    pairs = corpus()
    write_aligned(tmp_path / "main", "train", pairs[:40])
    write_aligned(tmp_path / "main", "valid", pairs[40:45])
    write_aligned(tmp_path / "main", "test", pairs[45:50])
    extra = [("The sea is blue.", "دریا آبی است."), ("Birds sing.", "پرنده‌ها آواز می‌خوانند."), pairs[46]]
    write_aligned(tmp_path, "general", extra)
    tsv = write(tmp_path / "more.tsv", "Good morning.\tصبح بخیر.\n")
    write_aligned(tmp_path / "other", "train", [("The road is long.", "راه دراز است.")])
    write_aligned(tmp_path / "other", "test", [("Never train on me.", "هرگز.")])
    out = prepare_parallel(str(tmp_path / "main"), tmp_path / "out", NORMALIZE, vocab_size=300, console=QUIET,
                           add_train=[str(tmp_path / "general"), str(tsv), str(tmp_path / "other")], add_repeat=3)
    data = ParallelData(out)
    sources, targets = data.texts("train")
    added = list(extra[:2]) + [("Good morning.", "صبح بخیر."), ("The road is long.", "راه دراز است.")]
    expected = clean_pairs(pairs[:40] + added * 3, NORMALIZE)[0]
    assert list(zip(sources, targets)) == expected
    assert "Never train on me." not in sources and pairs[46][0] not in sources
    info = data.meta["splits"]["train"]
    assert info["pairs"] == 40 + 4 * 3
    assert info["added"] == [
        {"source": str(tmp_path / "general"), "pairs": 2, "overlap_left_out": 1, "repeat": 3},
        {"source": str(tsv), "pairs": 1, "overlap_left_out": 0, "repeat": 3},
        {"source": str(tmp_path / "other"), "pairs": 1, "overlap_left_out": 0, "repeat": 3}]
    assert data.texts("test") == tuple(map(list, zip(*pairs[45:50])))
    with pytest.raises(SokhanError, match=r"no such file, folder or file prefix"):
        prepare_parallel(str(tmp_path / "main"), tmp_path / "out2", NORMALIZE, vocab_size=300, console=QUIET,
                         add_train=[str(tmp_path / "nowhere")])
    write_aligned(tmp_path, "leaky", [pairs[41]])
    with pytest.raises(SokhanError, match=r"leaky: no pair is left to add to train .*1 left out: their source is "
                                          r"in valid or test"):
        prepare_parallel(str(tmp_path / "main"), tmp_path / "out3", NORMALIZE, vocab_size=300, console=QUIET,
                         add_train=[str(tmp_path / "leaky")])
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared en-fa data is not at {SHARED}")
def test_shared_en_fa_data_reads_whole():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every line decodes
        splits = read_parallel(str(SHARED))
    assert {split: len(pairs) for split, pairs in splits.items()} == {"train": 56_940, "valid": 221, "test": 321}
