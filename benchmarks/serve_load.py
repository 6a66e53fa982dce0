"""Load test for `sokhan serve`: N concurrent streaming chat clients for a fixed time, one request at a time
against continuous batching in the same run.

Starts two `sokhan serve` on a model folder, each in a subprocess on 127.0.0.1 (so the clients
do not share a server's interpreter and GIL): one that decodes one request at a time
(`--max-batch 1`), one that decodes up to `--max-batch` replies together (a GPT's continuous
batching in a process of its own, `serve/batch_process.py`). Then N asyncio clients, each sending
streaming chat completions back to back until the time is up (requests in flight then finish),
load one server and then the other, in alternating blocks, so that a machine that slows down or speeds up during the run
does so for both. For each server it reports:

* failed requests (a non-200, an error event, a broken connection or line) and truncated
  streams (ended without `[DONE]`): both must be 0;
* time to first token (p50/p95) and generated tokens per second overall;
* the server's resident memory (with its batching process) after the warm-up and at the end, which must stay
  within 20 %;

then the issue's targets, batched against one at a time: aggregate tokens/s ≥ 4×, p95 time
to first token lower, and the same greedy replies from both (N greedy chats sent to each server
at once, so the batched one decodes them together).

    python benchmarks/serve_load.py                       # trains a tiny model first (seconds)
    python benchmarks/serve_load.py runs/demo/pretrain --clients 64 --seconds 300

One at a time, time to first token grows with the number of clients while tokens/s stays the
model's own speed at batch 1: the figures show the queueing. The exit status is 1 when a check
fails (the speed targets are reported, not checked). `run_load` is also the test suite's short
version (tests/test_serve_abuse.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the tests' helpers train a tiny model when none is given
PROMPTS = ["سلام، حالت چطور است؟", "یک بیت از حافظ بخوان.", "دل", "از عشق بگو.", "الا یا ایها الساقی"]
MAX_RSS_GROWTH = 0.20  # resident memory at the end vs after the warm-up
SPEEDUP_TARGET = 4.0  # the issue's: batched aggregate tokens/s against one at a time, 16 clients


@dataclass
class Report:
    completed: int = 0
    failed: list[str] = field(default_factory=list)
    truncated: int = 0
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    tokens: int = 0
    elapsed: float = 0.0
    rss_warm: int | None = None  # bytes, after the warm-up
    rss_end: int | None = None

    @property
    def rss_growth(self) -> float | None:
        if not self.rss_warm or self.rss_end is None:
            return None
        return self.rss_end / self.rss_warm - 1

    @property
    def ok(self) -> bool:
        growth = self.rss_growth
        return not self.failed and not self.truncated and (growth is None or growth <= MAX_RSS_GROWTH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_bytes(pid: int) -> int | None:
    """The resident set size of the process and its children (the batching process), from Linux's /proc; None
    elsewhere."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
    except OSError:
        return None
    line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), None)
    if line is None:
        return None
    return int(line.split()[1]) * 1024 + sum(resident_bytes(c) or 0 for c in children)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def one_request(client: httpx.AsyncClient, url: str, body: dict, report: Report) -> None:
    start = time.perf_counter()
    first = None
    done = False
    usage = None
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                report.failed.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                return
            async for line in r.aiter_lines():
                if not line:
                    continue
                if not line.startswith("data: "):
                    report.failed.append(f"not an SSE data line: {line[:100]!r}")
                    return
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    report.failed.append(f"error event: {chunk['error']}")
                    return
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter()
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        report.failed.append(f"{type(e).__name__}: {e}")
        return
    if not done:
        report.truncated += 1
        return
    end = time.perf_counter()
    report.completed += 1
    report.latency.append(end - start)
    report.ttft.append((first or end) - start)  # an empty reply: its "first token" is the end
    report.tokens += usage["completion_tokens"] if usage else 0


async def client_loop(i: int, client: httpx.AsyncClient, url: str, deadline: float, max_tokens: int,
                      report: Report) -> None:
    n = 0
    while time.perf_counter() < deadline:
        body = {"model": "bench", "messages": [{"role": "user", "content": PROMPTS[(i + n) % len(PROMPTS)]}],
                "max_tokens": max_tokens, "temperature": 0.8, "seed": i * 1000 + n, "stream": True,
                "stream_options": {"include_usage": True}}
        await one_request(client, url, body, report)
        n += 1


async def run_load(base: str, clients: int, seconds: float, max_tokens: int, warmup: float,
                   pid: int | None = None) -> Report:
    """`clients` streaming clients against the server at `base` for `seconds`; `pid` is the server's
    process, whose memory is read `warmup` seconds in and once every client has finished."""
    report = Report()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0, connect=10.0)

    async def after_warmup() -> None:
        await asyncio.sleep(warmup)
        report.rss_warm = resident_bytes(pid) if pid else None

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        deadline = start + seconds
        sampler = asyncio.create_task(after_warmup())
        await asyncio.gather(*(client_loop(i, client, base + "/v1/chat/completions", deadline, max_tokens, report)
                               for i in range(clients)))
        report.elapsed = time.perf_counter() - start
        await sampler
    report.rss_end = resident_bytes(pid) if pid else None
    return report


async def greedy_replies(base: str, clients: int, max_tokens: int) -> list[str]:
    """One greedy chat reply per client, all sent at once (a batching server decodes them together)."""
    async def reply(client: httpx.AsyncClient, i: int) -> str:
        body = {"model": "bench", "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({i})"}],
                "max_tokens": max_tokens, "temperature": 0}
        r = await client.post(base + "/v1/chat/completions", json=body)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        return list(await asyncio.gather(*(reply(client, i) for i in range(clients))))


