"""Sampling from a causal language model: KV cache, temperature, top-k, top-p, stop strings, streaming.

`generate_ids` yields token ids one at a time; `stream_text` turns them into text pieces
that are safe to print (never half a UTF-8 character, never part of a stop string) with a
`TextStream`, which a server decoding many requests together (`infer/batching.py`) uses too.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sokhan.config import SampleConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.models.protocol import Cache
from sokhan.text.tokenizers import Tokenizer

# The smallest uniform draw of the exponential race (see `next_token`): above 0, and far below
# torch's smallest nonzero float32 draw (2^-24 on CPU), so it changes a draw of exactly 0 only.
SMALLEST_DRAW = 1e-30


def candidates(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keep the top-k tokens, then the smallest set of them whose probability reaches top_p.

    Returns (logits, ids): with a filter, the kept candidates' logits sorted largest first
    (dropped ones at −∞) and their token ids; without one, the logits as they are and None.
    Working on the k candidates only, not the whole vocabulary, keeps each token cheap.
    """
    ids = None
    if 0 < top_k < logits.size(-1):
        logits, ids = torch.topk(logits, top_k, dim=-1)  # sorted, largest first
    if top_p < 1.0:
        if ids is None:
            logits, ids = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # keep the token that crosses top_p
        logits = logits.masked_fill(mass_before >= top_p, float("-inf"))
    return logits, ids


def next_token(logits: torch.Tensor, cfg: SampleConfig,
               generator: torch.Generator | list[torch.Generator | None] | None) -> torch.Tensor:
    """logits: (B, V) → (B, 1) token ids; the likeliest when `cfg.greedy` (temperature 0 or nearly).

    `generator` draws the random numbers of every row, or a list of them one per row: rows decoded
    together (`infer/batching.py`) then draw what each would alone, as every other step here is
    computed row by row.
    """
    if cfg.greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()
    if cfg.temperature != 1.0:  # x / 1 == x exactly; skipping the op saves time per token
        logits = logits / cfg.temperature
    logits, ids = candidates(logits, cfg.top_k, cfg.top_p)
    probs = torch.softmax(logits, dim=-1)
    # An exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) picks i with probability p_i
    # (the Gumbel-max trick in another guise); a few µs, where torch.multinomial takes ~50.
    # E = −log U with U ~ Uniform, so p / E = −p / log U and the winner is argmin p / log U.
    # (uniform_ + log_ cost a third of exponential_, which sets up an MKL stream per call.)
    # U is drawn from [SMALLEST_DRAW, 1), not [0, 1): at U = 0, log U = −inf makes p / log U
    # −0.0 whatever p is, so where every token of p > 0 drew 0 (a one-hot distribution: 1 in
    # 2^24 tokens), all tied with the tokens of p = 0 and argmin took the first, id 0 (<|pad|>)
    # when unfiltered. With log U finite and negative, the likeliest token (p ≥ 1/V) scores
    # below −0.0, so a token of p = 0 (score −0.0) never wins.
    draws = torch.empty_like(probs)
    if isinstance(generator, list):
        for row, row_generator in zip(draws, generator):
            row.uniform_(SMALLEST_DRAW, 1, generator=row_generator)
    else:
        draws.uniform_(SMALLEST_DRAW, 1, generator=generator)
    choice = (probs / draws.log_()).argmin(dim=-1, keepdim=True)
    return choice if ids is None else ids.gather(-1, choice)


def new_generator(cfg: SampleConfig, device: torch.device) -> torch.Generator | None:
    """The sampler's own generator when `cfg.seed` is set (a repeatable text); None draws from torch's global one."""
    return None if cfg.seed is None else torch.Generator(device=device).manual_seed(cfg.seed)


def prefers_native_kernels(model: nn.Module) -> bool:
    """Whether one-token steps should run without oneDNN (see `decode_step`): float32 weights on a CPU.
    oneDNN stays on for bfloat16: its CPU matmuls need it."""
    return model_device(model).type == "cpu" and all(p.dtype == torch.float32 for p in model.parameters())


