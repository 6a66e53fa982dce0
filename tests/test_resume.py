"""Checkpoints and resume, to the last bit: shared-buffer RNN weights, Ctrl-C at any moment, a crash at
any step of a save, metrics rows, the learning-rate schedule."""

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from helpers import InterruptAt, assert_same_weights, kill_at_checkpoint_operation
from sokhan.config import PrepareConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.models import GPT, ModelConfig, build_model
from sokhan.models import checkpoint as ck
from sokhan.models.checkpoint import (
    LATEST,
    STATE,
    TOKENIZER,
    WEIGHTS,
    latest_checkpoint,
    load_trainer_state,
    load_weights,
    save_checkpoint,
)
from sokhan.models.recurrent import RecurrentLM
from sokhan.recipes.pretrain import pretrain
from sokhan.train.tasks import CausalLMTask, StreamLMTask

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="bpe", vocab_size=300), progress=False)


def train(data: Path, out: Path, family: str = "gpt", **kw) -> object:
    cfg = TrainConfig(data=str(data), out_dir=str(out), batch_size=4, max_steps=kw.pop("max_steps", 8),
                      eval_interval=kw.pop("eval_interval", 4), eval_iters=2, warmup_steps=2, progress=False,
                      device="cpu", log_interval=1, **kw)
    return pretrain(cfg, dict(TINY, preset="tiny", family=family, dropout=0.1))