def start_server(model: Path, port: int, threads: int | None, max_batch: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sokhan", "serve", str(model), "--port", str(port), "--model-name", "bench",
           "--max-batch", str(max_batch)] + (["--threads", str(threads)] if threads else [])
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            return httpx.get(base + "/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not start in time")


def print_report(report: Report) -> None:
    elapsed = report.elapsed or float("nan")
    print(f"requests completed: {report.completed} in {elapsed:.1f} s ({report.completed / elapsed:.1f} req/s)")
    print(f"failed: {len(report.failed)}, truncated streams: {report.truncated}")
    for e in report.failed[:5]:
        print(f"  {e}")
    print(f"time to first token: p50 {percentile(report.ttft, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(report.ttft, 0.95) * 1000:.0f} ms")
    if report.latency:
        print(f"request latency: p50 {percentile(report.latency, 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(report.latency, 0.95) * 1000:.0f} ms, "
              f"mean {statistics.fmean(report.latency) * 1000:.0f} ms")
    print(f"tokens generated: {report.tokens} ({report.tokens / elapsed:.0f} tokens/s overall)")
    if report.rss_growth is not None:
        print(f"server resident memory: {report.rss_warm / 2**20:.0f} MiB after the warm-up, "
              f"{report.rss_end / 2**20:.0f} MiB at the end ({report.rss_growth:+.1%}; at most "
              f"{MAX_RSS_GROWTH:+.0%})")


@contextlib.contextmanager
def served(model: Path, threads: int | None, max_batch: int) -> Iterator[tuple[str, subprocess.Popen, dict]]:
    """`sokhan serve` decoding up to `max_batch` replies together: (its URL, its process, its /health)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(model, port, threads, max_batch)
    try:
        yield base, proc, wait_ready(base, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def merged(reports: list[Report]) -> Report:
    """One report of a server's blocks: the memory after the first block's warm-up and after the last block."""
    out = Report(rss_warm=reports[0].rss_warm, rss_end=reports[-1].rss_end)
    for r in reports:
        out.completed, out.truncated, out.tokens = out.completed + r.completed, out.truncated + r.truncated, \
            out.tokens + r.tokens
        out.elapsed += r.elapsed
        out.failed += r.failed
        out.ttft += r.ttft
        out.latency += r.latency
    return out


def compare(single: Report, batched: Report, same_greedy: int, clients: int) -> None:
    """The issue's targets: aggregate tokens/s ≥ 4×, p95 time to first token lower, the same greedy replies."""
    speed = [r.tokens / r.elapsed if r.elapsed else float("nan") for r in (single, batched)]
    ratio = speed[1] / speed[0]
    p95 = [percentile(r.ttft, 0.95) * 1000 for r in (single, batched)]
    print(f"\nbatched against one at a time: {speed[1]:.0f} against {speed[0]:.0f} tokens/s overall, {ratio:.2f}× "
          f"(target ≥ {SPEEDUP_TARGET:g}×: {'met' if ratio >= SPEEDUP_TARGET else 'not met'})")
    print(f"time to first token p95: {p95[1]:.0f} ms against {p95[0]:.0f} ms (target lower: "
          f"{'met' if p95[1] < p95[0] else 'not met'}); p50 {percentile(batched.ttft, 0.5) * 1000:.0f} ms against "
          f"{percentile(single.ttft, 0.5) * 1000:.0f} ms")
    print(f"greedy replies identical batched and alone: {same_greedy}/{clients}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model or run folder (default: train a tiny one first)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="seconds during which clients send requests, to each server")
    ap.add_argument("--blocks", type=int, default=4,
                    help="the seconds of each server are cut into this many blocks, taken in turn (machine drift "
                         "falls on both alike)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the memory is first read (default: a tenth of --seconds, at most 30 and at "
                         "most a block)")
    ap.add_argument("--max-tokens", type=int, default=None, help="per request (default: min(64, model context))")
    ap.add_argument("--threads", type=int, default=None,
                    help="the servers' --threads (default: theirs, all cores but one)")
    ap.add_argument("--max-batch", type=int, default=16, help="replies the batched server decodes together")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else min(30.0, args.seconds / 10)

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            sys.path.insert(0, str(TESTS))
            from helpers import train_tiny_model  # torch and the recipes: loaded only when a model is to be trained

            print("training a tiny model (no model folder given)...", flush=True)
            model = train_tiny_model(Path(tmp) / "tiny", max_steps=60)
        with served(model, args.threads, 1) as single, served(model, args.threads, args.max_batch) as batched:
            info = single[2]
            max_tokens = args.max_tokens or min(64, info["max_tokens_cap"])
            block = args.seconds / args.blocks
            warmup = min(warmup, block)
            print(f"model {model} (context {info['context']}), {args.clients} clients, {args.seconds:.0f} s against "
                  f"each server in {args.blocks} alternating blocks (warm-up {warmup:.0f} s), max_tokens {max_tokens}, "
                  f"{os.cpu_count()} CPUs", flush=True)
            blocks: list[list[Report]] = [[], []]
            for _ in range(args.blocks):
                for reports, (base, proc, _) in zip(blocks, (single, batched)):
                    reports.append(asyncio.run(run_load(base, args.clients, block, max_tokens, warmup, proc.pid)))
            greedy = [asyncio.run(greedy_replies(base, args.clients, max_tokens)) for base, _, _ in (single, batched)]

    reports = [merged(b) for b in blocks]
    for title, report in zip(("one request at a time", f"up to {args.max_batch} replies decoded together"), reports):
        print(f"\n{title}:")
        print_report(report)
    same = sum(a == b for a, b in zip(*greedy))
    compare(*reports, same, args.clients)
    return 0 if all(r.ok for r in reports) and same == args.clients else 1


if __name__ == "__main__":
    sys.exit(main())
