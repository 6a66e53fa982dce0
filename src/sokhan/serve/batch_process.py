"""Continuous batching in a process of its own: the server's sampling jobs decoded together, away from HTTP.

With `max_batch` > 1 and a model that can (`capabilities.batch_decodes`: a GPT), the server's
sampling jobs (completions and chat replies) go to a child process that decodes up to
`max_batch` of them together (continuous batching, `infer/batching.py`): one forward pass gives
every reply its next token, a new job joins the batch between two steps (its prompt prefilled
alone, its first token sent at once), and a finished or cancelled one leaves between two steps.
A job waits only while every row is taken.

Why a process and not a thread: Python runs one thread at a time (the GIL), and a small
model's step is mostly Python (~100 op calls), as is the HTTP side of each request (parsing,
routing, server-sent events). On one process the two took turns: with 16 streaming clients of
the tests' tiny GPT the model thread used 0.63 of a core and the event loop 0.30 while the
machine had 0.65 cores idle (benchmarks/serve_load.py). Apart, each has a GIL of its own (as in
vLLM, whose engine runs apart from its API server); in the same benchmark, batched tokens/s
went from 9,840 to 13,086 (3.77× to 4.75× one at a time).

The child gets its own copy of the model and tokenizer, pickled by this process from its
memory (never from a file), so the weights are held twice; it runs as many torch threads as
the server's model thread. Requests and cancellations go to it over a pipe, and every text
piece comes back the same way, the pieces of all jobs together at most every 50 ms (`Outbox`);
a reader thread here hands them to the requests' event loops. If the child dies, every job it
had ends with an error and the next job starts a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import torch
from torch import nn

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.batching import BatchedDecoder, Sequence
from sokhan.infer.sampling import StreamStats, TextStream
from sokhan.serve.errors import APIError
from sokhan.serve.jobs import Job, SampleJob, hand_over
from sokhan.text.tokenizers import Tokenizer

FLUSH_SECONDS = 0.05  # a batch hands its jobs' text pieces over at most this often (see `Outbox`)
STOP_SECONDS = 5.0  # how long `close` waits for the child to stop before it is terminated

Event = tuple[str, Any]  # ("text", piece), ("done", StreamStats) or ("error", exception)


# --- in the child process ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class BatchJob:
    """A sampling job as the child knows it: the id the server gave it, its prompt and config."""

    id: int
    prompt_ids: list[int]
    cfg: SampleConfig
    progress: StreamStats = field(default_factory=StreamStats)
    cancelled: bool = False


class Outbox:
    """The events of a batch's jobs, handed over together (to `deliver`: in the child, the pipe to the server).

    Every hand-over costs a message to the server, a wake-up of the request's event loop, and a
    server-sent event to write and for the client to parse: with a small model these cost more
    than its step does for the token. So a job's text pieces wait here and go out joined, at most
    every `interval` seconds (50 ms: 20 updates a second, smoother than anyone reads); what a
    client waits for, its first text and its end, goes out at once. A model slower than that per
    step sends every step's pieces as they come. Measured on the tests' tiny GPT with 16 streaming
    clients (benchmarks/serve_load.py): CPU time per token 176 µs in the server and 95 µs in the
    clients when every step was handed over, 147 µs and 57 µs with 20 ms; batched tokens/s against
    one at a time went from 3.40× at 20 ms to 3.80× at 50 ms.
    """

    def __init__(self, interval: float, deliver: Callable[[list[tuple[BatchJob, Event]]], None]):
        self.interval, self.deliver = interval, deliver
        self.events: dict[BatchJob, list[Event]] = {}  # in order; a job's pieces in a row are joined
        self.urgent = False
        self.sent = time.perf_counter()

    def put(self, job: BatchJob, kind: str, value: Any, urgent: bool = False) -> None:
        events = self.events.setdefault(job, [])
        if kind == "text" and events and events[-1][0] == "text":
            events[-1] = ("text", events[-1][1] + value)
        else:
            events.append((kind, value))
        self.urgent = self.urgent or urgent or kind != "text"

    def send(self, now: bool = False) -> None:
        """Hand the events over if `now`, if one is urgent, or if `interval` has passed since the last hand-over."""
        clock = time.perf_counter()
        if not self.events or not (now or self.urgent or clock - self.sent >= self.interval):
            return
        self.deliver([(job, event) for job, events in self.events.items() for event in events])
        self.events, self.urgent, self.sent = {}, False, clock


class Batch:
    """The sampling jobs decoded together: a `BatchedDecoder`, and each job's `TextStream`.

    Each job gets its pieces and its end as it would alone (`stream_text`): its first token after its
    prefill, then one per step; it leaves its row when it is finished, fails, or is cancelled. The
    pieces go out through an `Outbox`.
    """

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, rows: int, outbox: Outbox):
        self.tokenizer, self.outbox = tokenizer, outbox
        self.decoder = BatchedDecoder(model, rows)
        self.jobs: dict[Sequence, tuple[BatchJob, TextStream]] = {}

    @property
    def full(self) -> bool:
        return self.decoder.full

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, job: BatchJob) -> None:
        """Prefill `job`'s prompt into a free row and send its first piece at once."""
        text = TextStream(self.tokenizer, job.cfg, job.progress)
        if job.cfg.max_new_tokens == 0:
            self._end(job, text.close())
        else:
            try:
                seq, token = self.decoder.add(job.prompt_ids, job.cfg)
            except Exception as e:
                self.failed(job, e)
            else:
                self.jobs[seq] = (job, text)
                self._advance(seq, token)
        self.outbox.send()

    def step(self) -> None:
        """Drop the cancelled jobs, then one token for every other one."""
        for seq, (job, _) in list(self.jobs.items()):
            if job.cancelled:
                self._leave(seq)
        if not self.jobs:
            return
        try:
            outcomes = self.decoder.step()
        except Exception as e:  # a bug, or out of memory: every job in the step fails, the rows are freed
            outcomes = []
            for seq, (job, _) in list(self.jobs.items()):
                self.failed(job, e)
                self._leave(seq)
        for seq, outcome in outcomes:
            if isinstance(outcome, SokhanError):  # its row is freed already
                self.outbox.put(self.jobs.pop(seq)[0], "error", outcome)
            else:
                self._advance(seq, outcome)
        self.outbox.send()

    def failed(self, job: BatchJob, error: Exception) -> None:
        """`job` ends with `error`; one that is not a user's error (a bug, out of memory) is logged with its
        traceback here, as the server's log would show it, since only the exception itself crosses the pipe."""
        if not isinstance(error, SokhanError):
            traceback.print_exception(error)
        self.outbox.put(job, "error", error)

    def _advance(self, seq: Sequence, token: int) -> None:
        job, text = self.jobs[seq]
        first = text.emitted == 0
        piece = text.add(token)
        if piece:
            self.outbox.put(job, "text", piece, urgent=first)
        if not text.finished and seq.sampled >= job.cfg.max_new_tokens:
            piece = text.close()
            if piece:
                self.outbox.put(job, "text", piece)
        if text.finished:
            self._end(job, "")
            self._leave(seq)

    def _end(self, job: BatchJob, piece: str) -> None:
        if piece:
            self.outbox.put(job, "text", piece)
        self.outbox.put(job, "done", job.progress)

    def _leave(self, seq: Sequence) -> None:
        del self.jobs[seq]
        self.decoder.remove(seq)


