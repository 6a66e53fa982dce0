"""Training under torchrun on the CPU (gloo, 2 processes): DDP and FSDP2 follow one process with the whole batch,
checkpoints move between 1 and 2 processes, and a rank that dies or hangs ends the job instead of stalling it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from rich.console import Console
from safetensors.torch import load_file

from sokhan.config import PrepareConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.recipes.pretrain import pretrain

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


def torchrun_command(data: Path, out: Path, family: str, steps: int, *extra: str, **train: object) -> list[str]:
    flags = {**settings(data, steps), "batch_size": B, "out_dir": str(out), **train}
    args = []
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    for name, value in dict(TINY, family=family).items():
        args += ["--model" if name == "family" else "--" + name.replace("_", "-"), str(value)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "sokhan", "train", *args, *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def two_processes(data: Path, out: Path, family: str, steps: int = STEPS, *extra: str) -> None:
    done = subprocess.run(torchrun_command(data, out, family, steps, *extra), env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(run: Path) -> dict[tuple[int, str], float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(r["step"], r["split"]): r["loss"] for r in rows}


def assert_same_losses(run: Path, reference: Path) -> None:
    got, want = losses(run), losses(reference)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=TOL), key


def assert_same_weights(run: Path, reference: Path) -> None:
    got, want = (load_file(r / "checkpoints" / (r / "checkpoints" / "latest").read_text().strip() / "model.safetensors")
                 for r in (run, reference))
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
