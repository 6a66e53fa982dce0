"""`sokhan chat`: the loop's rules on a fake model (fast), then the real CLI on a tiny trained
model, through a pipe and through a pseudo-terminal (Ctrl-C stops a reply, not the chat)."""

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sokhan.config import SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.terminal_chat import TerminalChat, use_utf8

ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "TERM": "dumb"}


# ---- the loop, on a fake model ---------------------------------------------------------------

class FakeLM:
    """Records what it was asked; replies "<n>:<last user message>" in two pieces."""

    path = Path("fake-model")

    def __init__(self, block_size: int = 64, interrupt_on: str | None = None, refuse: str | None = None):
        self.block_size, self.interrupt_on, self.refuse = block_size, interrupt_on, refuse
        self.calls: list[tuple[list[dict], dict]] = []

    def stream_chat(self, messages, **sample):
        last = messages[-1]["content"]
        if last == self.refuse:  # like the template: raised before any token
            raise SokhanError("the last message alone is 99 tokens, more than the 32 that fit")
        self.calls.append(([dict(m) for m in messages], sample))
        reply = f"{len(self.calls)}:{last}"

        def pieces():
            yield reply[:2]
            if last == self.interrupt_on:
                raise KeyboardInterrupt  # as if Ctrl-C arrived mid-reply
            yield reply[2:]
        return pieces()


