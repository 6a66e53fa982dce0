"""Faults, as a user's machine deals them: `sokhan train` killed at random moments, SIGTERM, a full disk, a
diverging loss, a damaged trainer state. The run is never lost and never resumes into a different run."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sokhan.config import PrepareConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.errors import SokhanError
from sokhan.models import ModelConfig, build_model
from sokhan.models import checkpoint as ck
from sokhan.models.checkpoint import LATEST, STATE, latest_checkpoint, load_weights
from sokhan.recipes.pretrain import pretrain

STEPS = 12
MODEL_FLAGS = ["--preset", "tiny", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
               "--dropout", "0.1"]

# Runs `sokhan train` in this process, after arranging to SIGKILL itself at its KILL_AT_OP-th rename, fsync or
# delete of a checkpoint save: a moment inside a checkpoint write, chosen by the test.
KILLING_TRAIN = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from helpers import kill_at_checkpoint_operation
kill_at_checkpoint_operation(int(os.environ["KILL_AT_OP"]))
from sokhan.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hafez"
    return prepare(PrepareConfig(source="hafez", out_dir=str(out), tokenizer="bpe", vocab_size=300), progress=False)


def train_args(data: Path, run: Path) -> list[str]:
    return ["train", "--data", str(data), "--out-dir", str(run), *MODEL_FLAGS, "--batch-size", "4",
            "--max-steps", str(STEPS), "--eval-interval", "2", "--eval-iters", "1", "--warmup-steps", "2",
            "--seed", "7", "--device", "cpu", "--no-progress", "--resume"]


def launch(args: list[str], kill_at_op: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if kill_at_op is None:
        command = [sys.executable, "-m", "sokhan", *args]
    else:
        command, env["KILL_AT_OP"] = [sys.executable, "-c", KILLING_TRAIN, *args], str(kill_at_op)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(proc: subprocess.Popen, prefix: str = "model:") -> None:
    """Block until the command prints a line starting with `prefix` (the model line: training starts)."""
    for line in proc.stderr:
        if line.startswith(prefix):
            return
    raise AssertionError(f"sokhan train ended before a '{prefix}' line (exit {proc.wait()})")


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = latest_checkpoint(run)
    model = build_model(ModelConfig.from_dict(json.loads((folder / "config.json").read_text())["model"]))
    load_weights(model, folder)
    return model.state_dict()


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(data, tmp_path):
    """≥ 10 SIGKILLs (seeded): half at a random time into training, half at a random operation of a checkpoint
    write. Every launch resumes (or starts fresh) without an error, and the end is the run never killed."""
    straight = tmp_path / "straight"
    proc = launch(train_args(data, straight))
    wait_for_training(proc)
    started = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    train_seconds = time.perf_counter() - started  # the random kills fall within this much training

    rng = random.Random(20261129)
    run, kills, in_writes = tmp_path / "killed", 0, 0
    for launch_no in range(40):
        if kills >= 10 and launch_no % 2 == 0:
            proc = launch(train_args(data, run))  # let it finish
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            break
        if launch_no % 2:
            proc = launch(train_args(data, run), kill_at_op=rng.randint(1, 24))  # inside a checkpoint write
            _, err = proc.communicate(timeout=300)
            in_writes += proc.returncode == -signal.SIGKILL
        else:
            proc = launch(train_args(data, run))
            wait_for_training(proc)
            time.sleep(rng.uniform(0.05, 0.6) * train_seconds)
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, -signal.SIGKILL), err  # never a failed resume
        kills += proc.returncode == -signal.SIGKILL
        if proc.returncode == 0 and kills >= 10:
            break
    assert kills >= 10 and in_writes >= 3, f"{launch_no + 1} launches, {kills} kills, {in_writes} in writes"
    assert json.loads((latest_checkpoint(run) / "config.json").read_text())["progress"]["step"] == STEPS
    a, b = final_weights(straight), final_weights(run)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_sigterm_saves_and_stops_like_ctrl_c(data, tmp_path):
    run = tmp_path / "run"
    args = train_args(data, run)
    args[args.index("--max-steps") + 1] = "100000"
    proc = launch(args)
    wait_for_training(proc, "step 2:")  # the first evaluation: the loop runs
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM: finishing this step" in err and "--resume" in out + err
    assert "Traceback" not in err
    step = json.loads((latest_checkpoint(run) / "config.json").read_text())["progress"]["step"]
    assert 0 < step < 100000


# -- in-process faults ------------------------------------------------------------------------------------


def train(data: Path, run: Path, **kw) -> object:
    cfg = TrainConfig(data=str(data), out_dir=str(run), batch_size=4, max_steps=kw.pop("max_steps", 6),
                      eval_interval=kw.pop("eval_interval", 2), eval_iters=1, warmup_steps=2, progress=False,
                      device="cpu", **kw)
    return pretrain(cfg, dict(preset="tiny", n_layer=2, n_head=2, n_embd=32, block_size=32))


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS], ids=["full-disk", "read-only"])
def test_a_full_disk_or_read_only_folder_keeps_the_last_checkpoint_and_names_the_path(data, tmp_path, monkeypatch,
                                                                                      error):
    run = tmp_path / "run"
    real = ck._write_folder

    def failing(tmp, files):
        if tmp.name.startswith("step-0000004"):
            raise OSError(error, os.strerror(error), str(tmp / ck.WEIGHTS))
        return real(tmp, files)

    monkeypatch.setattr(ck, "_write_folder", failing)
    with pytest.raises(SokhanError) as caught:
        train(data, run)
    message = str(caught.value)
    assert "\n" not in message and os.strerror(error) in message and "step-0000004.tmp" in message
    assert latest_checkpoint(run).name == "step-0000002" and message.endswith("is kept: " + str(run / "checkpoints" /
                                                                                             "step-0000002"))
    monkeypatch.undo()
    assert train(data, run, resume=True).step == 6  # and the run goes on once there is room


def test_a_diverging_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    from sokhan.train.tasks import CausalLMTask

    real, calls = CausalLMTask.loss, []

    def diverging(self, model, batch):
        loss = real(self, model, batch)
        if not model.training:  # an evaluation's batch
            return loss
        calls.append(1)
        return loss * float("nan") if len(calls) == 5 else loss  # the 5th step's loss

    monkeypatch.setattr(CausalLMTask, "loss", diverging)
    run = tmp_path / "run"
    with pytest.raises(SokhanError, match=r"loss became nan at step 5, before its update; the last good "
                                          r"checkpoint is .*step-0000004"):
        train(data, run, eval_interval=4)
    weights = final_weights(run)
    assert all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.parametrize("damage", [
    pytest.param(lambda s: s.pop("optimizer"), id="missing-optimizer"),
    pytest.param(lambda s: s.update(step="4"), id="step-a-string"),
    pytest.param(lambda s: s.update(step=None), id="step-null"),
    pytest.param(lambda s: s.update(data_rng=torch.zeros(3)), id="rng-wrong-tensor"),
    pytest.param(lambda s: s.update(task=[1, 2]), id="task-a-list"),
    pytest.param(lambda s: s["optimizer"].update(state={0: {"exp_avg": torch.zeros(2)}}), id="optimizer-shapes"),
])
def test_a_damaged_trainer_state_is_one_line(data, tmp_path, damage):
    run = tmp_path / "run"
    train(data, run, max_steps=2)
    path = latest_checkpoint(run) / STATE
    state = torch.load(path, weights_only=True)
    damage(state)
    torch.save(state, path)
    with pytest.raises(SokhanError, match="trainer state") as caught:
        train(data, run, max_steps=4, resume=True)
    assert "\n" not in str(caught.value)


def test_latest_that_is_not_text_falls_back_to_the_newest_complete_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, max_steps=4)
    (run / "checkpoints" / LATEST).write_bytes(b"\xff\xfe../../etc\n")
    assert latest_checkpoint(run).name == "step-0000004"
    (run / "checkpoints" / LATEST).write_text("../../step-0000004\n")  # a path out of the run is no name
    assert latest_checkpoint(run).name == "step-0000004"
    assert train(data, run, max_steps=6, resume=True).step == 6


def test_resuming_on_data_with_a_larger_vocabulary_is_one_line(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, max_steps=2)
    bigger = prepare(PrepareConfig(source="hafez", out_dir=str(tmp_path / "bigger"), tokenizer="bpe", vocab_size=400),
                     progress=False)
    with pytest.raises(SokhanError, match="vocabulary of 300, smaller than the 400 tokens"):
        train(bigger, run, max_steps=4, resume=True)


def test_recipes_refuse_an_out_dir_that_is_a_file(data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SokhanError, match="exists and is not a folder"):
        train(data, tmp_path / "file")


def test_a_full_disk_while_logging_or_drawing_is_one_line(data, tmp_path, monkeypatch):
    """metrics.jsonl and the loss curve on a full disk: one line naming the file; the checkpoint stands."""
    import sokhan.recipes.pretrain as recipe
    from sokhan.train.metrics import MetricsLog

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            """Nothing to close."""

    log = MetricsLog(tmp_path)
    log.file.close()
    log.file = FullDisk()
    with pytest.raises(SokhanError, match=r"cannot write .*metrics.jsonl: No space left on device"):
        log.write({"step": 1})

    def full(run_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "loss.png"))

    monkeypatch.setattr(recipe, "draw_loss_curve", full)
    run = tmp_path / "run"
    with pytest.raises(SokhanError, match=r"step 2 is saved, but writing .*loss.png failed: No space left"):
        train(data, run)
    assert latest_checkpoint(run).name == "step-0000002"
