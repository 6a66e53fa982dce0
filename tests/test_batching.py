"""Continuous batching (`infer/batching.py`, the server's worker): batched decoding equals unbatched decoding.

Every sequence decoded in a batch, whatever joins or leaves it and whenever, must get the tokens
`generate_ids` gives it alone: greedy and seeded sampling, with learned, rotary and sinusoidal
positions, across the context-full window. The server's side: concurrent clients get the
library's replies, a client that leaves frees its row, and other work runs between two steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from sokhan.config import ModelConfig, SampleConfig
from sokhan.errors import SokhanError
from sokhan.infer.batching import BatchedDecoder, Sequence
from sokhan.infer.sampling import generate_ids
from sokhan.models import GPT, build_model

VOCAB, BLOCK = 60, 16
LENGTHS = (1, 5, 12, 16, 30, 3)  # prompts shorter than, as long as, and longer than the context


def gpt(positional: str = "learned", block: int = BLOCK) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=VOCAB, block_size=block, n_layer=2, n_head=2, n_embd=16,
                           positional=positional)).eval()


def prompts(lengths: tuple[int, ...] = LENGTHS) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


def alone(model: nn.Module, prompt: list[int], cfg: SampleConfig) -> list[int]:
    return list(generate_ids(model, prompt, cfg))


def batched(model: nn.Module, jobs: list[tuple[list[int], SampleConfig]], rows: int = 4, join_every: int = 3,
            leave: dict[int, int] | None = None) -> dict[int, list[int]]:
    """Decode `jobs` in one `BatchedDecoder`: job i joins once a row is free and `join_every` steps have passed
    since the last join; job j leaves (cancelled) after `leave[j]` tokens. The tokens of every job."""
    decoder = BatchedDecoder(model, rows)
    leave = leave or {}
    tokens: dict[int, list[int]] = {}
    live: dict[Sequence, int] = {}

    def took(seq: Sequence, i: int, token: int) -> None:
        tokens[i].append(token)
        if len(tokens[i]) in (jobs[i][1].max_new_tokens, leave.get(i)):
            decoder.remove(seq)
            del live[seq]

    waiting, step = list(range(len(jobs))), 0
    while waiting or live:
        if waiting and not decoder.full and step % join_every == 0:
            i = waiting.pop(0)
            seq, token = decoder.add(*jobs[i])
            tokens[i], live[seq] = [], i
            took(seq, i, token)
        if live:
            for seq, token in decoder.step():
                assert isinstance(token, int), token
                took(seq, live[seq], token)
        step += 1
    return tokens


@pytest.mark.parametrize("positional", ["learned", "rope", "sinusoidal"])
def test_batched_greedy_equals_unbatched_token_for_token(positional):
    model = gpt(positional)
    cfgs = [SampleConfig(max_new_tokens=20 + 7 * i, temperature=0) for i in range(len(LENGTHS))]
    jobs = list(zip(prompts(), cfgs))
    expected = [alone(model, *job) for job in jobs]
    for rows, join_every in ((6, 1), (3, 4)):  # one joining at every step; and joining as rows free up
        got = batched(model, jobs, rows, join_every)
        assert [got[i] for i in range(len(jobs))] == expected, (rows, join_every)
    assert max(map(len, expected)) > 2 * BLOCK  # the context-full window was needed, more than once


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_seeded_sampling_equals_the_unbatched_sample(positional):
    model = gpt(positional)
    # rows that sample alike share a call (one temperature), others do not; each draws from its own seed
    cfgs = [SampleConfig(max_new_tokens=40, temperature=t, top_k=k, top_p=p, seed=100 + i)
            for i, (t, k, p) in enumerate([(1.0, 0, 1.0), (1.0, 0, 1.0), (0.7, 10, 1.0), (1.0, 0, 0.9),
                                           (0, 0, 1.0), (1.0, 0, 1.0)])]
    jobs = list(zip(prompts(), cfgs))
    expected = [alone(model, *job) for job in jobs]
    got = batched(model, jobs, rows=6, join_every=2)
    assert [got[i] for i in range(len(jobs))] == expected
    assert len({tuple(t) for t in expected}) == len(jobs)


def test_joining_and_leaving_rows_change_no_other_row():
    model = gpt("rope")
    cfg = SampleConfig(max_new_tokens=30, temperature=0.9, seed=7)
    jobs = [(p, dataclasses.replace(cfg, seed=i)) for i, p in enumerate(prompts((4, 9, 2, 14, 6)))]
    expected = [alone(model, *job) for job in jobs]
    # job 1 is cancelled after 5 tokens, job 3 after 12; jobs 2 to 4 join while others are mid-way
    got = batched(model, jobs, rows=3, join_every=5, leave={1: 5, 3: 12})
    assert got[0] == expected[0] and got[2] == expected[2] and got[4] == expected[4]
    assert got[1] == expected[1][:5] and got[3] == expected[3][:12]


def test_a_row_whose_context_is_full_keeps_the_others_moving():
    """A row that starts again from its half window takes the same step as the other rows: every step gives
    every row a token (they used to wait a step for its prefill), and the tokens stay `generate_ids`'s."""
    model = gpt()
    cfg = SampleConfig(max_new_tokens=3 * BLOCK, temperature=0)
    jobs = prompts((3, 11, 7))
    decoder = BatchedDecoder(model, 3)
    tokens = {}
    for prompt in jobs:
        seq, token = decoder.add(prompt, cfg)
        tokens[seq] = [token]
    restarts = 0
    while decoder.active:
        before = list(decoder.active)
        restarts += sum(seq.cached >= BLOCK for seq in before)
        outcomes = decoder.step()
        assert [seq for seq, _ in outcomes] == before
        for seq, token in outcomes:
            tokens[seq].append(token)
        for seq in before:
            if len(tokens[seq]) == cfg.max_new_tokens:
                decoder.remove(seq)
    assert restarts >= 6  # each of the three contexts filled up more than once
    assert list(tokens.values()) == [alone(model, prompt, cfg) for prompt in jobs]