def check_finite(total: float, n: int) -> None:
    """Refuse logits whose sum (`total`) is NaN or ±inf, at new token `n`.

    One sum (~2 µs for 311 logits) is NaN or ±inf when any logit is (or when they are too big
    to add up in float32, which no sane model reaches). It is checked at every token, not only
    the first: a model can break down mid-way (an activation overflowing late in a long text),
    and a NaN must not turn into <|pad|>s.
    """
    if not math.isfinite(total):
        raise SokhanError(f"the model's logits are not finite (NaN/inf) at new token {n}: "
                          "its weights or activations are broken")


def check_prompt(prompt: list[int]) -> None:
    if not prompt:
        raise SokhanError("the prompt must have at least one token")


@torch.inference_mode()
def generate_ids(model: nn.Module, prompt: list[int], cfg: SampleConfig, stop_ids: set[int] = frozenset(),
                 ) -> Iterator[int]:
    """Yield up to `max_new_tokens` sampled ids after `prompt`, stopping after any of `stop_ids`.

    Keys and values are cached, so each new token costs one position of attention per layer.
    When the context window is full, the cache is rebuilt from the most recent half window.
    The logits are checked at every token (`check_finite`).
    """
    check_prompt(prompt)
    block = model.config.block_size
    device = model_device(model)
    generator = new_generator(cfg, device)
    native = prefers_native_kernels(model)
    tokens = list(prompt)
    window = tokens[-block:]
    cache = model.new_cache(1)
    logits = model(torch.tensor([window], device=device), cache=cache, last_only=True).logits
    for n in range(cfg.max_new_tokens):
        last = logits[:, -1]
        total = last.sum()
        tok = next_token(last, cfg, generator)
        token = int(tok)
        # read after int(tok), which has waited for the step on a GPU already: the check adds no wait of its own
        check_finite(total.item(), n + 1)
        yield token
        if token in stop_ids:
            return
        tokens.append(token)
        if cache.length >= block:  # context full: keep the latest half window (≥ 1 token) in a new cache
            window = tokens[-refill_length(block):]
            cache = model.new_cache(1)
            logits = model(torch.tensor([window], device=device), cache=cache, last_only=True).logits
        else:
            logits = decode_step(model, tok, cache, native)


def refill_length(block: int) -> int:
    """The tokens a full context starts again from: the latest half window, at least one."""
    return max(1, block // 2)


def decode_step(model: nn.Module, token: torch.Tensor, cache: Cache, native_kernels: bool,
                **inputs: torch.Tensor) -> torch.Tensor:
    """Logits after one more token per row (`cache` holds the ones before it; `inputs`, such as a batch's
    `padding` and `positions`, go to the model as they are).

    `native_kernels` switches oneDNN off for the step (CPU, float32): its per-call set-up
    (~7 µs for one GELU) costs more than its kernels save on a single position, and ATen's
    own kernels take over. Measured: −60 µs a token on the benchmark GPT (4 × 128). The
    switch is set back as it was, whatever it was.

    One row's step (no `inputs`) runs compiled once `compile_decode_step(model)` has compiled it,
    from the second cached position on, without checking the graph's guards (see there).
    """
    compiled = _compiled_steps.get(model) if not inputs and token.size(0) == 1 and cache.length >= 2 else None
    with kernels(native_kernels):
        if compiled is None:
            return model(token, cache=cache, last_only=True, **inputs).logits
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):  # see `compile_decode_step`
            return compiled(token, cache=cache, last_only=True).logits


@contextlib.contextmanager
def kernels(native: bool) -> Iterator[None]:
    """oneDNN off while `native` (see `decode_step`), then set back as it was, whatever it was."""
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn and not native
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = onednn


# Models whose one-row step runs compiled (`compile_decode_step`), each with its compiled forward. The compiled
# forward holds its model (and the graph its weights): a model once compiled lives as long as the process.
_compiled_steps: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()

