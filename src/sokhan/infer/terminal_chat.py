"""The terminal chat behind `sokhan chat`: read a line, stream the model's reply, repeat.

Decisions, and why:

* Only the conversation goes to stdout: the assistant's replies, each ended by a newline
  (and the `you › ` prompt when stdin is a terminal). The banner, command answers and
  errors go to stderr, so `sokhan chat m < questions.txt > answers.txt` keeps clean answers.
* Reading uses `input()` when the streams are the real stdin/stdout, which gives line
  editing and history (readline) in a terminal and plain reading from a pipe. Streams are
  switched to UTF-8 with errors="replace": Persian must work even under a C/Latin-1
  locale, and one bad byte in piped input must not end the session.
* History is the list of user and assistant messages; the system prompt lives apart so
  `/reset` can clear the turns and keep it. `LanguageModel.stream_chat` (the chat
  template) drops the oldest turns when the context is full, keeping the system prompt.
* Ctrl-C while a reply streams stops that reply and *keeps what was printed* as the
  assistant's message: the model's next turn then sees what the user saw on screen.
  Ctrl-C anywhere else (at the prompt, whatever was typed) leaves with exit status 0, as
  do `/quit`, `/exit` and Ctrl-D (EOF); the user asked to go, that is not a failure.
* With a seed, reply n (counted from 0 over the session) uses seed + n: replies differ
  from one another, yet the same seed and the same input give the same transcript.
* A turn that cannot be answered (e.g. one message longer than the context) prints one
  `error:` line, forgets that message, and the chat goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from sokhan.config import SampleConfig
from sokhan.errors import SokhanError

PROMPT = "you › "
HELP = """commands:
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt; /system alone clears it
  /temp X        set the sampling temperature (0 = greedy); /temp alone shows it
  /help          this list
  /quit, /exit   leave (so do Ctrl-D, and Ctrl-C at the prompt)
Ctrl-C while the model writes stops the reply. Start a line with // to send a message that begins with /."""


class ChatModel(Protocol):
    """What the loop needs of a model: `sokhan.LanguageModel` is one (tests use a fake)."""

    path: Path
    block_size: int

    def stream_chat(self, messages: list[dict[str, str]], **sample: Any) -> Iterator[str]: ...


def use_utf8(*streams: TextIO) -> None:
    """Make text streams UTF-8 with errors="replace", where they can be reconfigured.

    Python follows the locale for stdio; under LANG=C or a Latin-1 locale Persian input
    would fail to decode or print. Objects without `reconfigure` (StringIO) are left alone.
    """
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        with contextlib.suppress(ValueError, OSError):  # e.g. stdin already read from: keep what it has
            reconfigure(encoding="utf-8", errors="replace")


class TerminalChat:
    """One chat session with `lm`; `run()` loops until the user leaves and returns the exit status."""

    def __init__(self, lm: ChatModel, sample: SampleConfig | None = None, system: str = "",
                 stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.lm = lm
        self.sample = sample or SampleConfig()
        self.system = system
        self.history: list[dict[str, str]] = []
        self.replies = 0  # replies generated so far: reply n is sampled with seed + n
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        use_utf8(self.stdin, self.stdout, self.stderr)
        interactive = self._isatty(self.stdin)
        if interactive and self._uses_input():
            with contextlib.suppress(ImportError):  # not on every platform
                import readline  # noqa: F401  (imported for its effect: input() gets line editing and history)
        self.info(f"sokhan chat · model {self.lm.path} · /help for commands, /quit or Ctrl-D to leave")
        prompt = PROMPT if interactive else ""
        while True:
            try:
                line = self.read_line(prompt)
            except EOFError:
                if interactive:
                    self.stdout.write("\n")  # Ctrl-D leaves the cursor after the prompt
                    self.stdout.flush()
                return 0
            except KeyboardInterrupt:
                self.stdout.write("\n")
                self.stdout.flush()
                return 0
            try:
                if not self.handle(line):
                    return 0
            except KeyboardInterrupt:  # outside a streaming reply (e.g. a second Ctrl-C): leave
                self.stdout.write("\n")
                self.stdout.flush()
                return 0

    def read_line(self, prompt: str) -> str:
        """One line without its newline; raises EOFError at the end of input."""
        if self._uses_input():
            return input(prompt)
        if prompt:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def handle(self, line: str) -> bool:
        """Act on one input line: a command or a message. False means leave."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("//"):
            text = text[1:]
        elif text.startswith("/"):
            return self.command(text)
        self.reply(text)
        return True

    # ---- commands -------------------------------------------------------------------------

    def command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.info(HELP)
        elif name == "/reset":
            self.history.clear()
            self.info("conversation cleared" + (" (system prompt kept)" if self.system else ""))
        elif name == "/system":
            self.system = arg
            self.info(f"system prompt set: {arg}" if arg else "system prompt cleared")
        elif name == "/temp":
            self.set_temperature(arg)
        else:
            self.info(f"unknown command {name}; /help lists them")
        return True

    def set_temperature(self, arg: str) -> None:
        if not arg:
            self.info(f"temperature is {self.sample.temperature}")
            return
        try:
            value = float(arg)
            if not math.isfinite(value):
                raise ValueError
            self.sample = dataclasses.replace(self.sample, temperature=value)  # validates (≥ 0)
        except (ValueError, SokhanError):
            self.info(f"error: /temp needs a number ≥ 0, not '{arg}'")
            return
        self.info(f"temperature set to {value}")

    # ---- replies --------------------------------------------------------------------------

    def messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def reply(self, text: str) -> None:
        """Stream the reply to `text`; Ctrl-C stops it and keeps the part already printed."""
        self.history.append({"role": "user", "content": text})
        sample = self.sample
        if sample.seed is not None:
            sample = dataclasses.replace(sample, seed=sample.seed + self.replies)
        pieces: list[str] = []
        stopped = False
        try:
            try:
                for piece in self.lm.stream_chat(self.messages(), **dataclasses.asdict(sample)):
                    pieces.append(piece)
                    self.stdout.write(piece)
                    self.stdout.flush()
            except KeyboardInterrupt:
                stopped = True
        except SokhanError as e:
            self.history.pop()  # unanswerable: forget the message, keep chatting
            self.info(f"error: {e}")
            return
        self.replies += 1
        self.history.append({"role": "assistant", "content": "".join(pieces)})
        self._trim()
        self.stdout.write("\n")
        self.stdout.flush()
        if stopped:
            self.info("(reply stopped)")

    def _trim(self) -> None:
        """Drop turns that can never fit again: each message costs ≥ 2 tokens (role + <|end|>),
        so at most block_size // 2 of them fit. Keeps the template's per-turn trimming cheap
        in a long session; which turns the model sees is still the template's decision."""
        keep = max(self.lm.block_size // 2, 2)
        if len(self.history) > keep:
            del self.history[:len(self.history) - keep]

    # ---- small helpers --------------------------------------------------------------------

    def info(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def _uses_input(self) -> bool:
        return self.stdin is sys.stdin and self.stdout is sys.stdout

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False