def test_padding_never_reads_an_old_rows_values():
    """Positions a row does not use hold zeros, never what an earlier row left there: a NaN left behind
    would turn the row's logits into NaN even under a zero attention weight."""
    model = gpt()
    decoder = BatchedDecoder(model, 3)
    for kv in decoder.cache.kv:
        kv.fill_(float("nan"))
    cfg = SampleConfig(max_new_tokens=12, temperature=0)
    short, long = prompts((2, 9))
    first, token = decoder.add(long, cfg)
    second, other = decoder.add(short, cfg)
    tokens = {first: [token], second: [other]}
    while decoder.active:
        for seq, token in decoder.step():
            assert isinstance(token, int), token  # a NaN would be refused as non-finite logits
            tokens[seq].append(token)
            if len(tokens[seq]) == cfg.max_new_tokens:
                decoder.remove(seq)
    assert tokens[first] == alone(model, long, cfg) and tokens[second] == alone(model, short, cfg)


class Breaks(nn.Module):
    """Wraps a GPT: at its `after`-th step of several rows, the logits of row `row` are NaN."""

    def __init__(self, inner: GPT, row: int, after: int):
        super().__init__()
        self.inner, self.config, self.capabilities = inner, inner.config, inner.capabilities
        self.row, self.after, self.steps = row, after, 0

    def new_cache(self, *args, **kw):
        return self.inner.new_cache(*args, **kw)

    def forward(self, idx, **kw):
        out = self.inner(idx, **kw)
        if idx.size(0) > 1:
            self.steps += 1
            if self.steps == self.after:
                logits = out.logits.clone()
                logits[self.row] = float("nan")
                return out._replace(logits=logits)
        return out


