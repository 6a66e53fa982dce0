"""What the server asks of its model: a streamed `Job` (a `SampleJob` samples a reply) or a short `Call`.

A request's coroutine submits one to the `ModelWorker` and awaits its events (a job) or its
future (a call); the model's side, a thread or the batching process, runs it and hands the
results back to the request's event loop with `loop.call_soon_threadsafe`, as the loop is
the only thread that may touch its queues and futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
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
    event loop consumes them. A completion or a chat reply is a `SampleJob`.
    """

    def __init__(self, pieces: Callable[[LanguageModel, Callable[[], bool]], Iterable[str]],
                 result: Callable[[], Any], loop: asyncio.AbstractEventLoop):
        self.pieces, self.result, self.loop = pieces, result, loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()
        self.on_abandon: Callable[[], None] | None = None  # tells whoever runs the job (a `BatchProcess`)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def abandon(self) -> None:
        """From the event loop, when the client is gone or the reply is over: stop, and wake the reader.

        Safe at any time and any number of times; a finished job ignores it.
        """
        if not self._cancel.is_set():
            self._cancel.set()
            if self.on_abandon is not None:
                self.on_abandon()
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

    Alone it runs `stream_text`; batched, a `BatchProcess` decodes it as a row, with the same text rules.
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


def hand_over(events: list[tuple[Job, tuple[str, Any]]]) -> None:
    """From any thread: the events to their jobs' event loops, one wake-up per loop."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[Job, tuple[str, Any]]]] = {}
    for job, event in events:
        loops.setdefault(job.loop, []).append((job, event))
    for loop, handed in loops.items():
        try:
            loop.call_soon_threadsafe(deliver, handed)
        except RuntimeError:  # the loop is closed: the server is shutting down, nobody is listening
            for job, _ in handed:
                job._cancel.set()


def deliver(events: list[tuple[Job, tuple[str, Any]]]) -> None:
    """On the event loop: each job's events into its queue."""
    for job, event in events:
        job.events.put_nowait(event)