def chat(lm: FakeLM, lines: list[str], **kw) -> tuple[TerminalChat, int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    session = TerminalChat(lm, kw.pop("sample", SampleConfig(seed=5, max_new_tokens=3)),
                           stdin=io.StringIO("".join(line + "\n" for line in lines)), stdout=out, stderr=err, **kw)
    status = session.run()
    return session, status, out.getvalue(), err.getvalue()


def test_history_commands_and_seeds():
    lm = FakeLM()
    lines = ["سلام", "/temp 0.5", "/temp abc", "/temp -1", "/temp nan", "دوباره", "/system تو شاعری", "سوم",
             "/reset", "چهارم", "/system", "پنجم", "/nope", "//slash", "", "   ", "/help", "/quit", "after"]
    session, status, out, err = chat(lm, lines, system="sys")
    assert status == 0
    assert out == "1:سلام\n2:دوباره\n3:سوم\n4:چهارم\n5:پنجم\n6:/slash\n"  # stdout: only the replies
    first, second, third, fourth, fifth, sixth = (messages for messages, _ in lm.calls)
    assert first == [{"role": "system", "content": "sys"}, {"role": "user", "content": "سلام"}]
    assert second == first + [{"role": "assistant", "content": "1:سلام"}, {"role": "user", "content": "دوباره"}]
    assert third[0] == {"role": "system", "content": "تو شاعری"} and third[1:] == second[1:] + [
        {"role": "assistant", "content": "2:دوباره"}, {"role": "user", "content": "سوم"}]
    assert fourth == [{"role": "system", "content": "تو شاعری"}, {"role": "user", "content": "چهارم"}]  # /reset
    assert fifth[0]["role"] == "user" and len(fifth) == 3  # /system alone: no system message
    assert sixth[-1] == {"role": "user", "content": "/slash"}
    samples = [s for _, s in lm.calls]
    assert [s["seed"] for s in samples] == [5, 6, 7, 8, 9, 10]
    assert [s["temperature"] for s in samples] == [0.8] + [0.5] * 5  # bad /temp values changed nothing
    assert all(s["max_new_tokens"] == 3 for s in samples)
    err_lines = err.splitlines()
    assert "fake-model" in err_lines[0] and "/help" in err_lines[0]  # the banner
    assert sum("/temp needs a number" in line for line in err_lines) == 3
    assert any("unknown command /nope" in line for line in err_lines)
    assert "/reset" in err and "/quit" in err  # /help
    assert "after" not in out + err and len(lm.calls) == 6  # nothing read after /quit
    assert session.history[-1] == {"role": "assistant", "content": "6:/slash"}


def test_eof_leaves_and_seed_none_stays_none():
    lm = FakeLM()
    _, status, out, _ = chat(lm, ["a"], sample=SampleConfig(max_new_tokens=3))
    assert status == 0 and out == "1:a\n"
    assert lm.calls[0][1]["seed"] is None


def test_ctrl_c_during_reply_keeps_what_was_printed():
    lm = FakeLM(interrupt_on="long")
    _, status, out, err = chat(lm, ["long", "next"])
    assert status == 0
    assert out == "1:\n2:next\n"
    assert "(reply stopped)" in err
    assert lm.calls[1][0] == [{"role": "user", "content": "long"}, {"role": "assistant", "content": "1:"},
                              {"role": "user", "content": "next"}]
    assert lm.calls[1][1]["seed"] == 6  # the stopped reply counts


def test_ctrl_c_at_the_prompt_leaves_cleanly():
    class Interrupted(io.StringIO):
        def readline(self, *a):
            raise KeyboardInterrupt

    session = TerminalChat(FakeLM(), stdin=Interrupted(), stdout=io.StringIO(), stderr=io.StringIO())
    assert session.run() == 0


def test_unanswerable_message_is_dropped_and_chat_goes_on():
    lm = FakeLM(refuse="huge")
    _, status, out, err = chat(lm, ["huge", "small"])
    assert status == 0 and out == "1:small\n"
    assert any(line.startswith("error:") and "99 tokens" in line for line in err.splitlines())
    assert lm.calls[0][0] == [{"role": "user", "content": "small"}]


def test_history_is_capped_at_what_can_fit():
    lm = FakeLM(block_size=8)  # at most 4 messages (≥ 2 tokens each) can ever fit
    session, *_ = chat(lm, [str(i) for i in range(10)])
    assert len(session.history) == 4
    assert session.history[-1] == {"role": "assistant", "content": "10:9"}


def test_use_utf8_reconfigures_a_latin1_stream():
    raw = io.BytesIO("سلام\n".encode() + b"\xff\n")
    stream = io.TextIOWrapper(raw, encoding="latin-1")
    use_utf8(stream, io.StringIO())  # StringIO: nothing to reconfigure, no error
    assert stream.readline() == "سلام\n"
    assert stream.readline() == "\ufffd\n"  # a bad byte does not end the session


# ---- the real CLI, on a tiny trained model ----------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tiny_run) -> str:
    return str(tiny_run)


def sokhan_chat(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sokhan", "chat", *args], input=stdin, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, env=ENV)


def test_piped_chat_is_deterministic(run_dir):
    lines = ["سلام، حالت چطور است؟", "/temp 0.5", "/temp abc", "دل", "/system تو شاعری هستی", "شعری بگو",
             "/reset", "باز هم", "/quit", "/temp xyz"]
    stdin = "".join(line + "\n" for line in lines)
    args = (run_dir, "--seed", "0", "--max-new-tokens", "10", "--system", "پاسخ کوتاه")
    first = sokhan_chat(*args, stdin=stdin)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert first.stdout.count("\n") >= 4  # four replies, each ended by a newline
    assert any("\u0600" <= ch <= "\u06ff" for ch in first.stdout)  # Persian came out
    assert "you ›" not in first.stdout  # no prompt when stdin is not a terminal
    err = first.stderr.splitlines()
    assert "checkpoints" in err[0] and "/help" in err[0]
    assert sum("abc" in line for line in err) == 1
    assert "xyz" not in first.stderr  # /quit stopped the reading
    again = sokhan_chat(*args, stdin=stdin)
    assert again.returncode == 0 and again.stdout == first.stdout


def test_bad_model_path_is_one_line_error(tmp_path):
    proc = sokhan_chat(str(tmp_path / "no-model"), stdin="سلام\n")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-model" in lines[0], proc.stderr
    assert proc.stdout == ""


def spawn(run_dir: str, *args: str):
    pexpect = pytest.importorskip("pexpect")
    return pexpect.spawn(sys.executable, ["-m", "sokhan", "chat", run_dir, "--seed", "0", *args], env=ENV,
                         encoding="utf-8", timeout=20, dimensions=(24, 200),
                         # a shell's background job ignores SIGINT, and children inherit that: undo it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(child) -> int:
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    assert "Traceback" not in child.before
    return child.exitstatus


def test_terminal_ctrl_c_stops_the_reply_not_the_chat(run_dir):
    # Greedy sampling from a barely trained model repeats one token and never ends by itself,
    # so with a huge token budget the reply is surely still streaming when Ctrl-C comes.
    child = spawn(run_dir, "--max-new-tokens", "100000", "--temperature", "0")
    try:
        child.expect("you › ")
        child.sendline("سلام دوست من")
        child.expect("سلام دوست من\r\n")  # the terminal's echo
        streamed, deadline = "", time.monotonic() + 20
        while len(streamed) < 200 and time.monotonic() < deadline:  # the reply appears as it is written
            streamed += child.read_nonblocking(1000, timeout=10)
        assert len(streamed) >= 200 and "you ›" not in streamed
        child.sendintr()
        child.expect(r"\(reply stopped\)")
        child.expect("you › ")
        assert child.isalive()
        child.sendline("/quit")
        assert finish(child) == 0
    finally:
        child.terminate(force=True)


def test_terminal_ctrl_c_at_the_prompt_leaves(run_dir):
    child = spawn(run_dir, "--max-new-tokens", "5")
    try:
        child.expect("you › ")
        child.sendline("دل")
        child.expect("you › ")
        child.sendintr()
        assert finish(child) == 0
    finally:
        child.terminate(force=True)


def test_chat_is_listed_in_help():
    from sokhan.cli import build_parser

    help_text = build_parser().format_help()
    assert "chat" in help_text
