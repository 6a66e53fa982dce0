"""`sokhan serve` as clients meet it: a real uvicorn on 127.0.0.1, the official `openai` client, raw HTTP.

A tiny model is trained once (seconds). Generation is checked against the Python API with the
same seed, so the server is shown to produce exactly the library's text, streamed or not,
alone or with other clients at once (decoded together: continuous batching). A second server wraps
the model so that it is slow and never ends a reply by itself; with it, a client that hangs up can
be seen to free the model, or its row of the batch; a third, the same one request at a time
(`max_batch=1`), shows requests queueing behind a reply. tests/test_batching.py has the rest of batching.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from helpers import ServerThread  # noqa: E402
from sokhan.api import LanguageModel  # noqa: E402
from sokhan.serve import create_app  # noqa: E402

KEY = "test-key-123"
NAME = "tiny-hafez"
TIMEOUT = 30.0
SAMPLE = dict(temperature=0.9, top_p=0.95)
CHAT = [{"role": "system", "content": "تو شاعری."}, {"role": "user", "content": "سلام، حالت چطور است؟"}]


@pytest.fixture(scope="module")
def lm(tiny_run) -> LanguageModel:
    return LanguageModel.load(tiny_run)


@pytest.fixture(scope="module")
def server(lm):
    with ServerThread(create_app(lm, model_name=NAME, api_key=KEY)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def read_sse(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent-event stream, in order."""
    events = []
    for line in response.iter_lines():
        if line:
            assert line.startswith("data: "), line
            events.append(line[len("data: "):])
    return events


# --- the OpenAI client ------------------------------------------------------------------------


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_completion_matches_library_and_seed_reproduces(client, lm):
    prompt = "الا یا ایها الساقی"
    kw = dict(model=NAME, prompt=prompt, max_tokens=24, seed=7, **SAMPLE)
    first = client.completions.create(**kw)
    again = client.completions.create(**kw)
    text = first.choices[0].text
    assert text == again.choices[0].text
    assert text == lm.generate(prompt, max_new_tokens=24, seed=7, **SAMPLE)
    assert first.object == "text_completion" and first.model == NAME
    usage = first.usage
    assert usage.prompt_tokens == len(lm.encode_prompt(prompt))
    assert 1 <= usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    reason = first.choices[0].finish_reason
    assert reason in ("stop", "length")
    assert (reason == "length") == (usage.completion_tokens == 24)


def test_chat_matches_library(client, lm):
    reply = client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=30, seed=3, **SAMPLE)
    message = reply.choices[0].message
    assert message.role == "assistant"
    assert message.content == lm.chat(CHAT, max_new_tokens=30, seed=3, **SAMPLE)
    assert reply.object == "chat.completion"
    assert reply.usage.prompt_tokens == len(lm.chat_prompt(CHAT, 30))
    assert 1 <= reply.usage.completion_tokens <= 30
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_greedy_is_deterministic_without_seed(client):
    kw = dict(model=NAME, messages=[{"role": "user", "content": "دل"}], max_tokens=12, temperature=0)
    texts = {client.chat.completions.create(**kw).choices[0].message.content for _ in range(2)}
    assert len(texts) == 1


def test_streaming_chat_equals_non_streaming(client):
    kw = dict(model=NAME, messages=CHAT, max_tokens=40, seed=11, **SAMPLE)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in content) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in content][-1] == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_streaming_completion_equals_non_streaming(client):
    kw = dict(model=NAME, prompt="دل", max_tokens=20, seed=5, **SAMPLE)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.object == "text_completion" for c in chunks)


def test_stop_string_ends_the_reply(client, lm):
    full = client.completions.create(model=NAME, prompt="دل", max_tokens=30, seed=2, **SAMPLE).choices[0].text
    stop = next((ch for ch in full[3:] if ch.strip()), None)
    if stop is None:
        pytest.skip("the sampled text has no character to stop at")
    cut = client.completions.create(model=NAME, prompt="دل", max_tokens=30, seed=2, stop=[stop], **SAMPLE)
    assert cut.choices[0].text == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_wrong_or_missing_key_is_401(server):
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=NAME, messages=CHAT, max_tokens=5)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        r = httpx.post(f"{server.url}/v1/chat/completions", headers=headers, timeout=TIMEOUT,
                       json={"messages": [{"role": "user", "content": "سلام"}]})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    # the chat page and its health check are public: the page asks for the key itself
    assert httpx.get(server.url + "/health", timeout=TIMEOUT).json()["api_key_required"] is True
    assert httpx.get(server.url + "/", timeout=TIMEOUT).status_code == 200