def test_a_row_whose_logits_break_fails_alone():
    model = gpt()
    cfg = SampleConfig(max_new_tokens=20, temperature=0)
    jobs = prompts((3, 7, 5))
    decoder = BatchedDecoder(Breaks(model, row=0, after=4), 3)
    added = [decoder.add(p, cfg) for p in jobs]
    tokens = {seq: [token] for seq, token in added}
    errors = {}
    while decoder.active:
        for seq, outcome in decoder.step():
            if isinstance(outcome, SokhanError):
                errors[seq] = str(outcome)
            else:
                tokens[seq].append(outcome)
                if len(tokens[seq]) == cfg.max_new_tokens:
                    decoder.remove(seq)
    first = added[0][0]
    assert list(errors) == [first] and "not finite" in errors[first] and "new token 5" in errors[first]
    assert first.row == -1 and len(tokens[first]) == 4
    for (seq, _), prompt in zip(added[1:], jobs[1:]):
        assert tokens[seq] == alone(model, prompt, cfg)


def test_only_a_model_that_can_is_batched():
    cfg = ModelConfig(family="lstm", vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match="cannot decode a batch"):
        BatchedDecoder(build_model(cfg), 4)
    assert GPT.capabilities.batch_decodes and not build_model(cfg).capabilities.batch_decodes
    decoder = BatchedDecoder(gpt(), 1)
    decoder.add([1, 2], SampleConfig(temperature=0))
    assert decoder.full
    with pytest.raises(ValueError, match="rows are in use"):
        decoder.add([3], SampleConfig(temperature=0))
    with pytest.raises(SokhanError, match="at least one token"):
        BatchedDecoder(gpt(), 2).add([], SampleConfig())


# --- the server: a GPT's replies decoded together ----------------------------------------------------------

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers import ServerThread  # noqa: E402
from sokhan.api import LanguageModel  # noqa: E402
from sokhan.serve import create_app  # noqa: E402

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def lm(tiny_run) -> LanguageModel:
    return LanguageModel.load(tiny_run)


class Slow(nn.Module):
    """Wraps a GPT: `delay` seconds per forward and <|eos|>/<|end|> never sampled, so replies run to max_tokens."""

    def __init__(self, inner: nn.Module, banned: list[int], delay: float):
        super().__init__()
        self.inner, self.config, self.capabilities = inner, inner.config, inner.capabilities
        self.banned, self.delay = banned, delay
        self.rows: list[int] = []  # the batch size of every one-token step

    def new_cache(self, *args, **kw):
        return self.inner.new_cache(*args, **kw)

    def forward(self, idx, **kw):
        if idx.size(1) == 1:
            self.rows.append(idx.size(0))
        time.sleep(self.delay)
        out = self.inner(idx, **kw)
        logits = out.logits.clone()
        logits[..., self.banned] = -1e9
        return out._replace(logits=logits)


def slow_lm(lm: LanguageModel, delay: float = 0.005) -> LanguageModel:
    banned = [lm.tokenizer.eos_id, lm.tokenizer.token_id("<|end|>")]
    return dataclasses.replace(lm, model=Slow(lm.model, banned, delay))


def post(url: str, body: dict, timeout: float | httpx.Timeout = TIMEOUT) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json=body, timeout=timeout)


def streamed(url: str, body: dict) -> str:
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        events = [line[len("data: "):] for line in r.iter_lines() if line]
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


def test_concurrent_clients_get_the_librarys_replies_decoded_together(lm):
    slow = slow_lm(lm, delay=0.002)
    bodies = [{"prompt": p, "max_tokens": 24, "temperature": t, "seed": s}
              for p, t, s in [("دل", 0, None), ("الا یا ایها الساقی", 0.9, 3), ("از عشق", 0, None),
                              ("شب", 1.0, 11), ("سلام، حالت چطور است؟", 0.8, 5), ("می", 0, None)]]
    expected = [slow.generate(b["prompt"], max_new_tokens=24, temperature=b["temperature"], seed=b["seed"])
                for b in bodies]
    app = create_app(slow, max_batch=4)
    worker, rows = app.state.server.worker, []
    with ServerThread(app) as s:
        results: dict[int, str] = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, streamed(s.url, bodies[i])))
                   for i in range(len(bodies))]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rows.append(worker.running())
            time.sleep(0.001)
        for t in threads:
            t.join(TIMEOUT)
    assert [results.get(i) for i in range(len(bodies))] == expected
    assert max(rows) == 4  # decoded together, never more rows than max_batch
    assert set(slow.model.rows) <= {1}  # not here: in the batching process, on its own copy of the model


