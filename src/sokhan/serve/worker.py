"""The model's one worker thread: generation off the event loop, requests in arrival order; batched replies apart.

Sampling is CPU-bound (or one GPU stream), so running two generations on two threads would only
split the same compute and race on the weights. The server therefore owns the model through a
single thread that takes jobs from a FIFO queue: the queue is the lock around the model. Unlike a
plain `threading.Lock`, which wakes waiters in no particular order, it serves clients in arrival
order, so no stream starves under load.

With `max_batch` > 1 and a model that can (`capabilities.batch_decodes`: a GPT), the sampling
jobs (completions, chat replies) do not go to this thread: a `BatchProcess` decodes up to
`max_batch` of them together in a process of its own, on its own copy of the weights
(`batch_process.py`). Everything else (a streamed translation, a `Call`) runs here, one at a
time, beside the batch. Other families (recurrent, n-gram, the translator) and `max_batch` 1 run
every job here, one at a time.

The event loop never runs model code: the worker hands each text piece back with
`loop.call_soon_threadsafe`, and the request's coroutine awaits an `asyncio.Queue`. A client
that goes away cancels its job; the worker checks that flag before every token, so the model is
free for the next request within one token's time.

A streamed translation is a `Job` too, its pieces from the greedy decoder instead of the
sampler; its flag is checked at every piece, and a translation is bounded by the context.
Short model calls that are not generation (the inspector's attention maps and next-token
probabilities, a translation not streamed) go through the same queue as a `Call`, so they
never run on the weights while a reply is being sampled here, and wait their turn like any
other request.

The queue itself is unbounded; the server looks at `waiting()` before it submits and refuses
(429) past its limit, telling the client `expected_wait()`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig
from sokhan.serve.batch_process import BatchProcess
from sokhan.serve.jobs import Call, Job, SampleJob


class ModelWorker:
    """Owns the LanguageModel; `submit` queues a Job (and `call` a Call) that the one worker thread runs in turn, or,
    when batching, hands a sampling job to the `BatchProcess` (see the module's docstring)."""

    def __init__(self, lm: LanguageModel, max_batch: int = 1):
        self.lm = lm
        self.max_batch = max_batch if lm.capabilities.batch_decodes else 1
        self.batch = BatchProcess(lm, self.max_batch) if self.max_batch > 1 else None
        self._jobs: deque[Job | Call] = deque()
        self._changed = threading.Condition()  # guards `_jobs` and `_closing`; notified when either changes
        self._closing = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.seconds_per_job = 0.0  # a moving average of how long one job or call holds the thread

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                with self._changed:
                    self._closing = False
                self._thread = threading.Thread(target=self._run, name="sokhan-model", daemon=True)
                self._thread.start()
        if self.batch is not None:
            self.batch.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current job (the batch: at once, its jobs cancelled); queued jobs are dropped (their
        clients are gone with the server)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            with self._changed:
                while self._jobs:
                    self._jobs.popleft().drop()
                self._closing = True
                self._changed.notify()
            thread.join(timeout)
        if self.batch is not None:
            self.batch.close()

    def submit(self, prompt_ids: list[int], cfg: SampleConfig) -> Job:
        """Queue sampling a continuation of `prompt_ids` (batching: hand it to the batch)."""
        job = SampleJob(prompt_ids, cfg, asyncio.get_running_loop())
        if self.batch is None:
            return self.submit_job(job)
        self.batch.submit(job)
        return job

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
        """Jobs and calls in the queue, not started, whose clients still want them (batching: and the sampling
        jobs that wait for a row)."""
        with self._changed:
            queued = sum(1 for job in self._jobs if not job.cancelled)
        return queued + (0 if self.batch is None else self.batch.waiting())

    def running(self) -> int:
        """Sampling jobs being decoded together now (0 when not batching)."""
        return 0 if self.batch is None else self.batch.running()

    def expected_wait(self) -> float:
        """Seconds until the queue as it stands is served, by the recent time per job (batched: `max_batch` rows
        free up in that time)."""
        with self._changed:
            queued = sum(1 for job in self._jobs if not job.cancelled)
        wait = queued * self.seconds_per_job
        if self.batch is not None:
            wait = max(wait, self.batch.waiting() * self.batch.seconds_per_job / self.max_batch)
        return wait

    def _put(self, job: Job | Call) -> None:
        self.start()
        with self._changed:
            self._jobs.append(job)
            self._changed.notify()

    def _next(self) -> Job | Call | None:
        """The first queued job or call still wanted, taken from the queue, after waiting for one; None when the
        worker is closing."""
        with self._changed:
            while not self._closing:
                while self._jobs and self._jobs[0].cancelled:  # its client left while it waited in the queue
                    self._jobs.popleft()
                if self._jobs:
                    return self._jobs.popleft()
                self._changed.wait()
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            start = time.perf_counter()
            job.run(self.lm)
            self.seconds_per_job += 0.2 * (time.perf_counter() - start - self.seconds_per_job)
