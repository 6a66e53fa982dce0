"""Training under torchrun on the CPU (gloo, 2 processes): DDP and FSDP2 follow one process with the whole batch,
checkpoints move between 1 and 2 processes, and a rank that dies or hangs ends the job instead of stalling it;
`translate-train` and `finetune` (full and LoRA) follow one process too, rank 0 alone preparing and scoring."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from rich.console import Console
from safetensors.torch import load_file

import sokhan
from sokhan.config import FINETUNE_DEFAULTS, FinetuneConfig, PrepareConfig, TrainConfig, TranslateTrainConfig
from sokhan.data.parallel import ParallelData
from sokhan.data.prepare import prepare
from sokhan.recipes.finetune import finetune
from sokhan.recipes.pretrain import pretrain
from sokhan.recipes.translate import translate_train
from sokhan.train.translation import TranslationTask

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()) or sys.platform != "linux",
                                reason="needs torch.distributed with gloo on Linux")

TINY = dict(preset="tiny", n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0)
B = 2  # rows per process; one process gets 2B
STEPS, FIRST = 6, 4  # the whole run; where the first part stops (and saves) in the resume tests
TOL = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="bpe", vocab_size=300), progress=False)


def settings(data: Path, steps: int) -> dict:
    # lr_decay_steps fixed: a run cut at FIRST steps has the whole run's schedule, so a resume continues it
    return dict(data=str(data), max_steps=steps, lr_decay_steps=STEPS, eval_interval=2, eval_iters=3, warmup_steps=2,
                log_interval=1, grad_accum=2, device="cpu", progress=False, seed=7)


def one_process(data: Path, out: Path, family: str, steps: int = STEPS, resume: bool = False) -> None:
    cfg = TrainConfig(out_dir=str(out), batch_size=2 * B, resume=resume, **settings(data, steps))
    pretrain(cfg, dict(TINY, family=family), Console(stderr=True, quiet=True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flags(values: dict[str, object]) -> list[str]:
    """Config values as the command line's flags (`--no-x` for a False flag)."""
    args = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


