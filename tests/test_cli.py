"""The command line as a user meets it: bad input gives one clear line and exit status 2; the demo runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import error_line


def sokhan(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sokhan", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    error_line(proc.returncode, proc.stderr, *fragments)


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
    last_lines = " ".join(proc.stderr.splitlines()[-8:])
    card = (out / "report" / "report.md").read_text(encoding="utf-8")  # the demo ends with the report card
    assert "report.md" in last_lines and "bits per character" in card and "fine-tuned on | chatterbot" in card
    for picture in ("attention-layer1.png", "attention-layer1.html", "next.png", "next.html"):  # tiny: layers 0, 1
        assert (model / "inspect" / picture).stat().st_size > 1000
        assert picture in last_lines
    sample = sokhan("sample", str(model), "--prompt", "دل", "--max-new-tokens", "15", "--seed", "1")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("دل") and len(sample.stdout.strip()) > 2
    again = sokhan("sample", str(model), "--prompt", "دل", "--max-new-tokens", "15", "--seed", "1")
    assert again.stdout == sample.stdout
    compiled = sokhan("sample", str(model), "--prompt", "دل", "--max-new-tokens", "15", "--seed", "1", "--compile")
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout == sample.stdout and "compiled the decode step in" in compiled.stderr
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


# --- a command line a newcomer can read: checked options, honest --help, a fast start -----------------

def test_bad_training_options_are_one_line_before_any_work(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nmax_step = 3\n", encoding="utf-8")
    assert_one_line_error(sokhan("train", "--config", str(toml)), "max_step", "max_steps")
    for flag in ("--eval-interval", "--max-steps", "--log-interval", "--batch-size"):
        assert_one_line_error(sokhan("train", flag, "0", "--data", str(tmp_path / "none")), flag[2:].replace("-", "_"))
    assert_one_line_error(sokhan("train", "--positional", "alibi"), "unknown positional 'alibi'")
    assert_one_line_error(sokhan("train", "--n-embd", "30", "--n-head", "4"), "not divisible")
    assert_one_line_error(sokhan("train", "--no-such-flag"), "unrecognized arguments: --no-such-flag")
    assert_one_line_error(sokhan("sample", str(tmp_path), "--num-samples", "0"), "--num-samples", "≥ 1")
    assert_one_line_error(sokhan("serve", str(tmp_path), "--port", "70000"), "port must be in [0, 65535]")


def test_help_shows_the_defaults_that_apply_and_a_sentence_for_every_option():
    from sokhan.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # every subcommand's parser, and the inspect views
    views = commands["inspect"]._subparsers._group_actions[0].choices
    for name, sub in [*commands.items(), *(("inspect " + v, p) for v, p in views.items())]:
        for action in sub._actions:
            if action.dest not in ("help", "view"):
                assert action.help and len(action.help) > 10, (name, action.dest)
    def help_of(command: str) -> str:
        return " ".join(commands[command].format_help().split())  # one line, however argparse wraps it

    train = help_of("train")
    block = train[train.index("--block-size INT context length in tokens"):]
    assert "(default: 128)" in block[:120]                       # the small preset's, not the field's 256
    assert "--model {gpt,bert,rnn,lstm,gru,ngram,seq2seq}, --family" in train  # choices listed
    finetune = help_of("finetune")
    steps = finetune[finetune.index("--max-steps INT optimizer"):]
    assert "(default: 300)" in steps[:120]                        # fine-tuning's gentler schedule
    prepare = help_of("prepare")
    assert "hf:NAME_OR_PATH[:SPLIT]" in prepare and "--doc-split {blank-line,line,file}" in prepare


def test_help_loads_no_torch_and_import_sokhan_stays_light():
    """`sokhan --help` answers without torch, numpy or matplotlib; `import sokhan` (and the Python API) without
    matplotlib or rich.progress."""
    heavy = ("torch", "numpy", "matplotlib")
    for args in ([], ["train"], ["inspect"], ["inspect", "attention"], ["serve"], ["zoo"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sokhan", *args, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & set(heavy), (args, imported & set(heavy))
    probe = ("import sys, sokhan; a = set(sys.modules); from sokhan import LanguageModel; b = set(sys.modules); "
             "print('torch' in a, 'matplotlib' in b, 'rich.progress' in b)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr
