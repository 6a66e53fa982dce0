"""The HTTP server: OpenAI's completions and chat-completions API over one sokhan model (or a translate endpoint over
a translation model), plus a chat, translate and inspect page.

    sokhan serve runs/demo/pretrain --port 8000
    curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \
         -d '{"messages": [{"role": "user", "content": "سلام"}]}'

OpenAI's wire format is what clients, SDKs and tools already speak, so the official `openai`
package (or anything built on it) works against a local model by changing `base_url`.
Streaming uses OpenAI's server-sent events: `data: {chunk}` per text piece, a last chunk with
`finish_reason`, then `data: [DONE]`.

A translation model (family seq2seq, `capabilities.needs_source`) is served with an endpoint of
its own instead (OpenAI has none for text: its /v1/audio/translations takes audio); completions
and chat on it, and a translation asked of a language model, are a 400 (`unsupported_model_family`):

    POST /v1/translations {"text": "...", "beam": 4, "stream": false, "too_long": "truncate"}
      -> {"id": "translation-…", "object": "translation", "created": t, "model": "...",
          "translation": "...", "beam": 4, "truncated": false,
          "usage": {"prompt_tokens": s, "completion_tokens": n, "total_tokens": s + n}}

`text` is required, at most 10,000 characters (refused before it is normalized); an empty or
blank text is an empty translation. `beam` is 1–16: 4 (the paper's) by default, 1 when streamed.
`too_long`: a source longer than the model's context is cut to it ("truncate", the default: the
reply says `"truncated": true`) or refused with a 400 ("refuse", code `context_length_exceeded`).
`prompt_tokens` counts what the encoder read (with <|eos|>), `completion_tokens` the translation's
text encoded. With `"stream": true` the reply is server-sent events framed as the chat's:

    data: {"id": …, "object": "translation.chunk", "created": t, "model": "...", "delta": "…", "done": false}
    …
    data: {"id": …, "object": "translation.chunk", …, "delta": "", "done": true, "beam": 1, "truncated": false,
           "usage": {...}}
    data: [DONE]

Only greedy decoding (beam 1, the default when streaming) streams piece by piece, each piece
text that is settled (`infer.translate.stream_translation`: the pieces joined are the beam-1
translation); a beam search (beam > 1) knows its translation only at its end, so it comes as one
chunk. `GET /health` says which views the page shows (`views`: chat or translate, and inspect)
and, for a translator, its languages and limits (`translation`).

Bad input is always a 4xx with OpenAI's error body (see `errors.py`). Generation runs on the
model's worker thread (see `worker.py`), or for a GPT in a batching process of its own that
decodes up to `--max-batch` replies together, one token each per step (`batch_process.py`), so
the event loop only moves bytes; each request
watches for its client going away from the moment its body is in (`Departure`), and stops
building its prompt or cancels its job, which frees the model at once.

What a stranger can make the server do is bounded: the body (1 MiB, sent within
`body_timeout` seconds, JSON as `application/json` only), the messages of a chat (2,048, the
history trimmed in one pass), a prompt that cannot fit (refused by its length before it is
normalized), a source to translate (10,000 characters, then cut to the context), the requests
waiting for the model (`max_queued`, then 429 with Retry-After), and who may call at all: a name
in `Host` and the page's `Origin` are checked (`guard.py`).

Beside OpenAI's API, the page's "Inspect" view has two JSON endpoints of its own (same key,
same error shape, run on the same worker thread):

    POST /inspect/attention {"text": "...", "layer": null}
      -> {"tokens": [...], "layers": L, "heads": H, "causal": true, "layer": null,
          "weights": [layer][head][query][key]}   (4 decimals; a layer not asked for is null)
    POST /inspect/next {"text": "...", "k": 10}
      -> {"tokens": [{"token": "...", "prob": 0.12}, ...], "context_tokens": n}

On a translation model, /inspect/attention reads `text` as the English source and `target` as
the Persian the decoder reads (left out: the model's own greedy translation, cut to the limit,
`target_cut` says so), and answers one `kind` of attention (default "cross"):

    POST /inspect/attention {"text": "...", "target": null, "kind": "cross", "layer": 0}
      -> {"kind": "cross", "rows": [target tokens], "cols": [source tokens],
          "source_tokens": [...], "target_tokens": [...], "target": "...", "target_cut": false,
          "layers": L, "heads": H, "causal": false, "layer": 0, "weights": [layer][head][row][col]}

"encoder": source over source (rows = cols = source tokens); "decoder": target over the target
so far (causal: the upper triangle is 0); "cross": each target token over the source. The
source and a given target may each have `INSPECT_MAX_TOKENS` tokens (or the model's context);
/inspect/next is a 400 on a translator (its decoder needs a source).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from sokhan.api import LanguageModel
from sokhan.config import SampleConfig, TranslateConfig
from sokhan.config.serve import BODY_TIMEOUT, MAX_BATCH, MAX_QUEUED, check_api_key
from sokhan.errors import SokhanError
from sokhan.infer.chat import Cancelled, chat_prompt, surely_longer
from sokhan.infer.sampling import StreamStats
from sokhan.infer.translate import SourceTooLong, source_ids, stream_translation
from sokhan.inspect.attention import attention_maps, translation_attention
from sokhan.inspect.html import view_script
from sokhan.models.checkpoint import run_folder
from sokhan.serve.errors import APIError, install_handlers
from sokhan.serve.guard import RequestGuard
from sokhan.serve.jobs import Call, Job
from sokhan.serve.schemas import (
    MAX_BEAM,
    TRANSLATE_MAX_CHARS,
    AttentionRequest,
    ChatRequest,
    CompletionRequest,
    NextTokenRequest,
    SamplingFields,
    TranslationRequest,
)
from sokhan.serve.worker import ModelWorker

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far more than any context this workbench trains
COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default for /v1/completions; chat defaults to the cap
STATIC = resources.files("sokhan.serve") / "static"
INSPECT_MAX_TOKENS = 64  # tokens (with <|bos|>) an attention request may look at; also ≤ the context
INSPECT_MAX_CELLS = 1 << 18  # attention weights in one reply (layers × heads × T²): at most ~2 MB of JSON


def default_model_name(path: str | Path) -> str:
    """The folder's name; for a checkpoint inside a run (`run/checkpoints/step-…`), the run's."""
    return run_folder(Path(path).resolve()).name


# JSON leaves these raw inside strings (with ensure_ascii=False), but line-splitting SSE clients
# (str.splitlines: httpx's iter_lines, Python's own readers) break a `data:` line at them.
LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
LINE_BREAKS = [chr(code) for code in LINE_BREAK_ESCAPES]


def sse(data: dict | str) -> str:
    """One server-sent event: `data: JSON` on one line, whatever the text in it.

    The line breaks are looked for before they are escaped: `str.translate` with a table goes through
    the text a character at a time (19 µs for a chunk of Persian text, 4 times the `json.dumps`), three
    searches take 0.1 µs, and text almost never holds one of them.
    """
    if isinstance(data, str):
        return f"data: {data}\n\n"
    text = json.dumps(data, ensure_ascii=False)
    if any(escape in text for escape in LINE_BREAKS):
        text = text.translate(LINE_BREAK_ESCAPES)
    return f"data: {text}\n\n"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The JSON request body, refused unless it is sent as `application/json` (415), within `limit`
    bytes (413, announced or actually sent) and within `timeout` seconds (408).

    A web page can send another site a body of a few "simple" types (text/plain, a form)
    without the browser asking that site first; JSON only as JSON keeps those out.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        shown = f"'{media_type}'" if media_type else "no Content-Type"
        raise APIError(415, f"the body must be JSON sent with 'Content-Type: application/json', not {shown}", None,
                       "unsupported_media_type")
    too_large = APIError(413, f"request body is larger than {limit} bytes", None, "request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout:g} seconds", None,
                       "request_timeout") from None
    return b"".join(chunks)


class Departure:
    """Watches for a request's client going away, from when its body is read until `close()`.

    Work for a client that has gone stops: `gone` is polled while its prompt is built (on a
    worker thread of the pool), and the job or call `attach`ed to it is abandoned.
    """

    def __init__(self, request: Request):
        self.gone = threading.Event()
        self.job: Job | Call | None = None
        self.watcher = asyncio.create_task(self.watch(request))

    async def watch(self, request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":  # the body is read: what comes is the hang-up
            pass
        self.gone.set()
        if self.job is not None:
            self.job.abandon()

    def attach(self, job: Job | Call) -> None:
        self.job = job
        if self.gone.is_set():  # it left while the prompt was built
            job.abandon()

    def close(self) -> None:
        """The reply is over (or the client gone): stop watching and free the model."""
        self.watcher.cancel()
        if self.job is not None:
            self.job.abandon()


class JobStream(StreamingResponse):
    """A streaming reply that, however it ends (done, client gone, server stopping), frees the model."""

    def __init__(self, content: AsyncIterator[str], departure: Departure):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.departure = departure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.departure.close()


class Server:
    """The state one app needs: the model's worker, its name and limits, the API key."""

    def __init__(self, lm: LanguageModel, model_name: str, api_key: str | None, max_tokens_cap: int,
                 max_body_bytes: int, max_queued: int, body_timeout: float, max_batch: int):
        self.lm, self.model_name = lm, model_name
        self.api_key = None if api_key is None else check_api_key(api_key, "the API key").encode()
        self.cap, self.max_body_bytes, self.max_queued, self.body_timeout = (max_tokens_cap, max_body_bytes,
                                                                             max_queued, body_timeout)
        self.worker = ModelWorker(lm, max_batch)
        self.created = int(time.time())
        self.translator = lm.capabilities.needs_source  # an encoder–decoder: it translates, it does not chat

    def views(self) -> list[str]:
        """The page's views this model offers (public, in /health): a translator's page translates, not chats."""
        return ["translate", "inspect"] if self.translator else ["chat", "inspect"]

    def translation_info(self) -> dict | None:
        """What the page's Translate view needs to know (public, in /health); None for a language model."""
        if not self.translator:
            return None
        langs = self.lm.config.get("translation", {})
        return {"source_lang": langs.get("source_lang", "en"), "target_lang": langs.get("target_lang", "fa"),
                "beam": TranslateConfig().beam, "max_beam": MAX_BEAM, "max_chars": TRANSLATE_MAX_CHARS}

    def refuse_translator(self) -> None:
        """400 for a completion or a chat asked of a translation model."""
        if self.translator:
            raise APIError(400, f"this server's model '{self.model_name}' is a translation model (seq2seq): it writes "
                           "Persian for an English sentence and neither completes text nor chats; use POST "
                           "/v1/translations with {\"text\": \"...\"}", None, "unsupported_model_family")

    def refuse_language_model(self) -> None:
        """400 for a translation asked of a language model."""
        if not self.translator:
            raise APIError(400, f"this server's model '{self.model_name}' is a '{self.lm.family}' language model, not "
                           "a translator; use POST /v1/completions or /v1/chat/completions", None,
                           "unsupported_model_family")

    # --- requests -------------------------------------------------------------------------------

    def check_key(self, request: Request) -> None:
        """401 unless the request carries the key. Starlette decodes header bytes as Latin-1:
        encoding them back gives the bytes sent, which are the key's UTF-8 when it is not ASCII."""
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("latin-1"), self.api_key):
            raise APIError(401, "missing or incorrect API key: send 'Authorization: Bearer KEY'",
                           None, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_body(self, request: Request) -> bytes:
        return await read_body(request, self.max_body_bytes, self.body_timeout)

    def admit(self) -> None:
        """429 when `max_queued` requests already wait for the model: a wait that grows without end
        helps nobody, and the client learns when to try again."""
        waiting = self.worker.waiting()
        if waiting >= self.max_queued:
            retry = max(1, math.ceil(self.worker.expected_wait()))
            raise APIError(429, f"the server is busy: {waiting} requests are waiting for the model; try again in "
                           f"{retry} s", None, "server_busy", type="rate_limit_error",
                           headers={"Retry-After": str(retry)})

    def max_tokens(self, requested: int | None, default: int, param: str) -> int:
        n = default if requested is None else requested
        if n > self.cap:
            raise APIError(400, f"{param} is {n}, more than this server allows ({self.cap}; the model's context "
                           f"is {self.lm.block_size} tokens)", param, "max_tokens_too_large")
        return n

    def sample_config(self, req: SamplingFields, max_tokens: int) -> SampleConfig:
        return SampleConfig(max_new_tokens=max_tokens, temperature=req.temperature, top_k=req.top_k,
                            top_p=req.top_p, seed=req.seed, stop=req.stop_list())

    def completion_prompt(self, prompt: str) -> list[int]:
        """<|bos|> + the prompt, refused if it cannot fit the context: by its length alone when that
        says so (before normalizing a megabyte), else by its tokens."""
        block = self.lm.block_size
        if surely_longer(self.lm.tokenizer, prompt, block - 1):
            raise APIError(400, f"the prompt ({len(prompt)} characters) is more than this model's context of {block} "
                           "tokens", "prompt", "context_length_exceeded")
        ids = self.lm.encode_prompt(prompt)
        if len(ids) > block:
            raise APIError(400, f"the prompt is {len(ids)} tokens; this model's context is {block}",
                           "prompt", "context_length_exceeded")
        return ids

    # --- the inspector --------------------------------------------------------------------------

    @property
    def inspect_max_tokens(self) -> int:
        return min(INSPECT_MAX_TOKENS, self.lm.block_size)

    def inspect_info(self) -> dict:
        """What the page's Inspect view needs to know before asking (public, in /health). A translator has
        three kinds of attention (`kinds`, each `layers` deep: its encoder and decoder have as many layers)
        and no next token of its own (its decoder needs a source)."""
        attention = None
        if self.lm.capabilities.attention:
            attention = {"layers": self.lm.model.config.n_layer, "heads": self.lm.model.config.n_head,
                         "max_tokens": self.inspect_max_tokens}
            if self.translator:
                attention["kinds"] = list(ATTENTION_KINDS)
        return {"family": self.lm.family, "attention": attention,
                "next_token": self.lm.capabilities.causal and not self.translator}

    def attention_reply(self, lm: LanguageModel, text: str, layer: int | None) -> dict:
        """On the worker thread: the attention weights of `text`, as JSON (see the module's docstring)."""
        ids = lm.encode_prompt(text)
        limit = self.inspect_max_tokens
        if len(ids) > limit:
            raise APIError(400, f"text: it is {len(ids)} tokens with <|bos|>; the inspector looks at {limit} at most",
                           "text", "too_many_tokens")
        maps = attention_maps(lm, text, max_tokens=limit)
        cells = (1 if layer is not None else maps.layers) * maps.heads * len(maps.tokens) ** 2
        if cells > INSPECT_MAX_CELLS:
            raise APIError(400, f"{cells} weights are more than one reply carries ({INSPECT_MAX_CELLS}): ask for "
                           "one layer, or a shorter text", "layer", "too_many_weights")
        # float64 before rounding, so that the JSON says 0.1234, not float32's 0.12340000271797180
        weights = maps.weights.double().round(decimals=4)
        return {"tokens": maps.tokens, "layers": maps.layers, "heads": maps.heads, "causal": maps.causal,
                "layer": layer, "weights": [weights[i].tolist() if layer in (None, i) else None
                                            for i in range(maps.layers)]}

    def translation_attention_reply(self, lm: LanguageModel, text: str, target: str | None, kind: str,
                                    layer: int | None) -> dict:
        """On the worker thread: one kind of a translator's attention on `text` (and `target`, default its own
        translation), as JSON (see the module's docstring). A source or a given target over the inspector's
        limit is refused; the model's own translation is cut to it (`target_cut`)."""
        limit = self.inspect_max_tokens
        try:
            n: int | None = len(source_ids(lm, text, "refuse"))
        except SokhanError:  # longer than the model's context
            n = None
        if n is None or n > limit:
            told = f"more than {lm.block_size}" if n is None else n
            raise APIError(400, f"text: it is {told} tokens with <|eos|>; the inspector looks at {limit} at most",
                           "text", "too_many_tokens")
        if target is not None and target_length(lm, target) > limit:
            raise APIError(400, f"target: it is {target_length(lm, target)} tokens with <|bos|>; the inspector "
                           f"looks at {limit} at most", "target", "too_many_tokens")
        maps = translation_attention(lm, text, target, max_tokens=limit)
        chosen = maps.maps(kind)
        rows, cols, weights = chosen.tokens, chosen.keys, chosen.weights
        cells = (1 if layer is not None else weights.size(0)) * weights.size(1) * len(rows) * len(cols)
        if cells > INSPECT_MAX_CELLS:
            raise APIError(400, f"{cells} weights are more than one reply carries ({INSPECT_MAX_CELLS}): ask for "
                           "one layer, or a shorter text", "layer", "too_many_weights")
        weights = weights.double().round(decimals=4)  # float64 first: see attention_reply
        return {"kind": kind, "rows": rows, "cols": cols, "source_tokens": maps.source_tokens,
                "target_tokens": maps.target_tokens, "target": maps.target,
                "target_cut": maps.target_total > len(maps.target_ids),
                "layers": weights.size(0), "heads": weights.size(1), "causal": kind == "decoder", "layer": layer,
                "weights": [weights[i].tolist() if layer in (None, i) else None for i in range(weights.size(0))]}

    # --- translation ----------------------------------------------------------------------------

    def translation_source(self, lm: LanguageModel, text: str, too_long: str) -> tuple[int, bool]:
        """On the worker thread: (the tokens the encoder reads, whether the source is cut to the context).
        A source too long for the context is refused (400, the library's message) with too_long "refuse"."""
        if not text.strip():
            return 0, False
        try:
            return len(source_ids(lm, text, "refuse")), False
        except SokhanError as e:
            if too_long == "refuse":
                raise APIError(400, str(e), "text", "context_length_exceeded") from None
            return lm.block_size, True

    def translation_job(self, req: TranslationRequest, cfg: TranslateConfig) -> Job:
        """The streamed translation of `req.text`: greedy pieces as they are settled (`stream_translation`), or
        with a beam > 1 the beam search's translation as one piece. Its result is what `TranslationReply` needs."""
        done: dict[str, Any] = {}

        def pieces(lm: LanguageModel, cancelled: Callable[[], bool]) -> Iterable[str]:
            done["source_tokens"], done["truncated"] = self.translation_source(lm, req.text, cfg.too_long)
            out = []
            with quietly_cut(done["truncated"]):
                stream = (stream_translation(lm, req.text, cfg) if cfg.beam == 1
                          else iter([lm.translate(req.text, **cfg.to_dict())]))
                for piece in stream:
                    if piece:
                        out.append(piece)
                        yield piece
            done["translation_tokens"] = translation_tokens(lm, "".join(out))

        return Job(pieces, lambda: done, asyncio.get_running_loop())

    def translation(self, lm: LanguageModel, req: TranslationRequest, cfg: TranslateConfig) -> dict:
        """On the worker thread: the whole reply of a translation not streamed."""
        n, cut = self.translation_source(lm, req.text, cfg.too_long)
        with quietly_cut(cut):
            text = lm.translate(req.text, **cfg.to_dict())
        reply = TranslationReply(self, cfg.beam)
        return reply.whole(text, {"source_tokens": n, "truncated": cut,
                                  "translation_tokens": translation_tokens(lm, text)})

    async def translate(self, request: Request, req: TranslationRequest, cfg: TranslateConfig) -> Response:
        """Answer with the whole translation, or stream it (as `run` streams a reply) once its first event is in:
        a source refused is still a proper 400."""
        if not req.stream:
            return await self.call(request, lambda m: self.translation(m, req, cfg))
        self.admit()
        departure = Departure(request)
        handed_over = False
        try:
            job = self.worker.submit_job(self.translation_job(req, cfg))
            departure.attach(job)
            kind, value = await job.next_event()
            if kind == "error":
                raise value
            if kind == "cancelled":
                return Response(status_code=499)  # the client is gone; nobody reads this
            handed_over = True
            return JobStream(self.translation_events(job, kind, value, TranslationReply(self, cfg.beam)), departure)
        finally:
            if not handed_over:
                departure.close()

    async def translation_events(self, job: Job, kind: str, value: Any, reply: TranslationReply,
                                 ) -> AsyncIterator[str]:
        while kind == "text":
            yield sse(reply.chunk(value))
            kind, value = await job.next_event()
        if kind == "done":
            yield sse(reply.last(value))
            yield sse("[DONE]")
        elif kind == "error":
            yield sse(stream_error(value))
        # "cancelled": the client is gone, there is no one to write to

    async def call(self, request: Request, fn: Callable[[LanguageModel], dict]) -> Response:
        """`fn(lm)` on the model's worker thread, in turn with generation, answered as JSON.

        Like a generation, the call is dropped if its client hangs up while it waits.
        """
        self.admit()
        departure = Departure(request)
        call = self.worker.call(fn)
        departure.attach(call)
        try:
            await asyncio.wait([call.future])
            if call.future.cancelled():
                return Response(status_code=499)  # the client is gone; nobody reads this
            return JSONResponse(call.future.result())  # or raises fn's error, which becomes the reply
        finally:
            departure.close()

    # --- replies --------------------------------------------------------------------------------

    async def run(self, request: Request, prompt: Callable[[Callable[[], bool]], list[int]], cfg: SampleConfig,
                  stream: bool, chat: bool, include_usage: bool) -> Response:
        """Build the prompt (`prompt(gone)`, off the event loop), submit the job; answer with the whole
        reply, or stream it once the first event is in.

        Waiting for the first event before answering means an error at the first token
        (broken weights) is still a proper error status, not a broken stream.
        """
        departure = Departure(request)
        handed_over = False
        try:
            try:
                prompt_ids = await run_in_threadpool(prompt, departure.gone.is_set)
            except Cancelled:
                return Response(status_code=499)  # the client is gone; nobody reads this
            reply = Reply(self, chat, prompt_ids, include_usage)
            self.admit()
            job = self.worker.submit(prompt_ids, cfg)
            departure.attach(job)
            kind, value = await job.next_event()
            if stream and kind in ("text", "done"):
                handed_over = True
                return JobStream(self.stream_events(job, kind, value, reply), departure)
            pieces = []
            while kind == "text":
                pieces.append(value)
                kind, value = await job.next_event()
            if kind == "error":
                raise value
            if kind == "cancelled":
                return Response(status_code=499)  # the client is gone; nobody reads this
            return JSONResponse(reply.whole("".join(pieces), value))
        finally:
            if not handed_over:
                departure.close()

    async def stream_events(self, job: Job, kind: str, value: Any, reply: Reply) -> AsyncIterator[str]:
        """The reply's server-sent events. The events that are in when one is written go out with it, in one
        write: the role chunk with the first text, the last text with the end, usage and [DONE]. A socket
        write was a sixth of the event loop's time under 16 streaming clients; a chat reply of four text
        flushes took 8 writes and now takes 4."""
        events = [sse(reply.chunk({"role": "assistant", "content": ""}, None))] if reply.chat else []
        while kind == "text":
            events.append(sse(reply.chunk(value, None)))
            ready = job.ready_event()
            if ready is None:
                yield "".join(events)
                events = []
                ready = await job.next_event()
            kind, value = ready
        if kind == "done":
            events.append(sse(reply.chunk("", value.finish_reason)))
            if reply.include_usage:
                events.append(sse({**reply.envelope([]), "usage": reply.usage(value)}))
            events.append(sse("[DONE]"))
        elif kind == "error":
            events.append(sse(stream_error(value)))
        if events and kind != "cancelled":  # cancelled: the client is gone, there is no one to write to
            yield "".join(events)


ATTENTION_KINDS = ("cross", "encoder", "decoder")  # a translator's, the default first


def stream_error(error: BaseException) -> dict:
    """The last event of a stream that failed after it began (its status is already sent)."""
    message = str(error) if isinstance(error, (SokhanError, APIError)) else f"generation failed: {type(error).__name__}"
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def target_length(lm: LanguageModel, target: str) -> int:
    """The tokens the decoder reads for `target`: <|bos|> and the normalized Persian, as
    `inspect.attention.translation_attention` reads it."""
    return 1 + len(lm.tokenizer.encode_plain(lm.normalize(target).strip()))


def translation_tokens(lm: LanguageModel, text: str) -> int:
    """The length of a translation in tokens: its text encoded (what the decoder wrote, without <|eos|>)."""
    return len(lm.tokenizer.encode_plain(text)) if text else 0


@contextlib.contextmanager
def quietly_cut(cut: bool) -> Iterator[None]:
    """Around a translation whose source is cut to the context: the reply says so (`truncated`), so the
    library's `SourceTooLong` warning would only repeat it in the server's log."""
    if not cut:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SourceTooLong)
        yield