def picklable(value: Any) -> Any:
    """An event's value as it can cross the pipe: an exception that does not survive pickling (both ways) becomes a
    RuntimeError of its type's name, so the client is told "generation failed: RuntimeError" (`app.stream_error`)
    and the exception's own text stays in this process's log (`Batch.failed`)."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return RuntimeError(type(value).__name__)
    return value


def run_batches(state: bytes, rows: int, threads: int, conn: Connection) -> None:
    """The child's loop: take the server's messages ("add", id, prompt, config), ("cancel", id) and ("stop",);
    add waiting jobs while a row is free; step the batch; wait for a message only when there is nothing to
    decode. Ends at "stop" or when the server's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops this one
    torch.set_num_threads(threads)
    try:
        model, tokenizer = pickle.loads(state)  # made by the server process from its own model (`BatchProcess`)
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    del state
    conn.send(("ready",))
    jobs: dict[int, BatchJob] = {}  # added and not ended

    def send(events: list[tuple[BatchJob, Event]]) -> None:
        conn.send(("events", [(job.id, (kind, picklable(value))) for job, (kind, value) in events]))
        for job, (kind, _) in events:
            if kind != "text":
                jobs.pop(job.id, None)

    batch = Batch(model, tokenizer, rows, Outbox(FLUSH_SECONDS, send))
    waiting: deque[BatchJob] = deque()
    with torch.inference_mode():
        while True:
            try:
                while conn.poll(0 if batch or waiting else None):
                    message = conn.recv()
                    if message[0] == "add":
                        job = jobs[message[1]] = BatchJob(*message[1:])
                        waiting.append(job)
                    elif message[0] == "cancel":
                        if (job := jobs.pop(message[1], None)) is not None:
                            job.cancelled = True
                    else:
                        return
            except (EOFError, OSError):  # the server is gone
                return
            while waiting and not batch.full:
                job = waiting.popleft()
                if not job.cancelled:
                    batch.add(job)
            batch.step()


