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
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from sokhan.api import LanguageModel
from sokhan.infer.sampling import SampleConfig, StreamStats, stream_text


class Job:
    """One request's generation. `await next_event()` gives ("text", piece)… then one of
    ("done", StreamStats), ("error", exception) or ("cancelled", None).

    The worker thread produces the events; the request's event loop consumes them.
    """

    def __init__(self, prompt_ids: list[int], cfg: SampleConfig, loop: asyncio.AbstractEventLoop):
        self.prompt_ids, self.cfg, self.loop = prompt_ids, cfg, loop
        self.progress = StreamStats()
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


class ModelWorker:
    """Owns the LanguageModel; `submit` queues a Job that the one worker thread runs in turn."""

    def __init__(self, lm: LanguageModel):
        self.lm = lm
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

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
                    job._cancel.set()
                    job.emit("cancelled", None)
            self._jobs.put(None)
            thread.join(timeout)

    def submit(self, prompt_ids: list[int], cfg: SampleConfig) -> Job:
        self.start()
        job = Job(prompt_ids, cfg, asyncio.get_running_loop())
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancelled:  # its client left while it waited in the queue
                continue
            try:
                for piece in stream_text(self.lm.model, self.lm.tokenizer, job.prompt_ids, job.cfg, job.progress,
                                         job._cancel.is_set):
                    job.emit("text", piece)
                    if job.cancelled:
                        break
            except Exception as e:  # noqa: BLE001 - handed to the request, which turns it into an error reply
                job.emit("error", e)
            else:
                job.emit("done", job.progress)
