"""Data at scale, on a corpus generated here (no network): folders of text, JSONL and parquet, and a folder of data
files streamed by Hugging Face `datasets`, prepared by worker processes into fixed-size shards; the shards read as
one memory-mapped array, by one process or by the ranks of a torchrun job, and prepare's memory does not grow with
the corpus."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from rich.console import Console

from sokhan.config import PrepareConfig, TrainConfig
from sokhan.data.prepare import DocsPerSecond, prepare
from sokhan.data.shards import TokenData, load_meta
from sokhan.data.sources import iter_documents
from sokhan.errors import SokhanError
from sokhan.recipes.pretrain import pretrain

# A closed vocabulary: the tokenizer trainer's word counts stay the same size however long the corpus grows, so
# prepare's memory is a measure of the pipeline, not of the language.
WORDS = ["دانش", "کتاب", "دریا", "باران", "خورشید", "شب", "روز", "دل", "جان", "سخن", "شعر", "حافظ", "رود", "کوه",
         "باغ", "گل", "بلبل", "ماه", "ستاره", "راه", "خانه", "شهر", "مردم", "زمان", "آب", "آتش", "خاک", "باد", "نور",
         "سایه", "عشق", "یار", "می\u200cرود", "می\u200cآید", "گفت", "دید", "است", "بود", "شد", "را", "و", "از", "به",
         "در", "با", "که", "این", "آن"]
SMALL_SHARD = 1024


def sentences(rng: random.Random, n: int) -> str:
    return "\n".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) + "." for _ in range(n))


def documents(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [sentences(rng, rng.randint(1, 6)) for _ in range(n)]


def write_parquet(path: Path, texts: list[str], row_group_size: int = 50) -> None:
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, row_group_size=row_group_size)


def mixed_folder(folder: Path, n: int = 120) -> list[str]:
    """A .txt (blank-line documents), a .jsonl and a .parquet file, under a subfolder; their documents in the order
    a folder is read (sorted by path)."""
    (folder / "more").mkdir(parents=True)
    txt, jsonl, parquet = documents(1, n), documents(2, n), documents(3, n)
    (folder / "a.txt").write_text("\n\n".join(txt) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in jsonl),
                                    encoding="utf-8")
    write_parquet(folder / "more" / "c.parquet", parquet)
    return txt + jsonl + parquet


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "mixed"
    mixed_folder(folder, n=400)
    return folder


def prepared(corpus: Path, out: Path, **options: object) -> Path:
    return prepare(PrepareConfig(source=str(corpus), out_dir=str(out), vocab_size=300, val_fraction=0.1, **options),
                   progress=False)


@pytest.fixture(scope="module")
def whole(corpus, tmp_path_factory) -> Path:
    """The corpus in one shard per split, by one process."""
    return prepared(corpus, tmp_path_factory.mktemp("whole") / "data", workers=1)


@pytest.fixture(scope="module")
def sharded(corpus, tmp_path_factory) -> Path:
    """The same corpus in shards of 1024 tokens, by two worker processes."""
    return prepared(corpus, tmp_path_factory.mktemp("sharded") / "data", workers=2, shard_tokens=SMALL_SHARD)


# -- reading ------------------------------------------------------------------------------------------------------

def test_a_folder_of_text_jsonl_and_parquet_reads_every_document_in_order(tmp_path):
    expected = mixed_folder(tmp_path / "mixed")
    assert list(iter_documents(str(tmp_path / "mixed"))) == expected


def test_a_folder_of_data_files_is_streamed_by_datasets(tmp_path, monkeypatch):
    import datasets

    texts = documents(4, 60)
    (tmp_path / "raw").mkdir()
    write_parquet(tmp_path / "raw" / "part-0.parquet", texts[:30])
    write_parquet(tmp_path / "raw" / "part-1.parquet", texts[30:])
    calls = []
    load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(k) or load(*a, **k))
    assert list(iter_documents(f"hf:{tmp_path / 'raw'}")) == texts
    assert calls == [{"split": "train", "streaming": True}]


def test_parquet_problems_are_one_line(tmp_path):
    write_parquet(tmp_path / "ok.parquet", ["یک"])
    with pytest.raises(SokhanError, match=r"ok.parquet: no column 'body' \(columns: id, text\); choose one"):
        list(iter_documents(str(tmp_path / "ok.parquet"), text_field="body"))
    with pytest.raises(SokhanError, match=r"ok.parquet: column 'id' holds int64, not text"):
        list(iter_documents(str(tmp_path / "ok.parquet"), text_field="id"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SokhanError, match=r"bad.parquet: not a readable parquet file"):
        list(iter_documents(str(tmp_path / "bad.parquet")))


# -- writing ------------------------------------------------------------------------------------------------------

def test_the_number_of_workers_does_not_change_the_dataset(corpus, whole, tmp_path):
    two = prepared(corpus, tmp_path / "two", workers=2)
    names = sorted(p.name for p in whole.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) == ["meta.json", "tokenizer.json", "train-00000.bin",
                                                               "val-00000.bin"]
    for name in names:
        assert (two / name).read_bytes() == (whole / name).read_bytes(), name


def test_shards_hold_a_fixed_number_of_tokens_and_read_as_the_whole(whole, sharded):
    assert (sharded / "tokenizer.json").read_bytes() == (whole / "tokenizer.json").read_bytes()
    one, many = load_meta(whole), load_meta(sharded)
    for split in ("train", "val"):
        shards = many["splits"][split]["shards"]
        assert [s["file"] for s in shards] == [f"{split}-{k:05d}.bin" for k in range(len(shards))]
        assert all(s["tokens"] == SMALL_SHARD for s in shards[:-1]) and 0 < shards[-1]["tokens"] <= SMALL_SHARD
        for key in ("documents", "tokens", "chars", "fingerprint"):
            assert many["splits"][split][key] == one["splits"][split][key], (split, key)
        a, b = TokenData(whole, split), TokenData(sharded, split)
        assert np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
        # a run crossing shard boundaries, and the windows of a batch
        assert np.array_equal(a.tokens[1000:3100], b.tokens[1000:3100])
    assert len(many["splits"]["train"]["shards"]) > 3


def test_batches_and_windows_are_the_same_from_shards(whole, sharded):
    a, b = TokenData(whole, "train"), TokenData(sharded, "train")
    for seed in range(3):
        x1, y1 = a.sample_batch(16, 64, torch.Generator().manual_seed(seed))
        x2, y2 = b.sample_batch(16, 64, torch.Generator().manual_seed(seed))
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        # a rank's rows: the same windows, the others unread
        x3, _ = b.sample_batch(16, 64, torch.Generator().manual_seed(seed), rows=slice(8, 16))
        assert torch.equal(x3, x1[8:])
    for (x1, y1), (x2, y2) in zip(a.iter_windows(8, 64), b.iter_windows(8, 64), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_the_tokenizer_can_learn_from_the_first_characters_only(corpus, whole, tmp_path):
    """--tokenizer-max-chars bounds what the BPE trainer reads, not what is prepared: every document is still in the
    shards, encoded with a tokenizer learned from the first ones."""
    first = prepared(corpus, tmp_path / "first", workers=1, tokenizer_max_chars=2000)
    every = prepared(corpus, tmp_path / "every", workers=1, tokenizer_max_chars=10**9)
    assert (every / "tokenizer.json").read_bytes() == (whole / "tokenizer.json").read_bytes()
    assert (first / "tokenizer.json").read_bytes() != (whole / "tokenizer.json").read_bytes()
    for split in ("train", "val"):
        for key in ("documents", "chars", "fingerprint"):
            assert load_meta(first)["splits"][split][key] == load_meta(whole)["splits"][split][key]


def test_the_progress_bar_counts_documents_per_second():
    rate = DocsPerSecond()
    assert rate.render(SimpleNamespace(speed=1234.6)).plain == "1,235 docs/s"
    assert rate.render(SimpleNamespace(speed=None)).plain == ""


def test_preparing_again_removes_the_old_shards_and_keeps_other_files(corpus, tmp_path):
    out = prepared(corpus, tmp_path / "data", shard_tokens=SMALL_SHARD, workers=1)
    (out / "notes.txt").write_text("mine")
    assert len(list(out.glob("train-*.bin"))) > 3
    prepared(corpus, out, workers=1)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "notes.txt", "tokenizer.json", "train-00000.bin",
                                                     "val-00000.bin"]
    assert TokenData(out, "train").num_tokens == load_meta(out)["splits"]["train"]["tokens"]


def test_a_shard_list_that_does_not_add_up_is_refused(whole, tmp_path):
    meta = load_meta(whole)
    meta["splits"]["train"]["shards"][0]["tokens"] += 1
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in whole.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SokhanError, match=r"the shards of train hold \d+ tokens but splits\.train\.tokens says"):
        load_meta(broken)
    meta["splits"]["train"]["shards"] = [{"file": "../elsewhere.bin", "tokens": meta["splits"]["train"]["tokens"]}]
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SokhanError, match=r"splits.train.shards must be a list of \{file: 'train-00000.bin'"):
        load_meta(broken)


# -- training -----------------------------------------------------------------------------------------------------

TINY = dict(preset="tiny", n_layer=1, n_head=2, n_embd=32, block_size=32, dropout=0.0)


def train(data: Path, out: Path, family: str) -> list[tuple[int, str, float]]:
    cfg = TrainConfig(data=str(data), out_dir=str(out), batch_size=4, max_steps=6, eval_interval=3, eval_iters=2,
                      log_interval=1, device="cpu", progress=False, seed=5)
    pretrain(cfg, dict(TINY, family=family), Console(stderr=True, quiet=True))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["split"], r["loss"]) for r in rows]


@pytest.mark.parametrize("family", ["gpt", "gru"])
def test_training_reads_shards_as_it_reads_one_file(whole, sharded, tmp_path, family):
    """The same seed gives the same batches, so the same losses, to the last bit: random windows for the GPT,
    the recurrent network's streams (which run through every shard in order)."""
    assert train(sharded, tmp_path / "sharded", family) == train(whole, tmp_path / "whole", family)


