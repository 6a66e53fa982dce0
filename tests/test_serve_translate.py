"""`sokhan serve` on a translation model: POST /v1/translations, the page's Translate view, and its Inspect view of
the encoder's, the decoder's and the cross attention.

A tiny encoder–decoder learns four English→Persian pairs by heart (`helpers.tiny_translator`, seconds), so
that what the server says can be checked against the library: a translation equals
`LanguageModel.translate` with the same beam, a stream joins to the greedy translation, the attention
weights are `translation_attention`'s. The server is a real uvicorn on 127.0.0.1, as in tests/test_serve.py;
the page tests drive the system Chromium like tests/test_webchat.py (skipped, with the reason, without it).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from conftest import local_page  # noqa: E402
from helpers import TINY_PAIRS, ServerThread, tiny_translator  # noqa: E402
from sokhan.api import LanguageModel  # noqa: E402
from sokhan.errors import SokhanError  # noqa: E402
from sokhan.infer.translate import SourceTooLong, source_ids  # noqa: E402
from sokhan.inspect.attention import translation_attention  # noqa: E402
from sokhan.serve import create_app  # noqa: E402

KEY = "translate-key"
NAME = "tiny-mt"
TIMEOUT = 30.0
SENTENCE = "Transformers learn from data."
LONG = "cat " * 200  # 201 tokens with <|eos|>: more than the context of 128
PERSIAN = re.compile("[\u0600-\u06ff]")


@pytest.fixture(scope="module")
def translator_run(tmp_path_factory):
    return tiny_translator(tmp_path_factory.mktemp("tiny-translator"))


@pytest.fixture(scope="module")
def mt(translator_run) -> LanguageModel:
    return LanguageModel.load(translator_run)


@pytest.fixture(scope="module")
def server(mt):
    with ServerThread(create_app(mt, model_name=NAME, api_key=KEY)) as s:
        yield s


@pytest.fixture(scope="module")
def gpt_server(tiny_run):
    with ServerThread(create_app(LanguageModel.load(tiny_run), model_name="tiny-hafez")) as s:
        yield s


def post(url: str, path: str, body: object, key: str | None = KEY, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}), **headers}
    return httpx.post(url + path, content=content, headers=headers, timeout=TIMEOUT)


def translate(url: str, body: dict, key: str | None = KEY) -> httpx.Response:
    return post(url, "/v1/translations", body, key)


def error_of(r: httpx.Response, status: int) -> dict:
    """The error body of a reply that must be `status`, in OpenAI's shape."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def stream(url: str, body: dict) -> tuple[httpx.Response, list[str]]:
    """A streamed translation: the reply and its `data:` payloads, checked to be framed as the chat's SSE."""
    with httpx.stream("POST", url + "/v1/translations", json={**body, "stream": True}, timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = text.split("\n\n")
    assert events[-1] == "", text  # every event ends with a blank line
    payloads = []
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event, event  # one line each
        payloads.append(event[len("data: "):])
    return r, payloads


def chunks_of(payloads: list[str]) -> tuple[list[dict], dict]:
    """The text chunks and the closing one of a whole stream."""
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "translation.chunk" and c["id"] == chunks[0]["id"] and c["model"] == NAME
               for c in chunks)
    *pieces, last = chunks
    assert all(c["done"] is False and c["delta"] for c in pieces)
    assert last["done"] is True and last["delta"] == ""
    return pieces, last


# --- POST /v1/translations ------------------------------------------------------------------------


def test_the_tiny_translator_has_learnt_its_pairs(mt):
    for english, persian in TINY_PAIRS:
        assert mt.translate(english, beam=1) == mt.normalize(persian)