def test_a_client_that_leaves_frees_its_row_and_other_work_runs_beside_the_batch(lm):
    slow = slow_lm(lm)
    app = create_app(slow, max_batch=2, max_tokens_cap=100_000)
    worker = app.state.server.worker
    long = {"prompt": "دل", "max_tokens": 20_000, "stream": True}
    with ServerThread(app) as s:
        with httpx.stream("POST", s.url + "/v1/completions", json=long, timeout=TIMEOUT) as first, \
                httpx.stream("POST", s.url + "/v1/completions", json=long, timeout=TIMEOUT) as second:
            lines = [first.iter_lines(), second.iter_lines()]  # kept: dropping one would close its connection
            assert all(next(lines_).startswith("data: ") for lines_ in lines)
            assert worker.running() == 2
            # inspecting needs no row: it runs on the server's model thread, beside the batch, not after 20,000 tokens
            r = httpx.post(s.url + "/inspect/next", json={"text": "دل", "k": 3}, timeout=TIMEOUT)
            assert r.status_code == 200 and len(r.json()["tokens"]) == 3
            # every row is taken: a third reply waits in the queue, and is dropped when its client gives up
            with pytest.raises(httpx.ReadTimeout):
                post(s.url, {"prompt": "دل", "max_tokens": 5}, timeout=httpx.Timeout(TIMEOUT, read=0.5))
            wait_for(lambda: worker.waiting() == 0, "the third reply to be dropped")
        # both clients hung up: their rows are freed at the next step
        wait_for(lambda: worker.running() == 0, "the rows to be freed")
        r = post(s.url, {"prompt": "دل", "max_tokens": 5})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5