# TorchInductor's options for the step: the graph's calling code in C++ rather than Python, and the weights
# frozen into it as constants (so the one-off compile folds and prepacks them). Measured on the benchmark
# GPT (4 × 128, block 64, 2-core Xeon, min of 15 blocks): eager 557 µs a step, compiled with the default
# options 523 µs, with these 436 µs.
COMPILE_OPTIONS = {"cpp_wrapper": True, "freezing": True}


def compile_decode_step(model: nn.Module) -> float:
    """Compile `model`'s one-token step with `torch.compile` (TorchInductor) and return the seconds it took.

    From then on `generate_ids` (and so `stream_text`, a chat, `sokhan sample --compile`) runs
    each one-row step after the prompt as one compiled graph: the per-op Python and dispatch
    cost, which at batch 1 is most of a small model's step, is paid once. The prompt (any
    length, once per text) stays eager. The graph has symbolic lengths (`dynamic=True`), so
    one compile serves every position but two: the first cached position would need a graph of
    its own (lengths 0 and 1 are always specialized), so it stays eager too, and the cache's
    last slot gets one (a slice that covers the whole cache is contiguous), compiled here too.

    With every graph the step will need compiled at load, the steps skip Dynamo's guard checks
    (`torch.compiler.set_stance(skip_guard_eval_unsafe=True)`: only the guards that tell the two
    graphs apart run; a step that needed a third graph raised instead of compiling, in the test
    that warmed up one graph only). That is safe only while every call looks like the warm-up:
    one row, no other inputs, a cache of this model, inference mode, the same oneDNN setting;
    `decode_step` sends only such calls here, and a call unlike them could be computed wrong
    rather than refused, so nothing else may call the compiled forward.
    The guards cost ~50 µs of each ~440 µs step: measured on the benchmark GPT, 2,217 tokens/s
    with them and 2,431 without (+9.7 %); generate_speed.py's compiled/HF went from 2.92–3.08×
    to 3.08–3.20× in five runs each. The weights are frozen into the graph: a model trained
    further must be compiled again. Needs a C++ compiler (Inductor's CPU code); a compile that
    fails is one line.
    """
    caps = model.capabilities
    if not (caps.causal and caps.attention) or caps.needs_source:
        raise SokhanError(f"--compile compiles a GPT's decode step; a {model.config.family} model has none")
    if not hasattr(torch.compiler, "set_stance"):
        raise SokhanError(f"--compile needs torch 2.6 or later (this is {torch.__version__}); run without --compile")
    compiled = torch.compile(model, dynamic=True, options=COMPILE_OPTIONS)
    block = model.config.block_size
    start = time.perf_counter()
    try:  # compile now, rather than in the middle of a text: at two cached tokens, and at the cache's last slot
        with torch.inference_mode(), kernels(prefers_native_kernels(model)):
            token = torch.zeros((1, 1), dtype=torch.long, device=model_device(model))
            for cached in sorted({2, block - 1} & set(range(2, block))):
                cache = model.new_cache(1)
                model(token.expand(1, cached), cache=cache, last_only=True)
                compiled(token, cache=cache, last_only=True)
    except Exception as e:  # Inductor raises many kinds (no compiler, a failed build); the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SokhanError(f"compiling the decode step failed ({first}); run without --compile") from None
    _compiled_steps[model] = compiled
    return time.perf_counter() - start


@dataclass
class StreamStats:
    """What `stream_text` did: tokens sampled (a closing <|end|>/<|eos|> included) and why it ended."""

    tokens: int = 0
    finish_reason: str = "length"  # "stop": <|end|>/<|eos|> or a stop string; "length": max_new_tokens


def stream_text(model: nn.Module, tokenizer: Tokenizer, prompt_ids: list[int], cfg: SampleConfig,
                stats: StreamStats | None = None, cancelled: Callable[[], bool] = lambda: False,
                ) -> Iterator[str]:
    """Yield printable text pieces of the continuation; stops at <|eos|>/<|end|> or a stop string.

    The pieces are a `TextStream`'s (see there). `stats` (for a server's usage and
    finish_reason) is filled in as it goes; `cancelled` is polled after every token so an
    abandoned request stops at once.
    """
    text = TextStream(tokenizer, cfg, stats)
    for token in generate_ids(model, prompt_ids, cfg, text.stop_ids):
        piece = text.add(token)
        if piece:
            yield piece
        if text.finished or cancelled():
            return
    piece = text.close()
    if piece:
        yield piece