@pytest.mark.parametrize("beam", [None, 1, 2, 4])
def test_translation_is_the_librarys(server, mt, beam):
    for english, _ in TINY_PAIRS:
        r = translate(server.url, {"text": english, **({"beam": beam} if beam else {})})
        assert r.status_code == 200, r.text
        got = r.json()
        assert set(got) == {"id", "object", "created", "model", "translation", "beam", "truncated", "usage"}
        assert (got["object"], got["model"], got["beam"], got["truncated"]) == ("translation", NAME, beam or 4, False)
        assert got["id"].startswith("translation-")
        assert got["translation"] == mt.translate(english, beam=beam or 4)
        usage = got["usage"]
        assert usage["prompt_tokens"] == len(source_ids(mt, english))
        assert usage["completion_tokens"] == len(mt.tokenizer.encode_plain(got["translation"])) > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_is_the_greedy_translation_piece_by_piece(server, mt):
    whole = translate(server.url, {"text": SENTENCE, "beam": 1}).json()
    _, payloads = stream(server.url, {"text": SENTENCE})
    pieces, last = chunks_of(payloads)
    assert "".join(c["delta"] for c in pieces) == mt.translate(SENTENCE, beam=1) == whole["translation"]
    assert len(pieces) > 2  # word by word, not the whole at once
    assert (last["beam"], last["truncated"], last["usage"]) == (1, False, whole["usage"])
    # the same with beam 1 said outright, and a stream ends the same way whatever the text
    assert "".join(c["delta"] for c in chunks_of(stream(server.url, {"text": SENTENCE, "beam": 1})[1])[0]) == \
        whole["translation"]


@pytest.mark.parametrize("beam", [2, 4])
def test_stream_with_a_beam_sends_the_beam_search_in_one_chunk(server, mt, beam):
    pieces, last = chunks_of(stream(server.url, {"text": SENTENCE, "beam": beam})[1])
    assert [c["delta"] for c in pieces] == [mt.translate(SENTENCE, beam=beam)]
    assert last["beam"] == beam


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_empty_translation(server, text):
    got = translate(server.url, {"text": text}).json()
    assert got["translation"] == "" and got["usage"] == {"prompt_tokens": 0, "completion_tokens": 0,
                                                          "total_tokens": 0}
    pieces, last = chunks_of(stream(server.url, {"text": text})[1])
    assert pieces == [] and last["usage"]["total_tokens"] == 0


def test_a_source_too_long_is_cut_or_refused(server, mt, recwarn):
    with pytest.raises(SokhanError) as refused:
        source_ids(mt, LONG, "refuse")
    for body in ({"text": LONG, "too_long": "refuse"}, {"text": LONG, "too_long": "refuse", "beam": 2}):
        error = error_of(translate(server.url, body), 400)
        assert (error["message"], error["param"], error["code"]) == (str(refused.value), "text",
                                                                     "context_length_exceeded")
        r, _ = stream(server.url, body)  # refused before the stream begins: a status, not a broken stream
        assert error_of(r, 400)["message"] == str(refused.value)

    got = translate(server.url, {"text": LONG}).json()  # "truncate", the default
    assert got["truncated"] is True and got["usage"]["prompt_tokens"] == mt.block_size
    pieces, last = chunks_of(stream(server.url, {"text": LONG})[1])
    assert last["truncated"] is True
    # the reply says it was cut: the server's log is not told again
    assert not [w for w in recwarn if issubclass(w.category, SourceTooLong)]
    with pytest.warns(SourceTooLong):
        assert got["translation"] == mt.translate(LONG)
    with pytest.warns(SourceTooLong):
        assert "".join(c["delta"] for c in pieces) == mt.translate(LONG, beam=1)


BAD_TRANSLATIONS = [
    # (body, status, param, code or None)
    (b"{not json", 400, None, "invalid_json"),
    (b"", 400, None, "invalid_json"),
    ([SENTENCE], 400, None, None),
    ({}, 400, "text", "missing"),
    ({"text": None}, 400, "text", None),
    ({"text": 5}, 400, "text", None),
    ({"text": [SENTENCE]}, 400, "text", None),
    ({"text": "a" * 10_001}, 400, "text", "string_too_long"),  # the character cap, before any tokenizing
    ({"text": SENTENCE, "beam": 0}, 400, "beam", None),
    ({"text": SENTENCE, "beam": 17}, 400, "beam", None),
    ({"text": SENTENCE, "beam": "4"}, 400, "beam", None),
    ({"text": SENTENCE, "beam": 1.5}, 400, "beam", None),
    ({"text": SENTENCE, "stream": "yes"}, 400, "stream", None),
    ({"text": SENTENCE, "too_long": "cut"}, 400, "too_long", None),
    ("x" * (2 << 20), 413, None, "request_too_large"),
]


@pytest.mark.parametrize("body,status,param,code", BAD_TRANSLATIONS,
                         ids=[str(i) for i in range(len(BAD_TRANSLATIONS))])