def metric_keys(run: Path) -> list[tuple[int, str]]:
    return [(r["step"], r["split"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


# -- 1. recurrent weights in one cuDNN-style buffer ------------------------------------------------------


def test_recurrent_weights_packed_into_one_buffer_survive_a_checkpoint(tmp_path):
    """cuDNN's flatten_parameters puts every RNN weight into one storage at different offsets; all are saved."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.create(preset="tiny", family="lstm", vocab_size=50, n_layer=2, n_embd=16,
                                           block_size=16))
    params = list(model.rnn.parameters())
    flat = torch.empty(sum(p.numel() for p in params))
    offset = 0
    with torch.no_grad():
        for p in params:  # the layout flatten_parameters makes on a GPU, made by hand on the CPU
            flat[offset: offset + p.numel()] = p.flatten()
            p.set_(flat.untyped_storage(), offset, p.shape, p.stride())
            offset += p.numel()
    assert len({p.untyped_storage().data_ptr() for p in params}) == 1
    save_checkpoint(tmp_path, 1, model, {"model": model.config.to_dict()}, "{}", None)
    fresh = build_model(model.config)
    load_weights(fresh, latest_checkpoint(tmp_path))
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


def test_tied_weights_are_still_stored_once(tmp_path):
    model = GPT(ModelConfig.create(preset="tiny", vocab_size=50, **TINY))
    assert model.lm_head.weight is model.embed.weight
    assert "lm_head.weight" not in ck.unique_state_dict(model)


# -- 2. Ctrl-C at random moments, then --resume ----------------------------------------------------------


@pytest.mark.usefixtures("interruptible")
@pytest.mark.parametrize("family,moments", [("gpt", 4), ("lstm", 2)])
def test_ctrl_c_at_any_moment_then_resume_is_bit_exact(data, tmp_path, monkeypatch, family, moments):
    """SIGINT anywhere (dropout on, two micro-batches a step) → --resume → the same weights as a run never stopped."""
    straight = tmp_path / "straight"
    train(data, straight, family, grad_accum=2)
    task_class, model_class = (CausalLMTask, GPT) if family == "gpt" else (StreamLMTask, RecurrentLM)
    rng = random.Random(f"ctrl-c {family}")
    for k in sorted(rng.sample(range(2, 38), moments)):  # 5 calls a step, 4 an evaluation: before step 8
        run = tmp_path / f"k{k}"
        with monkeypatch.context() as m:
            hook = InterruptAt(m, k, [(task_class, "sample"), (model_class, "forward"),
                                      (torch.nn.utils, "clip_grad_norm_")])
            first = train(data, run, family, grad_accum=2)
        assert hook.calls >= k and first.interrupted, k
        assert first.step < 8
        resumed = train(data, run, family, grad_accum=2, resume=True)
        assert resumed.step == 8 and not resumed.interrupted
        assert_same_weights(straight, run)
        keys = metric_keys(run)
        assert len(keys) == len(set(keys)), f"duplicate metrics rows after Ctrl-C at call {k}"


@pytest.mark.usefixtures("interruptible")
def test_ctrl_c_in_the_last_step_finishes_the_run(data, tmp_path, monkeypatch):
    """The step ends the run anyway: it is evaluated and saved as done, not left 'interrupted' for good."""
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        InterruptAt(m, 4, [(torch.nn.utils, "clip_grad_norm_")])  # inside step 4 of 4
        result = train(data, run, max_steps=4, eval_interval=100)
    assert result.step == 4 and not result.interrupted and result.val_loss is not None
    assert (4, "val") in metric_keys(run)


def test_an_ignored_sigint_stays_ignored(data, tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job a script put in the background
    try:
        train(data, tmp_path / "run", max_steps=1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# -- 3. a crash (SIGKILL) at every rename / fsync / delete of a save -------------------------------------


def versioned_model(version: int) -> GPT:
    model = GPT(ModelConfig.create(preset="tiny", vocab_size=50, **TINY))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(version)
    return model


def save_version(run: Path, version: int, step: int, keep: int = 2) -> None:
    model = versioned_model(version)
    save_checkpoint(run, step, model, {"model": model.config.to_dict(), "version": version}, "{}",
                    {"step": step, "version": version}, keep=keep)


def killed_at(run: Path, k: int, saves: list[tuple[int, int, int]]) -> bool:
    """Run `saves` (version, step, keep) in a forked child that SIGKILLs itself at its k-th rename, fsync or
    delete; True if it died there, False if the saves finished first."""
    pid = os.fork()
    if pid == 0:  # the child: no cleanup of any kind runs after the kill, as after a power cut
        try:
            kill_at_checkpoint_operation(k)
            for version, step, keep in saves:
                save_version(run, version, step, keep)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the saving child hung")
        time.sleep(0.005)


def check_run(run: Path, versions: set[int]) -> int | None:
    """`latest` names a complete checkpoint or there is none; what a resume would load is whole. Its version."""
    latest = run / "checkpoints" / LATEST
    if latest.exists():
        named = run / "checkpoints" / latest.read_text().strip()
        assert all((named / f).is_file() for f in (WEIGHTS, TOKENIZER, STATE, "config.json")), named
    found = latest_checkpoint(run)
    if found is None:
        return None
    model = versioned_model(-1)
    load_weights(model, found)
    version = int(model.embed.weight[0, 0])
    assert all(torch.all(p == version) for p in model.parameters()), "a checkpoint mixing two saves"
    assert load_trainer_state(found)["version"] == version and version in versions
    return version


@pytest.mark.parametrize("scenario", ["first save", "same step again", "next step, pruning"])
def test_a_kill_at_any_point_of_a_save_leaves_a_complete_latest_or_none(tmp_path, scenario):
    before = {"first save": [], "same step again": [(1, 5, 2)], "next step, pruning": [(1, 5, 1)]}[scenario]
    saves = {"first save": [(2, 5, 2)], "same step again": [(2, 5, 2)], "next step, pruning": [(2, 6, 1)]}[scenario]
    k = 0
    while True:
        k += 1
        run = tmp_path / f"k{k}"
        for version, step, keep in before:
            save_version(run, version, step, keep)
        died = killed_at(run, k, saves)
        version = check_run(run, {1, 2})
        if before:
            assert version is not None, f"the earlier checkpoint was lost by a kill at operation {k}"
        save_version(run, 3, 7)  # the next save after the crash works and cleans up after it
        assert check_run(run, {3}) == 3
        assert not [p for p in (run / "checkpoints").iterdir() if p.suffix in (".tmp", ".del")]
        if not died:
            assert version == 2
            break
    assert k > 4  # every operation of the save was tried


def test_a_run_whose_first_save_died_starts_fresh(data, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000004.tmp").mkdir(parents=True)  # the first save died half-way
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 9.0}\n{"step": 2, "spl')  # its log
    result = train(data, run, max_steps=4)
    assert result.step == 4 and latest_checkpoint(run).name == "step-0000004"
    assert "starting fresh" in capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.history and metric_keys(run) == [(1, "train"), (2, "train"), (3, "train"), (4, "train"),
                                                           (4, "val")]  # the dead run's rows are gone
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    assert train(data, again, max_steps=4, resume=True).step == 4  # --resume with nothing to resume: fresh too


def test_resume_after_latest_was_lost_continues_from_the_newest_complete_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, max_steps=4, lr_decay_steps=8)
    (run / "checkpoints" / LATEST).unlink()  # the first save died between the folder and `latest`
    assert train(data, run, max_steps=8, resume=True, lr_decay_steps=8).step == 8
    straight = tmp_path / "straight"
    train(data, straight, max_steps=8, lr_decay_steps=8)
    assert_same_weights(straight, run)


# -- 4. metrics rows -------------------------------------------------------------------------------------


def test_steps_that_run_again_after_a_resume_keep_one_metrics_row(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, max_steps=8, eval_interval=4, keep_checkpoints=0)
    ckpts = run / "checkpoints"
    (ckpts / LATEST).write_text("step-0000004\n")  # resume from the older checkpoint: steps 5-8 run again
    train(data, run, max_steps=8, eval_interval=4, resume=True)
    keys = metric_keys(run)
    assert len(keys) == len(set(keys))
    assert keys.count((8, "val")) == 1 and keys.count((5, "train")) == 1


def test_resuming_a_finished_run_changes_nothing(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, max_steps=4)
    before = (run / "metrics.jsonl").read_text()
    folder = latest_checkpoint(run)
    result = train(data, run, max_steps=4, resume=True)
    assert result.step == 4 and result.val_loss is not None
    assert latest_checkpoint(run) == folder and (run / "metrics.jsonl").read_text() == before


# -- the learning-rate schedule on resume ----------------------------------------------------------------


def test_a_larger_max_steps_on_resume_keeps_the_runs_cosine(data, tmp_path, capsys):
    run = tmp_path / "run"
    train(data, run, max_steps=6, min_lr=1e-4)
    train(data, run, max_steps=9, min_lr=1e-4, resume=True)
    assert "the run's own cosine, min_lr at step 6" in capsys.readouterr().err
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if r["split"] == "train"}
    assert [lrs[s] for s in (7, 8, 9)] == [1e-4] * 3  # stays at min_lr; the cosine is not stretched to 9
    timed = tmp_path / "timed"  # a wall-clock budget with its own cosine end: the cosine stays by steps
    train(data, timed, max_steps=4, max_time=3600, lr_decay_steps=8)
    train(data, timed, max_steps=6, max_time=3600, resume=True)
    state = load_trainer_state(latest_checkpoint(timed))
    assert (state["lr_decay_steps"], state["cosine_by_time"]) == (8, False)
    other = tmp_path / "other"
    train(data, other, max_steps=6)
    train(data, other, max_steps=9, resume=True, lr_decay_steps=9)  # asked for: a new schedule
    lrs = [r["lr"] for r in map(json.loads, (other / "metrics.jsonl").read_text().splitlines())
           if r["split"] == "train" and r["step"] > 6]
    assert all(lr > 1e-4 for lr in lrs[:-1])