class TextStream:
    """The text of one continuation as its tokens come: `add(token)` gives what can be printed now, `close()`
    the rest once no token follows.

    Byte tokens can split a character, and a later token can change how earlier ones decode, so
    text is decoded from all generated ids and released only where it is settled (see
    `_settled`); of that, the part that cannot be the start of a stop string is released. The
    pieces joined are always the final decode (cut at a stop string). A stop id (<|eos|>,
    <|end|>) or a stop string finishes the stream (`finished`, `stats.finish_reason` "stop");
    the caller closes it after `max_new_tokens`.
    """

    def __init__(self, tokenizer: Tokenizer, cfg: SampleConfig, stats: StreamStats | None = None):
        self.tokenizer, self.stops = tokenizer, cfg.stop
        self.stats = stats if stats is not None else StreamStats()
        self.stop_ids = {tokenizer.eos_id, tokenizer.token_id("<|end|>")}
        self.byte_run_ids = tokenizer.byte_run_ids
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decode handed out so far
        self.finished = False
        self.settled = ""  # the decode of ids[:anchor], which every longer decode starts with
        self.anchor = 0
        self.lead_text = ""  # the decode of the token before the anchor alone

    def add(self, token: int) -> str:
        """The text that `token` makes printable ("" if none yet); a stop id closes the stream."""
        self.stats.tokens += 1
        if token in self.stop_ids:
            self.stats.finish_reason = "stop"
            return self.close()
        self.ids.append(token)
        text = self._decode()
        if not _settled(text, token, self.byte_run_ids):
            return ""
        self.settled, self.anchor = text, len(self.ids)
        self.lead_text = self.tokenizer.decode(self.ids[-1:])
        cut = _stop_cut(text, self.stops)
        if cut is not None:
            self.stats.finish_reason = "stop"
            self.finished = True
            return self._release(text, cut)
        return self._release(text, len(text) - _held_back(text, self.stops))

    def close(self) -> str:
        """The text not handed out yet (what was held back, cut at a stop string); the stream is finished."""
        self.finished = True
        text = self._decode()
        cut = _stop_cut(text, self.stops)
        if cut is not None:
            self.stats.finish_reason = "stop"
        return self._release(text, cut if cut is not None else len(text))

    def _decode(self) -> str:
        """The decode of every id so far, equal to `tokenizer.decode(self.ids)`, from a few ids' decode.

        The settled text is kept; only the ids after it are decoded, led by the token before them (a
        decoder may treat a decode's first token apart, as SentencePiece's drops its leading space),
        whose own text is then cut off. Decoding all ids every token would cost O(n²) over a reply.
        A tokenizer whose pieces do not add up so is decoded whole.
        """
        lead = max(0, self.anchor - 1)
        window = self.tokenizer.decode(self.ids[lead:])
        if not window.startswith(self.lead_text):
            return self.tokenizer.decode(self.ids)
        return self.settled + window[len(self.lead_text):]

    def _release(self, text: str, end: int) -> str:
        piece = text[self.emitted:end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece


def _settled(text: str, last: int, byte_run_ids: frozenset[int]) -> bool:
    """Whether `text`, the decode of the ids so far ending in `last`, starts every longer decode.

    Byte-level BPE decodes all the bytes at once, a bad sequence as U+FFFD: only a trailing
    U+FFFD can change (the start of a character whose last bytes are still to come). A char
    tokenizer's byte fallback decodes a run of <0xNN> tokens as one: valid UTF-8 gives its
    text, anything else one U+FFFD per byte, so a later byte can undo what the run showed
    (<0xE2><0x82><0xAC> is '€', and with <0xFF> after it '����'). Its text is settled only
    once a token that is not a byte ends the run.
    """
    return last not in byte_run_ids and not text.endswith("\ufffd")


def _stop_cut(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could still grow into a stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                longest = max(longest, n)
                break
    return longest