# --- in the server process ---------------------------------------------------------------------------------------

class BatchProcess:
    """The server's side of the child process: `submit` a SampleJob, and its events come back to its event loop.

    A child that dies fails the jobs it had with a 503 ("try again"), and the next job starts a new one. A child
    that cannot load the model (it sends why instead of "ready") is not started again: every job is refused with
    a 503 that says to serve with --max-batch 1.
    """

    def __init__(self, lm: LanguageModel, rows: int):
        self.lm, self.rows = lm, rows
        self._first_state: bytes | None = self._state()  # refused now, not at the first request; kept for `start`
        self._ids = itertools.count()
        self._live: dict[int, SampleJob] = {}  # submitted and not ended, client still there
        self._started: set[int] = set()  # of those, the ones the child has sent an event for (they have a row)
        self._joined: dict[int, float] = {}  # when each started one got its row
        self._lock = threading.Lock()  # guards the pipe's sending end, the dicts above and the process
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._broken: str | None = None  # why the child could not load the model: no new one would either
        self.seconds_per_job = 0.0  # a moving average of how long a job keeps its row

    def _state(self) -> bytes:
        """The model and tokenizer as the child gets them: pickled here, from this process's memory (made again at
        each restart rather than kept: it is as big as the weights)."""
        try:
            return pickle.dumps((self.lm.model, self.lm.tokenizer))
        except Exception as e:
            raise SokhanError(f"the model cannot be copied into the batching process ({type(e).__name__}: {e}); "
                              "serve it with --max-batch 1") from None

    def start(self) -> None:
        """Start the child (again, if it died) and the thread that reads what it sends."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        """`start` with the lock held."""
        if self._broken is not None:
            return
        if self._process is not None:
            if self._process.is_alive():
                return
            self._lose()  # before its reader saw it die
        context = multiprocessing.get_context("spawn")  # not fork: this process runs threads (torch's, HTTP's)
        ours, theirs = context.Pipe()
        state, self._first_state = self._first_state or self._state(), None  # pickled once for the first child
        self._process = context.Process(target=run_batches, args=(state, self.rows, torch.get_num_threads(),
                                                                 theirs), name="sokhan-batch", daemon=True)
        self._process.start()
        theirs.close()
        self._conn = ours
        threading.Thread(target=self._read, args=(ours, self._process), name="sokhan-batch-reader",
                         daemon=True).start()

    def close(self) -> None:
        """Stop the child; the jobs it had are cancelled (their clients are gone with the server)."""
        with self._lock:
            process, conn, self._process, self._conn = self._process, self._conn, None, None
            live, self._live = self._live, {}
            self._started.clear()
            self._joined.clear()
        for job in live.values():
            job.drop()
        if process is None:
            return
        with contextlib.suppress(OSError):
            conn.send(("stop",))
        stop(process)
        conn.close()

    def submit(self, job: SampleJob) -> None:
        """Hand `job` to the child (started first if need be), or fail it at once if no child can load the model."""
        job_id = next(self._ids)
        job.on_abandon = lambda: self._cancel(job_id)
        with self._lock:  # one hold: a child that dies now fails this job too (`_lose`), or a new one gets it
            self._start()
            if self._broken is not None:
                hand_over([(job, ("error", unavailable(self._broken, retry=False)))])
                return
            self._live[job_id] = job
            self._send(("add", job_id, job.prompt_ids, job.cfg))

    def waiting(self) -> int:
        """Jobs submitted that have no row yet."""
        with self._lock:
            return len(self._live) - len(self._started)

    def running(self) -> int:
        """Jobs being decoded now."""
        with self._lock:
            return len(self._started)

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            if self._live.pop(job_id, None) is not None:
                self._started.discard(job_id)
                self._joined.pop(job_id, None)
                self._send(("cancel", job_id))

    def _send(self, message: tuple) -> None:
        """With the lock held. A child that died is seen by the reader, which fails its jobs."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(message)

    def _read(self, conn: Connection, process: multiprocessing.process.BaseProcess) -> None:
        """Hand what the child sends to the requests' event loops, until it stops (or sends what cannot be read:
        then it is stopped, and its jobs fail)."""
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            except Exception:  # OSError, or a message that does not unpickle
                process.kill()
                break
            if message[0] == "failed":
                with self._lock:
                    self._broken = (f"the batching process could not load the model ({message[1]}); serve it with "
                                    "--max-batch 1")
                break
            if message[0] == "events":
                self._deliver(message[1])
        stop(process)
        with self._lock:
            if self._process is process:  # not closed on purpose, nor replaced by `start` already
                self._lose()

    def _deliver(self, events: list[tuple[int, Event]]) -> None:
        handed: list[tuple[Job, Event]] = []
        with self._lock:
            for job_id, event in events:
                job = self._live.get(job_id)
                if job is None:  # its client left
                    continue
                now = time.perf_counter()
                if job_id not in self._started:
                    self._started.add(job_id)
                    self._joined[job_id] = now
                if event[0] != "text":
                    del self._live[job_id]
                    self._started.discard(job_id)
                    joined = self._joined.pop(job_id, now)
                    self.seconds_per_job += 0.2 * (now - joined - self.seconds_per_job)
                handed.append((job, event))
        hand_over(handed)

    def _lose(self) -> None:
        """With the lock held, when the child has stopped: every job it had ends with an error."""
        process, self._process, self._conn = self._process, None, None
        lost, self._live = self._live, {}
        self._started.clear()
        self._joined.clear()
        why = self._broken or f"the batching process stopped (exit code {process.exitcode}); try again"
        hand_over([(job, ("error", unavailable(why, retry=self._broken is None))) for job in lost.values()])


def stop(process: multiprocessing.process.BaseProcess) -> None:
    """Wait for the child to end, and end it if it does not (so that two never hold the model's memory)."""
    process.join(STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def unavailable(why: str, retry: bool) -> APIError:
    """What a job's client gets when the batching process is gone: a 503, to be tried again in a second if a new
    child may serve it."""
    return APIError(503, why, None, "model_unavailable", type="server_error",
                    headers={"Retry-After": "1"} if retry else None)
