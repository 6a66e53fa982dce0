"""The model's one worker thread: generation off the event loop, one request at a time, fair order.

Sampling is CPU-bound (or one GPU stream) and a model with a KV cache cannot interleave two
requests cheaply, so running two generations at once would only split the same compute and
race on the weights. The server therefore owns the model through a single thread that takes
jobs from a FIFO queue: the queue is the lock around the model. Unlike a plain
`threading.Lock`, which wakes waiters in no particular order, it serves clients in arrival
order, so no stream starves under load.

The event loop never runs model code: the worker hands each text piece back with
`loop.call_soon_threadsafe`, and the request's coroutine awaits an `asyncio.Queue`. A client
that goes away cancels its job; the worker checks that flag before every token, so the model
is free for the next request within one token's time.

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
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig
from sokhan.infer.sampling import StreamStats, stream_text


class Job:
    """One request's streamed reply. `await next_event()` gives ("text", piece)… then one of
    ("done", result), ("error", exception) or ("cancelled", None).

    The worker thread produces the events: the pieces of `pieces(lm, cancelled)` (which may poll
    `cancelled()` between tokens), then `result()` (what the reply says it cost); the request's
    event loop consumes them. `sample` makes the job of a completion or a chat reply.
    """

    def __init__(self, pieces: Callable[[LanguageModel, Callable[[], bool]], Iterable[str]],
                 result: Callable[[], Any], loop: asyncio.AbstractEventLoop):
        self.pieces, self.result, self.loop = pieces, result, loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()

    @classmethod
    def sample(cls, prompt_ids: list[int], cfg: SampleConfig, loop: asyncio.AbstractEventLoop) -> Job:
        """Sampling a continuation of `prompt_ids`; the result is its `StreamStats` (tokens, finish reason)."""
        progress = StreamStats()
        return cls(lambda lm, cancelled: stream_text(lm.model, lm.tokenizer, prompt_ids, cfg, progress, cancelled),
                   lambda: progress, loop)

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


class ModelWorker:
    """Owns the LanguageModel; `submit` queues a Job (and `call` a Call) that the one worker thread runs in turn."""

    def __init__(self, lm: LanguageModel):
        self.lm = lm
        self._jobs: queue.Queue[Job | Call | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.seconds_per_job = 0.0  # a moving average of how long one job or call holds the model

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sokhan-model", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current job; queued jobs are dropped (their clients are gone with the server)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            while True:  # cancel what is waiting so the sentinel comes next
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.drop()
            self._jobs.put(None)
            thread.join(timeout)

    def submit(self, prompt_ids: list[int], cfg: SampleConfig) -> Job:
        """Queue sampling a continuation of `prompt_ids`."""
        return self.submit_job(Job.sample(prompt_ids, cfg, asyncio.get_running_loop()))

    def submit_job(self, job: Job) -> Job:
        """Queue any streamed job (a translation's, say); it runs in turn with the others."""
        self.start()
        self._jobs.put(job)
        return job

    def call(self, fn: Callable[[LanguageModel], Any]) -> Call:
        """Queue `fn(lm)` to run on the worker thread, in turn with generation; await `call.future`."""
        self.start()
        call = Call(fn, asyncio.get_running_loop())
        self._jobs.put(call)
        return call

    def waiting(self) -> int:
        """Jobs and calls in the queue, not started, whose clients still want them."""
        with self._jobs.mutex:
            return sum(1 for job in self._jobs.queue if job is not None and not job.cancelled)

    def expected_wait(self) -> float:
        """Seconds until the queue as it stands is served, by the recent time per job."""
        return self.waiting() * self.seconds_per_job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancelled:  # its client left while it waited in the queue
                continue
            start = time.perf_counter()
            job.run(self.lm)
            self.seconds_per_job += 0.2 * (time.perf_counter() - start - self.seconds_per_job)
