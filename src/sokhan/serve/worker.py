"""The model's one worker thread: generation off the event loop, requests in arrival order, batched when it can.

Sampling is CPU-bound (or one GPU stream), so running two generations on two threads would only
split the same compute and race on the weights. The server therefore owns the model through a
single thread that takes jobs from a FIFO queue: the queue is the lock around the model. Unlike a
plain `threading.Lock`, which wakes waiters in no particular order, it serves clients in arrival
order, so no stream starves under load.

With `max_batch` > 1 and a model that can (`capabilities.batch_decodes`: a GPT), that thread
decodes up to `max_batch` sampling jobs together (continuous batching, `infer/batching.py`): one
forward pass gives every reply its next token, a new job joins the batch between two steps (its
prompt prefilled alone, its first token sent at once), and a finished or cancelled one leaves
between two steps. A job waits in the queue only while every row is taken. Other work (a
streamed translation, a `Call`) runs whole between two steps, in its turn. Other families
(recurrent, n-gram, the translator) and `max_batch` 1 run one job at a time.

The event loop never runs model code: the worker hands each text piece back with
`loop.call_soon_threadsafe` (batched: the pieces of every job together, at most every 50 ms,
see `Outbox`), and the request's coroutine awaits an `asyncio.Queue`. A client
that goes away cancels its job; the worker checks that flag before every token (batched: before
every step), so the model, or the job's row, is free for the next request within one token's time.

A streamed translation is a `Job` too, its pieces from the greedy decoder instead of the
sampler; its flag is checked at every piece, and a translation is bounded by the context.
Short model calls that are not generation (the inspector's attention maps and next-token
probabilities, a translation not streamed) go through the same queue as a `Call`, so they
never run on the weights while a reply is being sampled, and wait their turn like any other
request.

The queue itself is unbounded; the server looks at `waiting()` before it submits and refuses
(429) past its limit, telling the client `expected_wait()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.batching import BatchedDecoder, Sequence
from sokhan.infer.sampling import StreamStats, TextStream, stream_text

FLUSH_SECONDS = 0.05  # a batch hands its jobs' text pieces to the event loop at most this often (see `Outbox`)


class Job:
    """One request's streamed reply. `await next_event()` gives ("text", piece)… then one of
    ("done", result), ("error", exception) or ("cancelled", None).

    The worker thread produces the events: the pieces of `pieces(lm, cancelled)` (which may poll
    `cancelled()` between tokens), then `result()` (what the reply says it cost); the request's
    event loop consumes them. A completion or a chat reply is a `SampleJob`.
    """

    def __init__(self, pieces: Callable[[LanguageModel, Callable[[], bool]], Iterable[str]],
                 result: Callable[[], Any], loop: asyncio.AbstractEventLoop):
        self.pieces, self.result, self.loop = pieces, result, loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def abandon(self) -> None:
        """From the event loop, when the client is gone or the reply is over: stop, and wake the reader.

        Safe at any time and any number of times; a finished job ignores it.
        """
        if not self._cancel.is_set():
            self._cancel.set()
            self.events.put_nowait(("cancelled", None))

    def emit(self, kind: str, value: Any) -> None:
        """From the worker thread: hand one event to the request's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is shutting down, nobody is listening
            self._cancel.set()

    async def next_event(self) -> tuple[str, Any]:
        return await self.events.get()

    def ready_event(self) -> tuple[str, Any] | None:
        """The next event if it is in already, else None (without waiting)."""
        try:
            return self.events.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def drop(self) -> None:
        """From the worker side, when the server stops before the job ran."""
        self._cancel.set()
        self.emit("cancelled", None)

    def run(self, lm: LanguageModel) -> None:
        """On the worker thread: produce the pieces, handing each to the event loop."""
        pieces = iter(())
        try:
            pieces = iter(self.pieces(lm, self._cancel.is_set))
            for piece in pieces:
                self.emit("text", piece)
                if self.cancelled:
                    break
            result = self.result()
        except Exception as e:
            self.emit("error", e)
        else:
            self.emit("done", result)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:  # a generator left early: its cleanup runs here, on this thread
                close()


class SampleJob(Job):
    """Sampling a continuation of `prompt_ids`; the result is its `StreamStats` (tokens, finish reason).

    Alone it runs `stream_text`; in a batch the worker decodes it as a row (`Batch`), with the same text rules.
    """

    def __init__(self, prompt_ids: list[int], cfg: SampleConfig, loop: asyncio.AbstractEventLoop):
        self.prompt_ids, self.cfg, self.progress = prompt_ids, cfg, StreamStats()
        super().__init__(lambda lm, cancelled: stream_text(lm.model, lm.tokenizer, prompt_ids, cfg, self.progress,
                                                           cancelled),
                         lambda: self.progress, loop)