def test_max_batch_1_and_other_families_decode_one_at_a_time(lm):
    from sokhan.serve.worker import ModelWorker

    assert ModelWorker(lm, 16).max_batch == 16 and ModelWorker(lm, 1).max_batch == 1
    lstm = build_model(ModelConfig(family="lstm", vocab_size=lm.model.config.vocab_size, block_size=32, n_layer=1,
                                   n_head=2, n_embd=16)).eval()
    assert ModelWorker(dataclasses.replace(lm, model=lstm), 16).max_batch == 1
    slow = slow_lm(lm, delay=0.001)
    with ServerThread(create_app(slow, max_batch=1)) as s:
        threads = [threading.Thread(target=streamed, args=(s.url, {"prompt": "دل", "max_tokens": 8}))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert set(slow.model.rows) == {1}


class Reader:
    """Stands for a job: its name."""

    def __init__(self, name: str):
        self.name = name


def test_the_outbox_joins_pieces_and_sends_first_text_and_ends_at_once():
    from sokhan.serve.batch_process import Outbox

    handed: list[list] = []
    a, b = Reader("a"), Reader("b")
    outbox = Outbox(3600.0, lambda events: handed.append([(job.name, event) for job, event in events]))
    outbox.put(a, "text", "سل", urgent=True)  # a reply's first text: its client waits for it
    outbox.send()
    outbox.put(a, "text", "ام")
    outbox.put(b, "text", "د")
    outbox.send()
    outbox.put(a, "text", " دنیا")
    outbox.put(b, "text", "ل")
    outbox.send()
    assert handed == [[("a", ("text", "سل"))]]  # the rest waits for the interval
    outbox.put(b, "done", "stats")  # an end goes out at once, and what waited goes with it, joined
    outbox.send()
    assert handed[1] == [("a", ("text", "ام دنیا")), ("b", ("text", "دل")), ("b", ("done", "stats"))]
    outbox.put(a, "text", "!")
    outbox.send(now=True)
    assert handed[2] == [("a", ("text", "!"))]
    outbox.interval = 0.0  # a step slower than the interval: every piece as it comes
    outbox.put(a, "text", "؟")
    outbox.send()
    assert handed[3] == [("a", ("text", "؟"))] and not outbox.events


def test_a_batching_process_that_dies_fails_its_replies_and_the_next_one_starts_afresh(lm):
    slow = slow_lm(lm)
    app = create_app(slow, max_batch=2, max_tokens_cap=100_000)
    batch = app.state.server.worker.batch
    with ServerThread(app) as s:
        with httpx.stream("POST", s.url + "/v1/completions", json={"prompt": "دل", "max_tokens": 20_000,
                                                                   "stream": True}, timeout=TIMEOUT) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            batch._process.kill()
            events = [line[len("data: "):] for line in lines if line]
        error = json.loads(events[-1])["error"]
        assert "batching process stopped" in error["message"] and "exit code -9" in error["message"]
        r = post(s.url, {"prompt": "دل", "max_tokens": 5})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
        with ThreadPoolExecutor(1) as pool:  # not streamed: a 503, to be tried again
            reply = pool.submit(post, s.url, {"prompt": "دل", "max_tokens": 20_000})
            wait_for(lambda: app.state.server.worker.running() == 1, "the reply to get a row")
            batch._process.kill()
            r = reply.result()
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"]["code"] == "model_unavailable" and "try again" in r.json()["error"]["message"]


class Unloadable(Slow):
    """Pickles, but cannot be unpickled: as a model whose code the batching process cannot load."""

    def __setstate__(self, state):
        raise RuntimeError("no such module here")


def test_a_model_the_batching_process_cannot_load_is_refused_in_one_line(lm):
    banned = [lm.tokenizer.eos_id]
    app = create_app(dataclasses.replace(lm, model=Unloadable(lm.model, banned, 0.0)), max_batch=2)
    batch = app.state.server.worker.batch
    with ServerThread(app) as s:
        for _ in range(2):  # the second is refused at once: no new process is started for it
            r = post(s.url, {"prompt": "دل", "max_tokens": 5})
            error = r.json()["error"]
            assert r.status_code == 503 and "retry-after" not in r.headers
            assert error["message"] == ("the batching process could not load the model (RuntimeError: no such module "
                                        "here); serve it with --max-batch 1")
            assert batch._process is None
        assert httpx.post(s.url + "/inspect/next", json={"text": "دل", "k": 2}, timeout=TIMEOUT).status_code == 200


def test_replies_waiting_for_a_row_are_capped_with_retry_after(lm):
    slow = slow_lm(lm)
    app = create_app(slow, max_batch=2, max_queued=2, max_tokens_cap=100_000)
    worker = app.state.server.worker
    long = {"prompt": "دل", "max_tokens": 20_000, "stream": True}
    with ServerThread(app) as s, ThreadPoolExecutor(2) as pool, contextlib.ExitStack() as streams:
        lines = []
        for _ in range(2):  # every row taken
            r = streams.enter_context(httpx.stream("POST", s.url + "/v1/completions", json=long, timeout=TIMEOUT))
            lines.append(r.iter_lines())  # kept: dropping one would close its connection
            assert next(lines[-1]).startswith("data: ")
        queued = [pool.submit(post, s.url, {"prompt": "دل", "max_tokens": 5}) for _ in range(2)]  # wait for a row
        wait_for(lambda: worker.waiting() == 2 and worker.running() == 2, "two replies to wait for a row")
        r = post(s.url, {"prompt": "دل", "max_tokens": 5})
        assert r.status_code == 429 and r.json()["error"]["code"] == "server_busy"
        assert int(r.headers["retry-after"]) >= 1
        streams.close()  # hanging up frees both rows: the two waiting replies get them
        assert [f.result().status_code for f in queued] == [200, 200]