class TranslationReply:
    """The bodies of one translation (see the module's docstring): streamed chunks share one id and timestamp."""

    def __init__(self, server: Server, beam: int):
        self.server, self.beam = server, beam
        self.id = f"translation-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def envelope(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.server.model_name}

    def summary(self, done: dict) -> dict:
        n, m = done["source_tokens"], done["translation_tokens"]
        return {"beam": self.beam, "truncated": done["truncated"],
                "usage": {"prompt_tokens": n, "completion_tokens": m, "total_tokens": n + m}}

    def whole(self, text: str, done: dict) -> dict:
        return {**self.envelope("translation"), "translation": text, **self.summary(done)}

    def chunk(self, piece: str) -> dict:
        return {**self.envelope("translation.chunk"), "delta": piece, "done": False}

    def last(self, done: dict) -> dict:
        return {**self.envelope("translation.chunk"), "delta": "", "done": True, **self.summary(done)}


class Reply:
    """The bodies of one reply in OpenAI's format: streamed chunks share one id and timestamp, as OpenAI's do."""

    def __init__(self, server: Server, chat: bool, prompt_ids: list[int], include_usage: bool = False):
        self.server, self.chat, self.prompt_ids, self.include_usage = server, chat, prompt_ids, include_usage
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def envelope(self, choices: list[dict], whole: bool = False) -> dict:
        obj = ("chat.completion" if whole else "chat.completion.chunk") if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.server.model_name,
                "system_fingerprint": None, "choices": choices}

    def chunk(self, piece: str | dict, finish_reason: str | None) -> dict:
        """A streamed chunk: `piece` is text, or for chat a whole delta (the opening role)."""
        if self.chat:
            delta = piece if isinstance(piece, dict) else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish_reason}
        return self.envelope([choice])

    def whole(self, text: str, progress: StreamStats) -> dict:
        """The non-streamed body, with `usage`."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": progress.finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": progress.finish_reason}
        return {**self.envelope([choice], whole=True), "usage": self.usage(progress)}

    def usage(self, progress: StreamStats) -> dict[str, int]:
        n = len(self.prompt_ids)
        return {"prompt_tokens": n, "completion_tokens": progress.tokens, "total_tokens": n + progress.tokens}


def create_app(lm: LanguageModel, *, model_name: str | None = None, api_key: str | None = None,
               max_tokens_cap: int | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (), max_queued: int = MAX_QUEUED,
               body_timeout: float = BODY_TIMEOUT, max_batch: int = MAX_BATCH) -> FastAPI:
    """The ASGI app serving `lm`. `max_tokens_cap` defaults to the model's context (block size);
    the other options are `ServeConfig`'s (`config/serve.py`)."""
    cap = lm.block_size if max_tokens_cap is None else max_tokens_cap
    if cap < 1:
        raise SokhanError("--max-tokens-cap must be ≥ 1")
    if max_batch < 1:
        raise SokhanError("--max-batch must be ≥ 1")
    server = Server(lm, model_name or default_model_name(lm.path), api_key, cap, max_body_bytes, max_queued,
                    body_timeout, max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.worker.start()
        yield
        server.worker.close()

    app = FastAPI(title="sokhan", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    install_handlers(app)
    cors_origins = list(cors_origins)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(RequestGuard, allowed_hosts=list(allowed_hosts), cors_origins=cors_origins)  # outermost
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(server.check_key)])

    @v1.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(server)]}

    @v1.get("/models/{name:path}")
    async def get_model(name: str) -> dict:
        if name != server.model_name:
            raise APIError(404, f"no model '{name}' here; this server serves '{server.model_name}'", "model",
                           "model_not_found")
        return model_card(server)

    @v1.post("/completions")
    async def completions(request: Request) -> Response:
        body = await server.read_body(request)
        server.refuse_translator()
        req = CompletionRequest.model_validate_json(body)
        n = server.max_tokens(req.max_tokens, min(COMPLETION_DEFAULT_TOKENS, server.cap), "max_tokens")
        cfg = server.sample_config(req, n)
        return await server.run(request, lambda gone: server.completion_prompt(req.prompt), cfg, req.stream,
                                chat=False, include_usage=req.include_usage)

    @v1.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await server.read_body(request)
        server.refuse_translator()
        req = ChatRequest.model_validate_json(body)
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        n = server.max_tokens(req.requested_tokens(), server.cap, param)
        cfg = server.sample_config(req, n)
        messages = [m.to_message() for m in req.messages]
        return await server.run(request, lambda gone: chat_prompt(lm, messages, n, gone), cfg, req.stream,
                                chat=True, include_usage=req.include_usage)

    @v1.post("/translations")
    async def translations(request: Request) -> Response:
        body = await server.read_body(request)
        server.refuse_language_model()
        req = TranslationRequest.model_validate_json(body)
        beam = req.beam if req.beam is not None else (1 if req.stream else TranslateConfig().beam)
        return await server.translate(request, req, TranslateConfig(beam=beam, too_long=req.too_long))

    app.include_router(v1)

    # The inspector's endpoints run the model, so they need the key as /v1 does.
    inspect = APIRouter(prefix="/inspect", dependencies=[Depends(server.check_key)])

    @inspect.post("/attention")
    async def inspect_attention(request: Request) -> Response:
        req = AttentionRequest.model_validate_json(await server.read_body(request))
        info = server.inspect_info()["attention"]
        if info is None:
            raise APIError(400, f"this server's model is a '{lm.family}' model: only Transformers (gpt, bert) have "
                           "attention maps", None, "unsupported_model_family")
        if not req.text.strip():
            raise APIError(400, "text: give a text to look at", "text", "empty_text")
        if req.layer is not None and req.layer >= info["layers"]:
            raise APIError(400, f"layer: this model has {info['layers']} layers, numbered from 0", "layer",
                           "invalid_layer")
        if server.translator:
            if req.target is not None and not req.target.strip():
                raise APIError(400, "target: give the Persian to read, or leave target out to read the model's own "
                               "translation", "target", "empty_text")
            kind = req.kind or ATTENTION_KINDS[0]
            return await server.call(request, lambda m: server.translation_attention_reply(m, req.text, req.target,
                                                                                           kind, req.layer))
        for param in ("kind", "target"):
            if getattr(req, param) is not None:
                raise APIError(400, f"{param}: this server's model is a '{lm.family}' model with one kind of "
                               "attention; kind and target are for a translation model's", param,
                               "unsupported_model_family")
        return await server.call(request, lambda m: server.attention_reply(m, req.text, req.layer))

    @inspect.post("/next")
    async def inspect_next(request: Request) -> Response:
        req = NextTokenRequest.model_validate_json(await server.read_body(request))
        if server.translator:
            raise APIError(400, "this server's model is a translation model (seq2seq): its decoder predicts the next "
                           "token of a translation, given a source; ask POST /inspect/attention for what it reads",
                           None, "unsupported_model_family")
        if not lm.capabilities.causal:
            raise APIError(400, f"this server's model is a masked-LM encoder ({lm.family}), not a left-to-right "
                           "model: it has no next token to predict", None, "unsupported_model_family")
        k = min(req.k, lm.model.config.vocab_size)

        def top(m: LanguageModel) -> dict:
            n = min(len(m.encode_prompt(req.text)), m.block_size)
            return {"tokens": [{"token": t, "prob": round(p, 6)} for t, p in m.next_token_probs(req.text, k)],
                    "context_tokens": n}

        return await server.call(request, top)

    app.include_router(inspect)

    @app.get("/health")
    async def health() -> dict:
        """Public: what the page needs before it can talk to /v1 and /inspect (the name, whether a key is needed,
        which views to show)."""
        return {"status": "ok", "model": server.model_name, "api_key_required": server.api_key is not None,
                "max_tokens_cap": server.cap, "context": lm.block_size, "views": server.views(),
                "translation": server.translation_info(), "inspect": server.inspect_info()}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    # the renderer of the Inspect view is the one `sokhan inspect` embeds in its pages: one file, served from there
    @app.get("/static/view.js", include_in_schema=False)
    async def view_js() -> Response:
        return Response(view_script(), media_type="application/javascript", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def model_card(server: Server) -> dict:
    return {"id": server.model_name, "object": "model", "created": server.created, "owned_by": "sokhan",
            "context_length": server.lm.block_size, "max_tokens_cap": server.cap}


def model_threads(requested: int, default: int) -> int | None:
    """The threads the model's CPU ops get (`--threads`); None leaves torch's `default` as it is.

    By default one core is left to the HTTP side: on a machine of few cores the event loop that
    parses requests and streams replies, and torch's second thread, otherwise take turns on the
    same core. Measured with `benchmarks/serve_load.py` (16 clients, 2 cores, 8 alternating
    blocks) while the batch still ran on the server's thread: batched 3.31× one at a time with
    torch's 2 threads, 3.76× with 1. The batching process gets the same count (not measured
    again since it moved). An explicit OMP_NUM_THREADS is the user's choice and is kept.
    """
    if requested:
        return requested
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, default - 1)


def serve(lm: LanguageModel, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          announce: Callable[[str], object] = print, allowed_hosts: Iterable[str] = (), threads: int = 0,
          **app_options: Any) -> None:
    """Run the server in the foreground until Ctrl-C.

    The socket is bound here rather than by uvicorn so that a taken port or a bad address is
    one SokhanError line (uvicorn would log it and exit the process), and so that port 0 is
    announced as the port the system chose. The name given as `host` is one clients may use.
    `threads`: the model's CPU threads (`model_threads`; 0 leaves a core to the HTTP side).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        raise SokhanError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    port = sock.getsockname()[1]
    app = create_app(lm, allowed_hosts=[*allowed_hosts, host], **app_options)
    chosen = model_threads(threads, torch.get_num_threads())
    if chosen is not None:
        torch.set_num_threads(chosen)
    name = app.state.server.model_name
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    page, api = ("translate and inspect page", "POST /v1/translations") if lm.capabilities.needs_source else \
        ("chat and inspect page", "OpenAI API")
    announce(f"serving '{name}' at http://{shown}:{port}/ ({page}) and http://{shown}:{port}/v1 ({api}); Ctrl-C "
             "stops")
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