class Call:
    """One short model call (`fn(lm)`) queued with the generation jobs; its result comes back in `future`
    (cancelled if the request gave up on it, or the server stopped before it ran)."""

    def __init__(self, fn: Callable[[LanguageModel], Any], loop: asyncio.AbstractEventLoop):
        self.fn, self.loop = fn, loop
        self.future: asyncio.Future[Any] = loop.create_future()

    @property
    def cancelled(self) -> bool:
        return self.future.done()  # not waited for any more: the worker skips it

    def abandon(self) -> None:
        """From the event loop, when the client is gone or the reply is over (like `Job.abandon`)."""
        self.future.cancel()  # a finished call ignores it

    def _settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """On the event loop: deliver, unless the request stopped waiting."""
        if not self.future.done():
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

    def _send(self, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self._settle, *args)

    def drop(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.future.cancel)

    def run(self, lm: LanguageModel) -> None:
        try:
            result = self.fn(lm)
        except Exception as e:
            self._send(None, e)
        else:
            self._send(result)


class Outbox:
    """The events of a batch's jobs, handed to the requests' event loop together.

    Every hand-over wakes the loop (`call_soon_threadsafe` writes to its self-pipe), and every event
    is a server-sent event to write and a chunk for the client to parse: with a small model these
    cost more than its step does for the token. So a job's text pieces wait here and go out joined,
    at most every `interval` seconds (50 ms: 20 updates a second, smoother than anyone reads); what a
    client waits for, its first text and its end, goes out at once. A model slower than that per
    step sends every step's pieces as they come. Measured on the tests' tiny GPT with 16 streaming
    clients (benchmarks/serve_load.py): CPU time per token 176 µs in the server and 95 µs in the
    clients when every step was handed over, 147 µs and 57 µs with 20 ms; on two cores shared with
    the clients, batched tokens/s against one at a time went from 3.40× at 20 ms to 3.80× at 50 ms.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self.events: dict[Job, list[tuple[str, Any]]] = {}  # in order; a job's pieces in a row are joined
        self.urgent = False
        self.sent = time.perf_counter()

    def put(self, job: Job, kind: str, value: Any, urgent: bool = False) -> None:
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
        loops: dict[asyncio.AbstractEventLoop, list[tuple[Job, tuple[str, Any]]]] = {}
        for job, events in self.events.items():
            loops.setdefault(job.loop, []).extend((job, event) for event in events)
        for loop, events in loops.items():
            try:
                loop.call_soon_threadsafe(deliver, events)
            except RuntimeError:  # the loop is closed: the server is shutting down, nobody is listening
                for job, _ in events:
                    job._cancel.set()
        self.events, self.urgent, self.sent = {}, False, clock


def deliver(events: list[tuple[Job, tuple[str, Any]]]) -> None:
    """On the event loop: each job's events into its queue."""
    for job, event in events:
        job.events.put_nowait(event)


class Batch:
    """The sampling jobs the worker decodes together: a `BatchedDecoder`, and each job's `TextStream`.

    Each job gets its pieces and its end as it would alone (`stream_text`): its first token after its
    prefill, then one per step; it leaves its row when it is finished, fails, or is cancelled. The
    pieces go to the event loop through an `Outbox`.
    """

    def __init__(self, lm: LanguageModel, rows: int):
        self.tokenizer = lm.tokenizer
        self.decoder = BatchedDecoder(lm.model, rows)
        self.jobs: dict[Sequence, tuple[SampleJob, TextStream, float]] = {}  # and when it joined
        self.outbox = Outbox(FLUSH_SECONDS)
        self.seconds_per_job = 0.0  # a moving average of how long a job keeps its row

    @property
    def full(self) -> bool:
        return self.decoder.full

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, job: SampleJob) -> None:
        """Prefill `job`'s prompt into a free row and send its first piece at once."""
        text = TextStream(self.tokenizer, job.cfg, job.progress)
        if job.cfg.max_new_tokens == 0:
            self._end(job, text.close())
        else:
            try:
                seq, token = self.decoder.add(job.prompt_ids, job.cfg)
            except Exception as e:
                self.outbox.put(job, "error", e)
            else:
                self.jobs[seq] = (job, text, time.perf_counter())
                self._advance(seq, token)
        self.outbox.send()

    def step(self) -> None:
        """Drop the cancelled jobs, then one token for every other one."""
        for seq, (job, _, _) in list(self.jobs.items()):
            if job.cancelled:
                self._leave(seq)
        if not self.jobs:
            return
        try:
            outcomes = self.decoder.step()
        except Exception as e:  # a bug, or out of memory: every job in the step fails, the rows are freed
            outcomes = []
            for seq, (job, _, _) in list(self.jobs.items()):
                self.outbox.put(job, "error", e)
                self._leave(seq)
        for seq, outcome in outcomes:
            if isinstance(outcome, SokhanError):  # its row is freed already
                self.outbox.put(self.jobs.pop(seq)[0], "error", outcome)
            else:
                self._advance(seq, outcome)
        self.outbox.send()

    def drop(self) -> None:
        """The server stops: every job in the batch is cancelled."""
        for seq, (job, _, _) in list(self.jobs.items()):
            job.drop()
            self._leave(seq)

    def _advance(self, seq: Sequence, token: int) -> None:
        job, text, _ = self.jobs[seq]
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

    def _end(self, job: SampleJob, piece: str) -> None:
        if piece:
            self.outbox.put(job, "text", piece)
        self.outbox.put(job, "done", job.progress)

    def _leave(self, seq: Sequence) -> None:
        _, _, joined = self.jobs.pop(seq)
        self.decoder.remove(seq)
        self.seconds_per_job += 0.2 * (time.perf_counter() - joined - self.seconds_per_job)