def torchrun(*args: str) -> list[str]:
    """`torchrun --nproc_per_node 2 -m sokhan ARGS…` on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "sokhan", *args]


def torchrun_command(data: Path, out: Path, family: str, steps: int, *extra: str, **train: object) -> list[str]:
    args = flags({**settings(data, steps), "batch_size": B, "out_dir": str(out), **train})
    for name, value in dict(TINY, family=family).items():
        args += ["--model" if name == "family" else "--" + name.replace("_", "-"), str(value)]
    return torchrun("train", *args, *extra)


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_job(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)


def two_processes(data: Path, out: Path, family: str, steps: int = STEPS, *extra: str) -> None:
    done = run_job(torchrun_command(data, out, family, steps, *extra))
    assert done.returncode == 0, done.stderr[-3000:]


def losses(run: Path) -> dict[tuple[int, str], float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(r["step"], r["split"]): r["loss"] for r in rows}


def assert_same_losses(run: Path, reference: Path) -> None:
    got, want = losses(run), losses(reference)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=TOL), key


def assert_same_weights(run: Path, reference: Path, view: Callable[[dict], dict] = dict) -> None:
    got, want = (view(load_file(r / "checkpoints" / (r / "checkpoints" / "latest").read_text().strip() /
                                "model.safetensors")) for r in (run, reference))
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=TOL, rtol=0, msg=name)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """One process, batch 2B, the whole run: the reference, per family."""
    runs = {}

    def run(family: str) -> Path:
        if family not in runs:
            runs[family] = tmp_path_factory.mktemp(f"straight-{family}")
            one_process(data, runs[family], family)
        return runs[family]
    return run


@pytest.mark.parametrize("family,sharding", [("gpt", "ddp"), ("gpt", "fsdp"), ("lstm", "ddp"), ("bert", "fsdp")])
def test_two_processes_follow_one_with_the_whole_batch_and_hand_over_to_one(data, tmp_path, straight, family,
                                                                           sharding):
    """2 × batch B = 1 × batch 2B, loss for loss (training and evaluation, two micro-batches a step); its
    checkpoint (FSDP's shards gathered, an LSTM's carried rows gathered) then resumes in one process."""
    reference = straight(family)
    run = tmp_path / "run"
    two_processes(data, run, family, FIRST, *(["--fsdp"] if sharding == "fsdp" else []))
    first = {key: value for key, value in losses(reference).items() if key[0] <= FIRST}
    assert losses(run).keys() == first.keys()
    for key, value in first.items():
        assert losses(run)[key] == pytest.approx(value, abs=TOL), key
    one_process(data, run, family, resume=True)
    assert_same_losses(run, reference)
    assert_same_weights(run, reference)


def test_a_one_process_checkpoint_resumes_in_two_processes(data, tmp_path, straight):
    """The other way round, with FSDP (the optimizer state sharded on load) and a recurrent model (its carried
    hidden state cut into each rank's rows)."""
    reference = straight("lstm")
    run = tmp_path / "run"
    one_process(data, run, "lstm", steps=FIRST)
    two_processes(data, run, "lstm", STEPS, "--resume", "--fsdp")
    assert_same_losses(run, reference)
    assert_same_weights(run, reference)


def workers(launcher: subprocess.Popen) -> dict[int, int]:
    """RANK → pid of the processes torchrun started."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == launcher.pid:
                env = dict(line.split("=", 1) for line in (entry / "environ").read_bytes().decode().split("\0")
                           if "=" in line)
                found[int(env["RANK"])] = int(entry.name)
        except (OSError, ValueError, KeyError):
            continue
    return found


def start_long_run(data: Path, out: Path, log: Path, timeout: float) -> subprocess.Popen:
    command = torchrun_command(data, out, "gpt", 100_000, eval_interval=100_000, dist_timeout=timeout)
    launcher = subprocess.Popen(command, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # training has begun on both ranks
        metrics = out / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3 and len(workers(launcher)) == 2:
            return launcher
        assert launcher.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    launcher.kill()
    raise AssertionError("training did not start: " + log.read_text()[-3000:])


def test_a_rank_that_dies_ends_the_job(data, tmp_path):
    """SIGKILL one rank mid-training: torchrun ends the other and fails, naming the rank that died."""
    log = tmp_path / "log"
    launcher = start_long_run(data, tmp_path / "run", log, timeout=600)  # the timeout is not what saves it
    os.kill(workers(launcher)[1], signal.SIGKILL)
    try:
        code = launcher.wait(timeout=60)
    finally:
        launcher.kill()
    text = log.read_text()
    assert code != 0
    assert "Root Cause" in text and "rank      : 1" in text and "SIGKILL" in text, text[-3000:]


def test_a_rank_that_hangs_is_given_up_after_the_timeout(data, tmp_path):
    """SIGSTOP one rank: the other gives up after --dist-timeout with one clear line and a non-zero exit."""
    log = tmp_path / "log"
    launcher = start_long_run(data, tmp_path / "run", log, timeout=3)
    hung = workers(launcher)[1]
    os.kill(hung, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 40
        while "lost the other processes" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(hung, signal.SIGCONT)  # torchrun's SIGTERM can reach it now (else it waits 30 s to SIGKILL it)
        code = launcher.wait(timeout=60)
    finally:
        launcher.kill()
    text = log.read_text()
    assert code != 0
    assert "error: rank 0: lost the other processes of this torchrun job" in text, text[-3000:]
    assert "--dist-timeout" in text


# -- translate-train and finetune under torchrun ------------------------------------------------------------------

EN_WORDS = ("book", "house", "garden", "flower", "friend", "river", "city", "road", "tree", "window")
FA_WORDS = ("کتاب", "خانه", "باغ", "گل", "دوست", "رود", "شهر", "راه", "درخت", "پنجره")
CLAUSES = (1, 1, 1, 2, 2, 3, 5, 9)  # mostly short pairs, a few long enough to fill a batch alone


def sentence_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """`n` English/Persian pairs of 1 to 9 clauses ("I see the book and I see the tree." …)."""
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(n):
        words = [rng.randrange(len(EN_WORDS)) for _ in range(rng.choice(CLAUSES))]
        sources.append(" and ".join(f"I see the {EN_WORDS[w]}" for w in words) + ".")
        targets.append(" و ".join(f"من {FA_WORDS[w]} را می‌بینم" for w in words) + ".")
    return sources, targets


def write_parallel(folder: Path, sizes: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (split, n) in enumerate(sizes.items()):
        for lang, lines in zip(("en", "fa"), sentence_pairs(n, seed)):
            (folder / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> Path:
    return write_parallel(tmp_path_factory.mktemp("parallel"), {"train": 80, "valid": 24, "test": 6})


SEQ2SEQ = dict(preset="seq2seq-tiny", n_embd=32, ffn_hidden=64, dropout=0.0)
# max_time 0: the schedule and the curriculum follow the step, not each run's clock. 300 tokens: a batch of up to 15
# short pairs (an odd number: the ranks' shares differ), or one long pair alone (one rank trains on no row).
TRANSLATE = dict(vocab_size=300, max_steps=STEPS, max_time=0, warmup_steps=2, eval_interval=2, batch_tokens=300,
                 beam=2, device="cpu", progress=False, seed=7)


def without_key_biases(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights but the attention keys' biases (qkv's middle third, cross-attention kv's first half). A key bias adds
    q·b to every score of a query alike, which the softmax ignores: its true gradient is 0, and Adam turns the float
    noise in it into small updates that differ between any two runs (~1e-4 here) while no output changes."""
    out = {}
    for name, t in weights.items():
        if name.endswith(".qkv.bias"):
            t = torch.cat([t[: len(t) // 3], t[2 * len(t) // 3:]])
        elif name.endswith(".kv.bias"):
            t = t[len(t) // 2:]
        out[name] = t
    return out


def test_translate_train_in_two_processes_follows_one_and_scores_once(parallel, tmp_path):
    """A `--batch-tokens` batch is the whole job's, shared out by rows: 2 processes at T tokens train as 1 at T (not
    2T), loss for loss (training and validation, curriculum on) and weight for weight; rank 0 alone prepares the
    data, speaks and translates the test split."""
    reference, run = tmp_path / "one", tmp_path / "two"
    cfg = TranslateTrainConfig(data=str(parallel), out_dir=str(reference), **TRANSLATE)
    translate_train(cfg, SEQ2SEQ, Console(stderr=True, quiet=True))
    model_flags = [arg for name, value in SEQ2SEQ.items() for arg in ("--" + name.replace("_", "-"), str(value))]
    done = run_job(torchrun("translate-train", *flags({**TRANSLATE, "data": str(parallel), "out_dir": str(run)}),
                            *model_flags))
    assert done.returncode == 0, done.stderr[-3000:]
    task = TranslationTask(ParallelData(run / "data"), TRANSLATE["batch_tokens"], 128, 0.1, torch.device("cpu"), 7,
                           0, 1, 2)
    rows = {len(batch) for split in ("train", "valid") for batch in task.batches[split]}
    assert 1 in rows and any(n % 2 for n in rows if n > 1)  # the premise: empty and unequal shares
    vals = [loss for (_, split), loss in losses(reference).items() if split == "val"]
    assert len(vals) == STEPS // 2 and len(set(vals)) == len(vals)  # the losses move: equal ones are no accident
    assert_same_losses(run, reference)
    assert_same_weights(run, reference, without_key_biases)
    scores = json.loads((run / "scores.json").read_text(encoding="utf-8"))
    assert scores["split"] == "test" and scores["sentences"] == 6 and scores["step"] == STEPS
    assert len((run / "test.hyp.fa").read_text(encoding="utf-8").splitlines()) == 6
    text = done.stderr + done.stdout
    for line in ("model: seq2seq", "translating the test split", "test: BLEU", "done: "):
        assert text.count(line) == 1, (line, text[-3000:])  # rank 1 says nothing


def test_translate_train_ends_every_rank_when_rank_0_cannot_prepare_the_data(tmp_path):
    """Rank 0 alone prepares the data; when it fails, the rank waiting for it stops at once with one line naming rank
    0 (not after --dist-timeout's 600 s, nor with a traceback from a half-written folder)."""
    data = write_parallel(tmp_path / "data", {"train": 8})
    lines = (data / "train.fa").read_text(encoding="utf-8").splitlines()
    (data / "train.fa").write_text("".join(line + "\n" for line in lines[:5]), encoding="utf-8")
    started = time.monotonic()
    done = run_job(torchrun("translate-train", "--data", str(data), "--out-dir", str(tmp_path / "run"),
                            "--vocab-size", "300", "--device", "cpu"))
    assert done.returncode != 0 and time.monotonic() - started < 60
    text = done.stderr + done.stdout
    reason = f"{data / 'train.en'} has 8 lines but {data / 'train.fa'} has 5"
    errors = {line for line in text.splitlines() if line.startswith("error:")}
    # Rank 1's line carries rank 0's reason: torchrun may stop rank 0 (SIGTERM) before it has printed its own.
    assert f"error: rank 1: rank 0 stopped while preparing the data ({reason}" in "\n".join(errors), text[-3000:]
    assert all(line.startswith(("error: rank 1: ", f"error: {reason}")) for line in errors), errors
    assert str(Path(sokhan.__file__).parent) not in text, text[-3000:]  # no traceback from a worker
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def chat_base(data, tmp_path_factory) -> Path:
    """A tiny GPT without dropout, 2 steps into pretraining: the model the fine-tunes start from."""
    out = tmp_path_factory.mktemp("chat-base")
    cfg = TrainConfig(out_dir=str(out), batch_size=4, **{**settings(data, 2), "eval_interval": 100})
    return Path(pretrain(cfg, dict(TINY, family="gpt"), Console(stderr=True, quiet=True)).run_dir)


@pytest.fixture(scope="module")
def conversations(tmp_path_factory) -> Path:
    """Replies of 1 to 12 words, so rows (and each rank's share of a batch) hold unequal numbers of targets."""
    rng = random.Random(3)
    rows = [{"prompt": f"سلام {i}", "response": " ".join(rng.choice(FA_WORDS) for _ in range(rng.randint(1, 12)))}
            for i in range(80)]
    path = tmp_path_factory.mktemp("sft") / "sft.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


FINETUNE = dict(max_steps=STEPS, eval_interval=2, eval_iters=3, warmup_steps=2, log_interval=1, grad_accum=2,
                lr=3e-3, device="cpu", progress=False, seed=7)


@pytest.mark.parametrize("lora,sharding", [(False, "ddp"), (True, "ddp"), (False, "fsdp"), (True, "fsdp")])
def test_finetune_in_two_processes_follows_one_with_the_whole_batch(chat_base, conversations, tmp_path, lora,
                                                                   sharding):
    """Chat SFT, full and LoRA, DDP and FSDP: 2 × batch B = 1 × batch 2B, loss for loss and weight for weight; rank 0
    writes the adapters and the merged model once, from the whole (FSDP: gathered) weights."""
    ft = dict(base=str(chat_base), data=str(conversations), val_fraction=0.2, lora=lora, merge=lora, lora_rank=4)
    reference, run = tmp_path / "one", tmp_path / "two"
    cfg = TrainConfig(**{**FINETUNE_DEFAULTS.__dict__, **FINETUNE, "out_dir": str(reference), "batch_size": 2 * B})
    finetune(FinetuneConfig(**ft), cfg, Console(stderr=True, quiet=True))
    args = flags({**ft, **FINETUNE, "out_dir": str(run), "batch_size": B, "fsdp": sharding == "fsdp"})
    done = run_job(torchrun("finetune", *args))
    assert done.returncode == 0, done.stderr[-3000:]
    trains = [loss for (_, split), loss in losses(reference).items() if split == "train"]
    assert len(trains) == STEPS and len(set(trains)) == STEPS  # the losses move: equal ones are no accident
    assert_same_losses(run, reference)
    assert_same_weights(run, reference)
    if lora:
        for folder, name in (("adapter", "adapter.safetensors"), ("merged", "model.safetensors")):
            got, want = load_file(run / folder / name), load_file(reference / folder / name)
            assert got.keys() == want.keys()
            for key, tensor in want.items():
                torch.testing.assert_close(got[key], tensor, atol=TOL, rtol=0, msg=key)
    assert (done.stderr + done.stdout).count("done: ") == 1  # rank 1 says nothing