def test_two_ranks_read_their_rows_of_the_shards_and_hand_over_to_one(whole, sharded, tmp_path):
    """torchrun, 2 processes of batch B on the shards == 1 process of batch 2B on one file; its checkpoint then
    resumes in one process, as an uninterrupted run continues."""
    if sys.platform != "linux" or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo on Linux")
    from test_distributed import STEPS, assert_same_losses, assert_same_weights, one_process, two_processes

    reference = tmp_path / "reference"
    one_process(whole, reference, "gpt")
    handed = tmp_path / "handed"
    two_processes(sharded, handed, "gpt", STEPS - 2)
    one_process(sharded, handed, "gpt", resume=True)
    assert_same_losses(handed, reference)
    assert_same_weights(handed, reference)


# -- memory -------------------------------------------------------------------------------------------------------

# VmHWM: this process's peak resident memory in KiB. (Not ru_maxrss, which a child started by a large parent may
# inherit at exec.)
PEAK = """
import re, sys
from sokhan.config import PrepareConfig
from sokhan.data.prepare import prepare
prepare(PrepareConfig(source=sys.argv[1], out_dir=sys.argv[2], vocab_size=300, workers=2), progress=False)
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


DOCS_PER_FILE = 20_000  # about 4 MB of text


def peak_kib(corpus: Path, out: Path) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(corpus), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads its peak memory from /proc (Linux)")
def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path):
    """Eight times the text (4 → 32 MB) costs prepare's main process less than a quarter of the growth in memory
    (0.5–3.4 MB in runs here; holding the documents in a list costs 68 MB): documents stream through, the ids go to
    disk shard by shard, nothing holds the corpus."""
    text = {}
    for name, files in (("small", 1), ("large", 8)):
        folder = tmp_path / name
        folder.mkdir()
        text[name] = 0
        for k in range(files):
            docs = documents(k, DOCS_PER_FILE)
            write_parquet(folder / f"part-{k:02d}.parquet", docs, row_group_size=1000)
            text[name] += sum(len(d.encode()) for d in docs)
    assert text["large"] > 7 * text["small"] > 20 * 2**20
    small, large = peak_kib(tmp_path / "small", tmp_path / "o1"), peak_kib(tmp_path / "large", tmp_path / "o2")
    growth_kib = (text["large"] - text["small"]) / 1024
    assert large - small < growth_kib / 4, (small, large, growth_kib)
