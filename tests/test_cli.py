"""The command line as a user meets it: bad input gives one clear line and exit status 2; the demo runs."""

import subprocess
import sys
from pathlib import Path

import pytest


def sokhan(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sokhan", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


def test_prepare_missing_path(tmp_path):
    assert_one_line_error(sokhan("prepare", "--source", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "o")),
                          "nope")


def test_prepare_empty_corpus(corpus, tmp_path):
    (corpus / "a.txt").write_text("   \n\n\n", encoding="utf-8")
    assert_one_line_error(sokhan("prepare", "--source", str(corpus), "--out-dir", str(tmp_path / "o")), "empty")


def test_prepare_undecodable_bytes_names_file_and_line(corpus, tmp_path):
    (corpus / "bad.txt").write_bytes("سلام\nدنیا\n".encode() + b"\xff\xfe bad\n")
    assert_one_line_error(sokhan("prepare", "--source", str(corpus), "--out-dir", str(tmp_path / "o")), "bad.txt:3")
    assert not (tmp_path / "o" / "meta.json").exists()


def test_prepare_too_small_val_split(corpus, tmp_path):
    (corpus / "a.txt").write_text("\n\n".join(f"سند شماره {i} درباره‌ی چیزی" for i in range(6)), encoding="utf-8")
    assert_one_line_error(sokhan("prepare", "--source", str(corpus), "--out-dir", str(tmp_path / "o"),
                                 "--tokenizer", "char"), "val")


def test_bad_option_values(tmp_path):
    assert_one_line_error(sokhan("prepare", "--val-fraction", "lots", "--out-dir", str(tmp_path / "o")), "val_fraction")
    assert_one_line_error(sokhan("prepare", "--tokenizer", "words", "--out-dir", str(tmp_path / "o")), "words")
    assert_one_line_error(sokhan("pretrain", "--data", str(tmp_path / "missing")), "missing")
    assert_one_line_error(sokhan("prepare", "--config", str(tmp_path / "none.toml")), "none.toml")


def test_missing_model_and_file(tmp_path):
    assert_one_line_error(sokhan("sample", str(tmp_path / "no-model")), "no-model")
    assert_one_line_error(sokhan("eval", str(tmp_path / "no-model"), str(tmp_path / "x.txt")), "x.txt")


def test_demo_end_to_end_then_sample_and_eval(tmp_path):
    out = tmp_path / "demo"
    proc = sokhan("demo", "--steps", "30", "--eval-interval", "15", "--preset", "tiny", "--out-dir", str(out),
                  "--chat-steps", "12", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "bits per character" in proc.stderr
    assert f"sokhan chat {out / 'chat'}" in proc.stderr.replace("\n", "")
    assert (out / "chat" / "checkpoints" / "latest").is_file()
    model = out / "pretrain"
    assert (model / "checkpoints" / "latest").is_file()
    assert (model / "loss.png").is_file()
    last_lines = " ".join(proc.stderr.splitlines()[-6:])
    for picture in ("attention-layer1.png", "attention-layer1.html", "next.png", "next.html"):  # tiny: layers 0, 1
        assert (model / "inspect" / picture).stat().st_size > 1000
        assert picture in last_lines
    sample = sokhan("sample", str(model), "--prompt", "دل", "--max-new-tokens", "15", "--seed", "1")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("دل") and len(sample.stdout.strip()) > 2
    again = sokhan("sample", str(model), "--prompt", "دل", "--max-new-tokens", "15", "--seed", "1")
    assert again.stdout == sample.stdout
    text = tmp_path / "couplet.txt"
    text.write_text("دوش دیدم که ملایک در میخانه زدند\nگل آدم بسرشتند و به پیمانه زدند\n", encoding="utf-8")
    ev = sokhan("eval", str(model), str(text))
    assert ev.returncode == 0, ev.stderr
    bpc = float(ev.stdout.split()[0])
    assert 0.5 < bpc < 12
    # the model folder also works as a training run to resume
    resumed = sokhan("pretrain", "--data", str(out / "data"), "--out-dir", str(model), "--resume", "--max-steps", "32",
                     "--no-progress", "--eval-iters", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "step 30" in resumed.stderr.replace("\n", " ")


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import json
    import signal
    import time

    data = tmp_path / "data"
    assert sokhan("prepare", "--out-dir", str(data), "--vocab-size", "400").returncode == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sokhan", "pretrain", "--data", str(data), "--out-dir", str(run),
                             "--preset", "tiny", "--max-steps", "100000", "--eval-interval", "100000",
                             "--log-interval", "1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job ignores SIGINT, and children inherit that: undo it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = run / "metrics.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave a training process behind when the test fails
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    latest = (run / "checkpoints" / "latest").read_text().strip()
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert int(latest.split("-")[1]) >= max(steps) >= 3