def test_bad_input_is_a_4xx_with_openai_error(server, body, status, param, code):
    error = error_of(translate(server.url, body), status)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_translations_pass_the_key_json_and_host_checks(server):
    body = {"text": SENTENCE}
    for key in (None, "wrong"):
        assert error_of(translate(server.url, body, key=key), 401)["code"] == "invalid_api_key"
    r = httpx.post(server.url + "/v1/translations", content=json.dumps(body).encode(), timeout=TIMEOUT,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    assert error_of(r, 415)["code"] == "unsupported_media_type"
    assert error_of(post(server.url, "/v1/translations", body, Host="evil.example"), 400)["code"] == "invalid_host"
    error = error_of(post(server.url, "/v1/translations", body, Origin="http://evil.example"), 403)
    assert error["code"] == "origin_not_allowed"
    assert post(server.url, "/v1/translations", body, Origin=server.url).status_code == 200  # the page's own


def test_chat_and_completions_on_a_translator_say_where_to_go(server):
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}]}),
                       ("/v1/completions", {"prompt": "Hello"}),
                       ("/v1/chat/completions", {"messages": "not even valid"})):
        error = error_of(post(server.url, path, body), 400)
        assert error["code"] == "unsupported_model_family"
        assert "translation model" in error["message"] and "POST /v1/translations" in error["message"]
    error = error_of(post(server.url, "/inspect/next", {"text": SENTENCE}), 400)
    assert error["code"] == "unsupported_model_family" and "translation model" in error["message"]
    models = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT)
    assert [m["id"] for m in models.json()["data"]] == [NAME]


def test_translations_on_a_language_model_are_400(gpt_server):
    for body in ({"text": SENTENCE}, {"text": SENTENCE, "stream": True}, {"text": 5}):
        error = error_of(translate(gpt_server.url, body, key=None), 400)
        assert error["code"] == "unsupported_model_family"
        assert "not a translator" in error["message"] and "/v1/chat/completions" in error["message"]
    health = httpx.get(gpt_server.url + "/health", timeout=TIMEOUT).json()
    assert (health["views"], health["translation"]) == (["chat", "inspect"], None)
    assert "kinds" not in health["inspect"]["attention"]
    for extra in ({"kind": "cross"}, {"target": "سلام"}):  # a language model has one kind of attention
        error = error_of(post(gpt_server.url, "/inspect/attention", {"text": "دل", **extra}, key=None), 400)
        assert (error["param"], error["code"]) == (next(iter(extra)), "unsupported_model_family")


def test_health_tells_the_page_what_to_show(server):
    health = httpx.get(server.url + "/health", timeout=TIMEOUT).json()
    assert health["views"] == ["translate", "inspect"]
    assert health["translation"] == {"source_lang": "en", "target_lang": "fa", "beam": 4, "max_beam": 16,
                                     "max_chars": 10_000}
    assert health["inspect"] == {"family": "seq2seq", "next_token": False,
                                 "attention": {"layers": 2, "heads": 2, "max_tokens": 64,
                                               "kinds": ["cross", "encoder", "decoder"]}}