class ModelWorker:
    """Owns the LanguageModel; `submit` queues a Job (and `call` a Call) that the one worker thread runs in turn,
    decoding up to `max_batch` sampling jobs together when the model can (see the module's docstring)."""

    def __init__(self, lm: LanguageModel, max_batch: int = 1):
        self.lm = lm
        self.max_batch = max_batch if lm.capabilities.batch_decodes else 1
        self._jobs: deque[Job | Call] = deque()
        self._changed = threading.Condition()  # guards `_jobs` and `_closing`; notified when either changes
        self._closing = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.seconds_per_job = 0.0  # a moving average of how long one job or call holds the model (or a row)
        self.batch: Batch | None = None  # the jobs being decoded together, when batching

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                with self._changed:
                    self._closing = False
                self._thread = threading.Thread(target=self._run, name="sokhan-model", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current job (batched: the current step, the batch's jobs cancelled); queued jobs are
        dropped (their clients are gone with the server)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            with self._changed:
                while self._jobs:
                    self._jobs.popleft().drop()
                self._closing = True
                self._changed.notify()
            thread.join(timeout)

    def submit(self, prompt_ids: list[int], cfg: SampleConfig) -> Job:
        """Queue sampling a continuation of `prompt_ids`."""
        return self.submit_job(SampleJob(prompt_ids, cfg, asyncio.get_running_loop()))

    def submit_job(self, job: Job) -> Job:
        """Queue any streamed job (a translation's, say); it runs in turn with the others."""
        self._put(job)
        return job

    def call(self, fn: Callable[[LanguageModel], Any]) -> Call:
        """Queue `fn(lm)` to run on the worker thread, in turn with generation; await `call.future`."""
        call = Call(fn, asyncio.get_running_loop())
        self._put(call)
        return call

    def waiting(self) -> int:
        """Jobs and calls in the queue, not started, whose clients still want them."""
        with self._changed:
            return sum(1 for job in self._jobs if not job.cancelled)

    def running(self) -> int:
        """Sampling jobs being decoded together now (0 when not batching)."""
        batch = self.batch
        return 0 if batch is None else len(batch)

    def expected_wait(self) -> float:
        """Seconds until the queue as it stands is served, by the recent time per job (batched: `max_batch` rows
        free up in that time)."""
        return self.waiting() * self.seconds_per_job / self.max_batch

    def _put(self, job: Job | Call) -> None:
        self.start()
        with self._changed:
            self._jobs.append(job)
            self._changed.notify()

    def _next(self, wait: bool, sampling: bool = True) -> Job | Call | None:
        """The first queued job or call still wanted, taken from the queue; a `SampleJob` only if `sampling`. None
        when there is none (after waiting for one if `wait`) or the worker is closing."""
        with self._changed:
            while not self._closing:
                while self._jobs and self._jobs[0].cancelled:  # its client left while it waited in the queue
                    self._jobs.popleft()
                if self._jobs and (sampling or not isinstance(self._jobs[0], SampleJob)):
                    return self._jobs.popleft()
                if not wait:
                    return None
                self._changed.wait()
            return None

    def _run(self) -> None:
        if self.max_batch > 1:
            self._run_batched()
            return
        while (job := self._next(wait=True)) is not None:
            start = time.perf_counter()
            job.run(self.lm)
            self.seconds_per_job += 0.2 * (time.perf_counter() - start - self.seconds_per_job)

    def _run_batched(self) -> None:
        """Between two steps: take what the queue holds, in order (a sampling job while a row is free; anything else
        runs whole), then step the batch; wait for work only when the batch is empty."""
        batch = self.batch = Batch(self.lm, self.max_batch)
        try:
            while not self._closing:
                job = self._next(wait=not batch, sampling=not batch.full)
                while job is not None:
                    if isinstance(job, SampleJob):
                        batch.add(job)
                    else:
                        batch.outbox.send(now=True)  # nothing waits behind a long call
                        job.run(self.lm)
                    job = self._next(wait=False, sampling=not batch.full)
                batch.step()
                self.seconds_per_job = batch.seconds_per_job
        finally:
            batch.drop()
            self.batch = None
