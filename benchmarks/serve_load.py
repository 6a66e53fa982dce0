"""Load test for `sokhan serve`: N concurrent streaming chat clients for a fixed time.

Starts `sokhan serve` on a model folder in a subprocess on 127.0.0.1 (so the clients do not
share the server's interpreter and GIL), then runs N asyncio clients, each sending streaming
chat completions back to back until the time is up (requests in flight then finish). It
prints the requests completed, the errors (any non-200, error event or stream without
`[DONE]`; must be 0), time to first token (p50/p95) and generated tokens per second overall.

    python benchmarks/serve_load.py                       # trains a tiny model first (seconds)
    python benchmarks/serve_load.py runs/demo/pretrain --clients 16 --duration 20

The model serves one request at a time (its worker thread is the lock), so time to first
token grows with the number of clients while tokens/s stays the model's own speed: the
figures show the queueing, not batching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the tests' helpers train a tiny model when none is given
PROMPTS = ["سلام، حالت چطور است؟", "یک بیت از حافظ بخوان.", "دل", "از عشق بگو.", "الا یا ایها الساقی"]


@dataclass
class Stats:
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    tokens: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def one_request(client: httpx.AsyncClient, url: str, body: dict, stats: Stats) -> None:
    start = time.perf_counter()
    first = None
    done = False
    usage = None
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                stats.errors.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    stats.errors.append(f"error event: {chunk['error']}")
                    return
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter()
    except httpx.HTTPError as e:
        stats.errors.append(f"{type(e).__name__}: {e}")
        return
    if not done:
        stats.errors.append("stream ended without [DONE]")
        return
    end = time.perf_counter()
    stats.completed += 1
    stats.latency.append(end - start)
    stats.ttft.append((first or end) - start)  # an empty reply: its "first token" is the end
    stats.tokens += usage["completion_tokens"] if usage else 0


async def client_loop(i: int, client: httpx.AsyncClient, url: str, deadline: float, max_tokens: int,
                      stats: Stats) -> None:
    n = 0
    while time.perf_counter() < deadline:
        body = {"model": "bench", "messages": [{"role": "user", "content": PROMPTS[(i + n) % len(PROMPTS)]}],
                "max_tokens": max_tokens, "temperature": 0.8, "seed": i * 1000 + n, "stream": True,
                "stream_options": {"include_usage": True}}
        await one_request(client, url, body, stats)
        n += 1


async def run_load(base: str, clients: int, duration: float, max_tokens: int) -> tuple[Stats, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(120.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(client_loop(i, client, base + "/v1/chat/completions", deadline, max_tokens, stats)
                               for i in range(clients)))
        elapsed = time.perf_counter() - start
    return stats, elapsed


def start_server(model: Path, port: int, threads: int | None) -> subprocess.Popen:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "sokhan", "serve", str(model), "--port", str(port), "--model-name", "bench"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model or run folder (default: train a tiny one first)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds during which clients send requests")
    ap.add_argument("--max-tokens", type=int, default=None, help="per request (default: min(64, model context))")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the server")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            sys.path.insert(0, str(TESTS))
            from helpers import train_tiny_model  # torch and the recipes: loaded only when a model is to be trained

            print("training a tiny model (no model folder given)...", flush=True)
            model = train_tiny_model(Path(tmp) / "tiny", max_steps=60)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(model, port, args.threads)
        try:
            info = wait_ready(base, proc)
            max_tokens = args.max_tokens or min(64, info["max_tokens_cap"])
            print(f"model {model} (context {info['context']}), {args.clients} clients, {args.duration:.0f} s, "
                  f"max_tokens {max_tokens}, {os.cpu_count()} CPUs", flush=True)
            stats, elapsed = asyncio.run(run_load(base, args.clients, args.duration, max_tokens))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"requests completed: {stats.completed} in {elapsed:.1f} s ({stats.completed / elapsed:.1f} req/s)")
    print(f"errors: {len(stats.errors)}")
    for e in stats.errors[:5]:
        print(f"  {e}")
    print(f"time to first token: p50 {percentile(stats.ttft, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(stats.ttft, 0.95) * 1000:.0f} ms")
    if stats.latency:
        print(f"request latency: p50 {percentile(stats.latency, 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(stats.latency, 0.95) * 1000:.0f} ms, "
              f"mean {statistics.fmean(stats.latency) * 1000:.0f} ms")
    print(f"tokens generated: {stats.tokens} ({stats.tokens / elapsed:.0f} tokens/s overall)")
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