class Held(nn.Module):
    """Wraps a model: its forwards wait for `release`, so requests can be seen queueing behind it; it notes the
    threads that ran it."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.config, self.capabilities = inner, inner.config, inner.capabilities
        self.entered, self.release = threading.Event(), threading.Event()
        self.threads: set[str] = set()

    def new_cache(self, *args, **kw):
        return self.inner.new_cache(*args, **kw)

    def forward(self, *args, **kw):
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.release.wait(TIMEOUT)
        return self.inner(*args, **kw)


def test_translations_wait_their_turn_on_the_model_thread(mt):
    held = Held(mt.model)
    app = create_app(dataclasses.replace(mt, model=held), max_queued=1)
    body = {"text": SENTENCE}
    with ServerThread(app) as s, ThreadPoolExecutor(2) as pool:
        first = pool.submit(translate, s.url, body, None)
        assert held.entered.wait(TIMEOUT)  # it holds the model
        queued = pool.submit(translate, s.url, {**body, "stream": True}, None)
        deadline = time.monotonic() + TIMEOUT
        while app.state.server.worker.waiting() < 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.01)
        for extra in ({}, {"stream": True}):
            r = translate(s.url, {**body, **extra}, None)
            assert error_of(r, 429)["code"] == "server_busy" and int(r.headers["retry-after"]) >= 1
        held.release.set()
        assert first.result().json()["translation"] == mt.translate(SENTENCE)
        assert queued.result().status_code == 200
    assert held.threads == {"sokhan-model"}


def test_cli_serves_a_translator(translator_run, mt, monkeypatch):
    import uvicorn

    import sokhan.serve
    from sokhan.cli import main

    calls: list[dict] = []
    monkeypatch.setattr(sokhan.serve, "serve", lambda lm, host, port, **kw: calls.append(kw))
    monkeypatch.delenv("SOKHAN_API_KEY", raising=False)
    assert main(["serve", str(translator_run), "--port", "0"]) == 0
    assert len(calls) == 1

    monkeypatch.undo()
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: sockets[0].close())
    said: list[str] = []
    sokhan.serve.serve(mt, "127.0.0.1", 0, announce=said.append)
    assert "translate" in said[0] and "/v1/translations" in said[0], said


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
ANY = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=3), max_leaves=8)
TEXT = st.text(max_size=60) | st.sampled_from(["", " ", SENTENCE, "سلام", "\u2028", "<|eos|><|bos|>", "cat " * 80])
BODIES = {
    "/v1/translations": st.fixed_dictionaries({"text": TEXT | ANY}, optional={
        "beam": st.integers(-1, 17) | ANY, "stream": st.booleans() | ANY, "model": TEXT | ANY,
        "too_long": st.sampled_from(["truncate", "refuse", "cut"]) | ANY}),
    "/inspect/attention": st.fixed_dictionaries({"text": TEXT | ANY}, optional={
        "layer": st.integers(-1, 3) | ANY, "kind": st.sampled_from(["cross", "encoder", "decoder", "self"]) | ANY,
        "target": TEXT | ANY}),
}


@settings(deadline=None, derandomize=True, max_examples=80)
@given(request=st.sampled_from(sorted(BODIES)).flatmap(lambda path: st.tuples(st.just(path), BODIES[path])))
def test_fuzzed_json_gets_a_4xx_or_a_whole_reply(server, request):
    path, body = request
    r = post(server.url, path, body)
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    elif body.get("stream") is True:
        lines = [line for line in r.text.split("\n") if line]
        assert lines[-1] == "data: [DONE]", lines
        assert all("error" not in json.loads(line[6:]) for line in lines[:-1])
    else:
        assert "error" not in r.json()


# --- the page -------------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Each element's attributes, by id."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs, tag=tag)
        if attributes.get("id"):
            self.by_id[attributes["id"]] = attributes


def test_the_page_has_a_translate_view(server):
    page = httpx.get(server.url + "/", timeout=TIMEOUT)
    assert page.status_code == 200
    elements = Elements()
    elements.feed(page.text)
    ids = elements.by_id
    assert {"tab-translate", "translate-view", "translate-form", "translate-source", "translate-beam",
            "translate-run", "translation", "inspect-kind", "inspect-target"} <= set(ids)
    assert (ids["translation"]["dir"], ids["translation"]["lang"]) == ("rtl", "fa")  # the Persian: right to left
    assert (ids["translate-source"]["dir"], ids["translate-source"]["lang"]) == ("ltr", "en")
    assert ids["translate-source"]["tag"] == "textarea"
    assert '<script src="/static/translate.js">' in page.text
    script = httpx.get(server.url + "/static/translate.js", timeout=TIMEOUT)
    assert script.status_code == 200 and "/v1/translations" in script.text
    assert not re.search(r"https?://", page.text + script.text)  # offline: nothing fetched from elsewhere


# --- the Inspect view's endpoint on a translator ------------------------------------------------------


def inspect(url: str, body: dict | bytes) -> httpx.Response:
    return post(url, "/inspect/attention", body)


def test_inspect_cross_attention_is_the_models(server, mt):
    got = inspect(server.url, {"text": SENTENCE}).json()  # kind: cross, the default; target: its own
    maps = translation_attention(mt, SENTENCE, max_tokens=64)
    T, S = len(maps.target_tokens), len(maps.source_tokens)
    assert (got["kind"], got["causal"], got["layer"], got["layers"], got["heads"]) == ("cross", False, None, 2, 2)
    assert got["rows"] == got["target_tokens"] == maps.target_tokens and T > 3
    assert got["cols"] == got["source_tokens"] == maps.source_tokens and S > 3
    assert got["target"] == maps.target == mt.translate(SENTENCE, beam=1) and got["target_cut"] is False
    weights = torch.tensor(got["weights"], dtype=torch.float64)
    assert weights.shape == (2, 2, T, S)
    assert torch.allclose(weights, maps.cross.double(), atol=5e-5, rtol=0)  # rounded to 4 decimals
    assert torch.equal(weights, weights.round(decimals=4))
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, T, dtype=torch.float64), atol=S * 5e-5)

    one = inspect(server.url, {"text": SENTENCE, "kind": "cross", "layer": 1}).json()
    assert one["layer"] == 1 and one["weights"][0] is None and one["weights"][1] == got["weights"][1]


def test_inspect_encoder_and_decoder_attention_with_a_target(server, mt):
    target = "گربه روی فرش نشست."
    maps = translation_attention(mt, SENTENCE, target, max_tokens=64)
    for kind, rows, cols, expected in (("encoder", maps.source_tokens, maps.source_tokens, maps.encoder),
                                       ("decoder", maps.target_tokens, maps.target_tokens, maps.decoder),
                                       ("cross", maps.target_tokens, maps.source_tokens, maps.cross)):
        r = inspect(server.url, {"text": SENTENCE, "target": target, "kind": kind, "layer": 0})
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["kind"], got["rows"], got["cols"], got["target"]) == (kind, rows, cols, target)
        assert got["causal"] == (kind == "decoder") and got["weights"][1] is None
        weights = torch.tensor(got["weights"][0], dtype=torch.float64)
        assert torch.allclose(weights, expected[0].double(), atol=5e-5, rtol=0)
        assert torch.allclose(weights.sum(-1), torch.ones(2, len(rows), dtype=torch.float64),
                              atol=len(cols) * 5e-5)
        if kind == "decoder":  # the decoder never reads ahead: exactly zero
            assert (weights[:, torch.ones(len(rows), len(rows), dtype=torch.bool).triu(1)] == 0).all()


BAD_INSPECT = [
    # (body, param, code or None)
    ({"text": SENTENCE, "kind": "self"}, "kind", None),
    ({"text": SENTENCE, "kind": 1}, "kind", None),
    ({"text": SENTENCE, "target": ""}, "target", "empty_text"),
    ({"text": SENTENCE, "target": " \n"}, "target", "empty_text"),
    ({"text": SENTENCE, "target": 5}, "target", None),
    ({"text": " "}, "text", "empty_text"),
    ({"text": "cat " * 70}, "text", "too_many_tokens"),  # 71 tokens with <|eos|>: under the context, over 64
    ({"text": LONG}, "text", "too_many_tokens"),  # over the context too
    ({"text": SENTENCE, "target": "سلام " * 70}, "target", "too_many_tokens"),
    ({"text": SENTENCE, "layer": 2}, "layer", "invalid_layer"),
]


@pytest.mark.parametrize("body,param,code", BAD_INSPECT, ids=[str(i) for i in range(len(BAD_INSPECT))])
def test_inspect_bad_input_is_a_400(server, body, param, code):
    error = error_of(inspect(server.url, body), 400)
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_inspect_reply_size_is_capped(server, monkeypatch):
    import sokhan.serve.app

    got = inspect(server.url, {"text": SENTENCE}).json()
    T, S = len(got["rows"]), len(got["cols"])
    monkeypatch.setattr(sokhan.serve.app, "INSPECT_MAX_CELLS", 2 * T * S)  # one layer's two heads, not two layers
    error = error_of(inspect(server.url, {"text": SENTENCE}), 400)
    assert (error["code"], error["param"]) == ("too_many_weights", "layer")
    assert inspect(server.url, {"text": SENTENCE, "layer": 0}).status_code == 200


# --- the page in a browser (the system Chromium, as tests/test_webchat.py; skipped without it) -------------


def visible(token: str) -> str:
    """How the page shows a token (inspect.js's `visible`)."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def test_translate_view_streams_persian_right_to_left(browser, server, mt):
    expect = pytest.importorskip("playwright.sync_api").expect
    with local_page(browser, server.url) as page:
        expect(page.locator("#model-name")).to_have_text(NAME)
        expect(page.locator("#translate-view")).to_be_visible()  # a translator's page opens on it
        expect(page.locator("#tab-chat")).to_be_hidden()
        expect(page.locator("#chat-view")).to_be_hidden()
        expect(page.locator("#temperature")).to_be_hidden()  # the chat's controls are the chat's
        page.fill("#api-key", KEY)
        page.fill("#translate-source", SENTENCE)
        page.fill("#translate-beam", "1")
        page.click("#translate-run")
        output = page.locator("#translation")
        expect(output).to_have_attribute("data-done", "true")
        assert output.inner_text() == mt.translate(SENTENCE, beam=1)
        assert PERSIAN.search(output.inner_text())
        assert output.evaluate("el => getComputedStyle(el).direction") == "rtl"
        assert page.locator("#translate-source").evaluate("el => getComputedStyle(el).direction") == "ltr"
        assert page.locator("#translate-status").inner_text().strip() == ""

        english = TINY_PAIRS[1][0]  # a beam search: the translation comes in one piece
        page.fill("#translate-source", english)
        page.fill("#translate-beam", "4")
        page.press("#translate-source", "Enter")
        expect(output).to_have_text(mt.translate(english, beam=4))
        expect(output).to_have_attribute("data-done", "true")

        page.fill("#api-key", "wrong")  # the server's error is shown
        page.click("#translate-run")
        expect(page.locator("#translate-view")).to_have_attribute("data-state", "error")
        expect(page.locator("#translate-status")).to_contain_text("API key")


def test_inspect_view_draws_cross_attention(browser, server, mt):
    expect = pytest.importorskip("playwright.sync_api").expect
    with local_page(browser, server.url, height=760) as page:
        expect(page.locator("#model-name")).to_have_text(NAME)
        page.fill("#api-key", KEY)
        page.click("#tab-inspect")
        expect(page.locator("#inspect-view")).to_be_visible()
        expect(page.locator("#inspect-kind")).to_be_visible()
        expect(page.locator("#inspect-target")).to_be_visible()
        expect(page.locator("#next-figure")).to_be_hidden()  # a translator has no next token of its own
        assert page.locator("#inspect-kind").input_value() == "cross"
        page.fill("#inspect-text", SENTENCE)
        page.click("#inspect-run")
        expect(page.locator("#inspect-view")).to_have_attribute("data-state", "done")

        maps = translation_attention(mt, SENTENCE, max_tokens=64)
        T, S = len(maps.target_tokens), len(maps.source_tokens)
        heatmap = page.locator("#heatmap")
        expect(heatmap).to_have_attribute("data-kind", "cross")
        expect(heatmap.locator("rect.cell")).to_have_count(T * S)
        assert heatmap.locator(".row-labels text").all_text_contents() == [visible(t) for t in maps.target_tokens]
        assert heatmap.locator(".col-labels text").all_text_contents() == [visible(t) for t in maps.source_tokens]
        cells = page.eval_on_selector_all("#heatmap rect.cell",
                                          "rs => rs.map(r => [+r.dataset.row, +r.dataset.col, +r.dataset.value])")
        drawn = [[0.0] * S for _ in range(T)]
        for row, col, value in cells:
            drawn[row][col] = value
        expected = maps.cross[0].mean(dim=0)  # layer 1, the mean of the heads
        assert all(abs(drawn[t][s] - float(expected[t, s])) < 1e-4 for t in range(T) for s in range(S))
        assert all(abs(sum(row) - 1) < 1e-3 for row in drawn)

        def box(row, col):
            return heatmap.locator(f'rect.cell[data-row="{row}"][data-col="{col}"]').bounding_box()
        assert box(0, 0)["x"] < box(0, S - 1)["x"]  # English columns read left to right
        expect(page.locator("#inspect-read")).to_contain_text(maps.target)

        page.select_option("#inspect-kind", "decoder")  # another kind: asked for, drawn right to left
        expect(heatmap).to_have_attribute("data-kind", "decoder")
        expect(page.locator("#inspect-view")).to_have_attribute("data-state", "done")
        expect(page.locator("#heatmap rect.cell")).to_have_count(T * T)
        expect(page.locator("#heatmap rect.cell.masked")).to_have_count(T * (T - 1) // 2)
        assert box(T - 1, 0)["x"] > box(T - 1, T - 1)["x"]


def test_warnings_filters_are_left_as_they_were(server):
    """The server silences `SourceTooLong` only around a translation it cut, and puts the filters back."""
    before = list(warnings.filters)
    assert translate(server.url, {"text": LONG}).json()["truncated"] is True
    assert warnings.filters == before