# --- raw HTTP: the wire format and bad input ---------------------------------------------------


def test_sse_wire_format(server):
    body = {"messages": [{"role": "user", "content": "سلام"}], "max_tokens": 10, "seed": 1, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=auth(),
                      timeout=TIMEOUT) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = read_sse(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)

    body = {"prompt": "دل", "max_tokens": 10, "seed": 1, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=auth(), timeout=TIMEOUT) as r:
        events = read_sse(r)
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "text_completion" for e in events[:-1])


USER = [{"role": "user", "content": "سلام"}]
BAD_REQUESTS = [
    # (endpoint, raw body or JSON value, status, param the error should name or None)
    ("chat", b"{not json", 400, None),
    ("chat", b"", 400, None),
    ("chat", b"\xff\xfe", 400, None),
    ("chat", [1, 2], 400, None),
    ("chat", {}, 400, "messages"),
    ("chat", {"messages": []}, 400, "messages"),
    ("chat", {"messages": "سلام"}, 400, "messages"),
    ("chat", {"messages": [{"role": "robot", "content": "سلام"}]}, 400, "messages.0.role"),
    ("chat", {"messages": [{"role": "user"}]}, 400, "messages.0.content"),
    ("chat", {"messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content"),
    ("chat", {"messages": [{"role": "assistant", "content": "سلام"}]}, 400, None),
    ("chat", {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, 400, None),
    ("chat", {"messages": USER, "max_tokens": 0}, 400, "max_tokens"),
    ("chat", {"messages": USER, "max_tokens": 65}, 400, "max_tokens"),
    ("chat", {"messages": USER, "max_tokens": "10"}, 400, "max_tokens"),
    ("chat", {"messages": USER, "max_completion_tokens": 10**6}, 400, "max_completion_tokens"),
    ("chat", {"messages": USER, "n": 2}, 400, "n"),
    ("chat", {"messages": USER, "temperature": -1}, 400, "temperature"),
    ("chat", {"messages": USER, "temperature": "hot"}, 400, "temperature"),
    ("chat", {"messages": USER, "top_p": 0}, 400, "top_p"),
    ("chat", {"messages": USER, "stop": 3}, 400, "stop"),
    ("chat", {"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("chat", {"messages": USER, "seed": 2**70}, 400, "seed"),
    ("chat", {"messages": USER, "stream": "yes"}, 400, "stream"),
    ("chat", {"messages": [{"role": "user", "content": "دل " * 400}]}, 400, "messages"),  # context_length_exceeded
    ("completions", {}, 400, "prompt"),
    ("completions", {"prompt": ["a", "b"]}, 400, "prompt"),
    ("completions", {"prompt": "دل", "max_tokens": -3}, 400, "max_tokens"),
    ("completions", {"prompt": "دل", "n": 3}, 400, "n"),
    ("completions", {"prompt": "دل " * 400}, 400, "prompt"),
    ("completions", "x" * (2 << 20), 413, None),
]


@pytest.mark.parametrize("endpoint,body,status,param", BAD_REQUESTS,
                         ids=[f"{i}-{e}" for i, (e, *_) in enumerate(BAD_REQUESTS)])
def test_bad_input_is_a_4xx_with_openai_error(server, endpoint, body, status, param):
    path = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}[endpoint]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + path, content=content, timeout=TIMEOUT,
                   headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param


def test_oversized_body_streamed_without_length_is_413(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    r = httpx.post(server.url + "/v1/completions", content=chunks(), timeout=TIMEOUT,
                   headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_unknown_path_and_method(server):
    r = httpx.get(server.url + "/v1/nothing", headers=auth(), timeout=TIMEOUT)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.url + "/v1/chat/completions", headers=auth(), timeout=TIMEOUT)
    assert r.status_code == 405 and "error" in r.json()


def test_openai_client_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=NAME, messages=USER, max_tokens=10**6)
    assert "max_tokens" in str(info.value)


# --- concurrency and hang-ups: a slow model that never stops by itself ---------------------------


class SlowEndless(nn.Module):
    """Wraps a GPT: `delay` seconds per forward, and <|eos|>/<|end|> never sampled, so a reply
    always runs to max_tokens and takes long enough for clients to overlap and hang up."""

    def __init__(self, inner: nn.Module, banned: list[int], delay: float):
        super().__init__()
        self.inner, self.banned, self.delay = inner, banned, delay
        self.config, self.capabilities = inner.config, inner.capabilities
        self.threads: set[str] = set()  # the names of the threads that ran forward
        self.uncached = 0  # forwards without a KV cache: not sampling's (the inspector's)

    def new_cache(self, *args, **kw):
        return self.inner.new_cache(*args, **kw)

    def forward(self, *args, **kw):
        self.threads.add(threading.current_thread().name)
        self.uncached += kw.get("cache") is None
        time.sleep(self.delay)
        out = self.inner(*args, **kw)
        logits = out.logits.clone()
        logits[..., self.banned] = -1e9  # finite: sampling checks the logits are
        return out._replace(logits=logits)


def slow_server(lm: LanguageModel, max_batch: int) -> ServerThread:
    banned = [lm.tokenizer.eos_id, lm.tokenizer.token_id("<|end|>")]
    slow_lm = dataclasses.replace(lm, model=SlowEndless(lm.model, banned, delay=0.005))
    return ServerThread(create_app(slow_lm, model_name="slow", max_tokens_cap=100_000, max_batch=max_batch))


@pytest.fixture(scope="module")
def slow(lm):
    """The slow model, its replies decoded together (the default `max_batch`)."""
    with slow_server(lm, 16) as s:
        yield s


@pytest.fixture(scope="module")
def slow_single(lm):
    """The slow model, one request at a time: a second request waits in the queue."""
    with slow_server(lm, 1) as s:
        yield s


def stream_chat(url: str, seed: int, max_tokens: int) -> tuple[str, list[str]]:
    body = {"messages": [{"role": "user", "content": f"پیام {seed}"}], "max_tokens": max_tokens, "seed": seed,
            "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        events = read_sse(r)
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    return text, events


def test_concurrent_streams_are_each_complete_and_correct(slow):
    seeds = [1, 2, 3, 4]
    expected = {}
    for seed in seeds:
        body = {"messages": [{"role": "user", "content": f"پیام {seed}"}], "max_tokens": 40, "seed": seed}
        r = httpx.post(slow.url + "/v1/chat/completions", json=body, timeout=TIMEOUT)
        expected[seed] = r.json()["choices"][0]["message"]["content"]
        assert r.json()["usage"]["completion_tokens"] == 40
    results: dict[int, tuple[str, list[str]]] = {}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            results[seed] = stream_chat(slow.url, seed, 40)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors, errors
    assert sorted(results) == seeds
    for seed, (text, events) in results.items():
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
        assert text == expected[seed], seed


def quick_reply_time(url: str) -> float:
    start = time.monotonic()
    r = httpx.post(url + "/v1/completions", json={"prompt": "دل", "max_tokens": 5}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
    return time.monotonic() - start


def rows_in_use(server: ServerThread) -> int:
    return server.server.config.app.state.server.worker.running()


def wait_until_free(server: ServerThread) -> None:
    deadline = time.monotonic() + TIMEOUT
    while rows_in_use(server):
        assert time.monotonic() < deadline, "the batch still decodes a reply nobody reads"
        time.sleep(0.01)


@pytest.mark.parametrize("single", [False, True], ids=["batched", "one-at-a-time"])
def test_disconnect_mid_stream_frees_the_model(slow, slow_single, single):
    # 20,000 tokens at 5 ms each would hold the model for 100 s if the hang-up went unnoticed
    server = slow_single if single else slow
    body = {"prompt": "دل", "max_tokens": 20_000, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept: dropping the iterator would close the connection right away
        got = [next(lines) for _ in range(3)]
        assert got[0].startswith("data: ")
        assert rows_in_use(server) == (0 if single else 1)
    # leaving the block closed the connection mid-stream
    wait_until_free(server)
    assert quick_reply_time(server.url) < 5.0


def test_disconnect_while_queued_or_not_streaming_frees_the_model(slow, slow_single):
    long = {"prompt": "دل", "max_tokens": 20_000}
    # a non-streaming client that gives up (its read times out) while its reply is generated
    for server in (slow, slow_single):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/completions", json=long, timeout=httpx.Timeout(TIMEOUT, read=0.5))
        wait_until_free(server)
        assert quick_reply_time(server.url) < 5.0

    # one client streams, a second waits in the queue behind it and gives up, then the first hangs up
    # (batched, a second reply waits only when every row is taken: tests/test_batching.py)
    url = slow_single.url
    with httpx.stream("POST", url + "/v1/completions", json={**long, "stream": True}, timeout=TIMEOUT) as r:
        lines = r.iter_lines()  # kept: dropping the iterator would close the connection right away
        assert next(lines).startswith("data: ")
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/completions", json={**long, "stream": True}, timeout=httpx.Timeout(TIMEOUT, read=0.5))
    assert quick_reply_time(url) < 5.0


def test_server_without_key_accepts_any(lm):
    with ServerThread(create_app(lm)) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="anything", max_retries=0, timeout=TIMEOUT)
        assert client.models.list().data[0].id == Path(lm.path).parent.parent.name
        assert httpx.get(s.url + "/health", timeout=TIMEOUT).json()["api_key_required"] is False


def test_cli_serve_rejects_bad_arguments(tmp_path):
    from sokhan.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2


# --- the inspector's endpoints (the page's "Inspect" view; not OpenAI's API) ----------------------

SENTENCE = "الا یا ایها الساقی"


def inspect(url: str, path: str, body: dict | bytes, key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/inspect/{path}", content=content, headers=headers, timeout=TIMEOUT)


def test_inspect_attention_is_the_models_attention(server, lm):
    from sokhan.inspect.attention import attention_maps

    r = inspect(server.url, "attention", {"text": SENTENCE})
    assert r.status_code == 200, r.text
    got = r.json()
    maps = attention_maps(lm, SENTENCE)
    T = len(maps.tokens)
    assert got["tokens"] == maps.tokens and T > 5
    assert (got["layers"], got["heads"], got["causal"], got["layer"]) == (2, 2, True, None)
    weights = torch.tensor(got["weights"], dtype=torch.float64)
    assert weights.shape == (2, 2, T, T)
    assert torch.allclose(weights, maps.weights.double(), atol=5e-5, rtol=0)  # rounded to 4 decimals
    assert torch.equal(weights, weights.round(decimals=4))
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, T, dtype=torch.float64), atol=T * 5e-5)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    assert (weights[..., future] == 0).all()  # a decoder never looks ahead: exactly zero
    assert (weights[..., ~future] > 0).any()

    one = inspect(server.url, "attention", {"text": SENTENCE, "layer": 1}).json()
    assert one["layer"] == 1 and one["weights"][0] is None
    assert one["weights"][1] == got["weights"][1] and one["tokens"] == got["tokens"]
    health = httpx.get(server.url + "/health", timeout=TIMEOUT).json()
    assert health["inspect"] == {"family": "gpt", "attention": {"layers": 2, "heads": 2, "max_tokens": 64},
                                 "next_token": True}


def test_inspect_next_token_is_the_librarys(server, lm):
    r = inspect(server.url, "next", {"text": SENTENCE, "k": 5})
    assert r.status_code == 200, r.text
    got = r.json()
    expected = lm.next_token_probs(SENTENCE, 5)
    assert [t["token"] for t in got["tokens"]] == [t for t, _ in expected]
    assert [t["prob"] for t in got["tokens"]] == pytest.approx([p for _, p in expected], abs=1e-6)
    assert got["context_tokens"] == len(lm.encode_prompt(SENTENCE))
    probs = [t["prob"] for t in got["tokens"]]
    assert probs == sorted(probs, reverse=True)
    # the default k is 10; an empty text asks what a document begins with
    assert len(inspect(server.url, "next", {"text": ""}).json()["tokens"]) == 10


def test_inspect_needs_the_key_like_v1(server):
    for path, body in (("attention", {"text": SENTENCE}), ("next", {"text": SENTENCE})):
        for key in (None, "wrong"):
            r = inspect(server.url, path, body, key=key)
            assert r.status_code == 401, (path, key)
            assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(server.url + "/inspect/attention", headers=auth(), timeout=TIMEOUT)
    assert r.status_code == 405 and "error" in r.json()


BAD_INSPECT = [
    # (endpoint, body, status, param, code or None)
    ("attention", b"{not json", 400, None, "invalid_json"),
    ("attention", {}, 400, "text", None),
    ("attention", {"text": ""}, 400, "text", None),
    ("attention", {"text": "  \n "}, 400, "text", "empty_text"),
    ("attention", {"text": 5}, 400, "text", None),
    ("attention", {"text": "دل " * 100}, 400, "text", "too_many_tokens"),
    ("attention", {"text": "د" * 2001}, 400, "text", None),
    ("attention", {"text": SENTENCE, "layer": 2}, 400, "layer", "invalid_layer"),
    ("attention", {"text": SENTENCE, "layer": -1}, 400, "layer", None),
    ("attention", {"text": SENTENCE, "layer": "0"}, 400, "layer", None),
    ("next", {"text": SENTENCE, "k": 0}, 400, "k", None),
    ("next", {"text": SENTENCE, "k": 51}, 400, "k", None),
    ("next", {"text": ["دل"]}, 400, "text", None),
    ("next", "x" * (2 << 20), 413, None, "request_too_large"),
]


@pytest.mark.parametrize("endpoint,body,status,param,code", BAD_INSPECT,
                         ids=[f"{i}-{e}" for i, (e, *_) in enumerate(BAD_INSPECT)])
def test_inspect_bad_input_is_a_4xx_json_error(server, endpoint, body, status, param, code):
    r = inspect(server.url, endpoint, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_inspect_reply_size_is_capped(server, monkeypatch):
    import sokhan.serve.app

    T = len(inspect(server.url, "attention", {"text": SENTENCE}).json()["tokens"])
    monkeypatch.setattr(sokhan.serve.app, "INSPECT_MAX_CELLS", 2 * T * T)  # one layer's two heads, not two layers
    r = inspect(server.url, "attention", {"text": SENTENCE})
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("too_many_weights", "layer")
    assert inspect(server.url, "attention", {"text": SENTENCE, "layer": 0}).status_code == 200


def untrained(lm: LanguageModel, family: str) -> LanguageModel:
    """`lm`'s tokenizer on a small untrained model of another family: what the family rules need."""
    from sokhan.config import ModelConfig
    from sokhan.models import build_model

    cfg = ModelConfig(family=family, vocab_size=lm.model.config.vocab_size, block_size=32, n_layer=3, n_head=2,
                      n_embd=16)
    return dataclasses.replace(lm, model=build_model(cfg).eval())


def test_inspect_follows_the_family_rules(lm):
    from sokhan.inspect.attention import attention_maps

    bert, lstm = untrained(lm, "bert"), untrained(lm, "lstm")
    with ServerThread(create_app(bert)) as s:
        r = inspect(s.url, "attention", {"text": SENTENCE}, key=None)
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["layers"], got["heads"], got["causal"]) == (3, 2, False)
        weights = torch.tensor(got["weights"], dtype=torch.float64)
        assert torch.allclose(weights, attention_maps(bert, SENTENCE).weights.double(), atol=5e-5, rtol=0)
        T = len(got["tokens"])
        assert torch.allclose(weights.sum(-1), torch.ones(3, 2, T, dtype=torch.float64), atol=T * 5e-5)
        assert (weights[..., torch.ones(T, T, dtype=torch.bool).triu(1)] > 0).all()  # an encoder looks both ways
        r = inspect(s.url, "next", {"text": SENTENCE}, key=None)
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_model_family"
        assert "bert" in r.json()["error"]["message"]
        assert httpx.get(s.url + "/health", timeout=TIMEOUT).json()["inspect"]["next_token"] is False
        # the limit is the model's context when that is shorter than the inspector's
        r = inspect(s.url, "attention", {"text": "دل " * 40}, key=None)  # ~41 tokens: over 32, under 64
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_tokens"
    with ServerThread(create_app(lstm)) as s:
        r = inspect(s.url, "attention", {"text": SENTENCE}, key=None)
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_model_family"
        assert "lstm" in r.json()["error"]["message"]
        r = inspect(s.url, "next", {"text": SENTENCE, "k": 3}, key=None)
        assert r.status_code == 200 and len(r.json()["tokens"]) == 3
        assert httpx.get(s.url + "/health", timeout=TIMEOUT).json()["inspect"]["attention"] is None


def test_inspect_runs_on_the_model_thread(slow):
    # the slow model records which thread ran each forward: inspecting must not race a generation
    slow_model = slow.server.config.app.state.server.lm.model
    slow_model.threads.clear()
    r = inspect(slow.url, "next", {"text": SENTENCE, "k": 3}, key=None)
    assert r.status_code == 200
    assert slow_model.threads == {"sokhan-model"}


def test_inspect_waits_its_turn_and_is_dropped_if_its_client_leaves(slow_single):
    # one request at a time: the inspector waits for the reply before it (batched, it runs between two steps:
    # tests/test_batching.py)
    slow_model = slow_single.server.config.app.state.server.lm.model
    body = json.dumps({"text": SENTENCE, "k": 3}).encode()
    headers = {"Content-Type": "application/json"}
    with httpx.stream("POST", slow_single.url + "/v1/completions", json={"prompt": "دل", "max_tokens": 20_000,
                                                                          "stream": True}, timeout=TIMEOUT) as r:
        lines = r.iter_lines()  # kept: dropping the iterator would close the connection right away
        assert next(lines).startswith("data: ")
        slow_model.uncached = 0
        # queued behind the stream, the inspector's client gives up
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(slow_single.url + "/inspect/next", content=body, headers=headers,
                       timeout=httpx.Timeout(TIMEOUT, read=0.5))
    assert quick_reply_time(slow_single.url) < 5.0
    assert slow_model.uncached == 0  # the abandoned call never ran
    assert inspect(slow_single.url, "next", {"text": SENTENCE, "k": 3}, key=None).status_code == 200
    assert slow_model.uncached == 1


@torch.inference_mode()
def test_slow_wrapper_keeps_the_models_logits(lm):
    ids = torch.tensor([lm.encode_prompt("دل")])
    wrapped = SlowEndless(lm.model, [lm.tokenizer.eos_id], delay=0)
    a, b = lm.model(ids).logits, wrapped(ids).logits
    assert torch.equal(a[..., 3:], b[..., 3:]) and (b[..., lm.tokenizer.eos_id] < -1e8).all()


def test_the_server_leaves_a_core_to_the_http_side(monkeypatch):
    """`sokhan serve --threads 0` (the default): torch's default less one, at least one; an explicit --threads or
    OMP_NUM_THREADS is kept."""
    from sokhan.serve.app import model_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [model_threads(0, n) for n in (1, 2, 16)] == [1, 1, 15]
    assert model_threads(3, 2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert model_threads(0, 2) is None and model_threads(1, 2) == 1


def test_events_that_are_in_go_out_in_one_write(lm):
    """A stream writes what is ready together: the role chunk with the first text; and when the last text,
    the end, usage and [DONE] are all in, one write. A piece still to come is written when it comes."""
    import asyncio

    from sokhan.infer.sampling import StreamStats
    from sokhan.serve.app import Reply

    class Events:
        """A job whose events arrive in the given bursts (each burst ready at once)."""

        def __init__(self, bursts):
            self.bursts, self.ready = list(bursts), []

        def ready_event(self):
            return self.ready.pop(0) if self.ready else None

        async def next_event(self):
            self.ready = self.bursts.pop(0)
            return self.ready.pop(0)

    async def writes(bursts):
        job = Events(bursts)
        first = await job.next_event()
        server = create_app(lm).state.server
        reply = Reply(server, chat=True, prompt_ids=[1, 2], include_usage=True)
        return [w async for w in server.stream_events(job, *first, reply)]

    done = StreamStats(tokens=3, finish_reason="stop")
    out = asyncio.run(writes([[("text", "سلام")], [("text", " دنیا"), ("text", "!"), ("done", done)]]))
    assert len(out) == 2
    assert out[0].count("data: ") == 2 and '"role": "assistant"' in out[0] and "سلام" in out[0]
    assert out[1].count("data: ") == 5 and out[1].endswith("data: [DONE]\n\n") and '"completion_tokens": 3' in out[1]
