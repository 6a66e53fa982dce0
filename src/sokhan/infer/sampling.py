"""Sampling from a causal language model: KV cache, temperature, top-k, top-p, stop strings, streaming.

`generate_ids` yields token ids one at a time; `stream_text` turns them into text pieces
that are safe to print (never half a UTF-8 character, never part of a stop string).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sokhan.config import SampleConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.models.protocol import Cache
from sokhan.text.tokenizers import Tokenizer


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


def next_token(logits: torch.Tensor, cfg: SampleConfig, generator: torch.Generator | None) -> torch.Tensor:
    """logits: (B, V) → (B, 1) token ids."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()
    if cfg.temperature != 1.0:  # x / 1 == x exactly; skipping the op saves time per token
        logits = logits / cfg.temperature
    logits, ids = candidates(logits, cfg.top_k, cfg.top_p)
    probs = torch.softmax(logits, dim=-1)
    # An exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) picks i with probability p_i
    # (the Gumbel-max trick in another guise); a few µs, where torch.multinomial takes ~50.
    # E = −log U with U ~ Uniform[0, 1), so p / E = −p / log U and the winner is argmin p / log U.
    # (uniform_ + log_ cost a third of exponential_, which sets up an MKL stream per call.)
    choice = (probs / torch.empty_like(probs).uniform_(generator=generator).log_()).argmin(dim=-1, keepdim=True)
    return choice if ids is None else ids.gather(-1, choice)


@torch.inference_mode()
def generate_ids(model: nn.Module, prompt: list[int], cfg: SampleConfig, stop_ids: set[int] = frozenset(),
                 ) -> Iterator[int]:
    """Yield up to `max_new_tokens` sampled ids after `prompt`, stopping after any of `stop_ids`.

    Keys and values are cached, so each new token costs one position of attention per layer.
    When the context window is full, the cache is rebuilt from the most recent half window.
    """
    if not prompt:
        raise SokhanError("the prompt must have at least one token")
    block = model.config.block_size
    device = model_device(model)
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    # oneDNN stays on for bfloat16: its CPU matmuls need it.
    native_kernels = device.type == "cpu" and all(p.dtype == torch.float32 for p in model.parameters())
    tokens = list(prompt)
    window = tokens[-block:]
    cache = model.new_cache(1)
    logits = model(torch.tensor([window], device=device), cache=cache, last_only=True).logits
    if not torch.isfinite(logits).all():  # checked once: broken weights show at the first token
        raise SokhanError("the model's logits are not finite (NaN/inf): its weights are broken")
    for _ in range(cfg.max_new_tokens):
        tok = next_token(logits[:, -1], cfg, generator)
        token = int(tok)
        yield token
        if token in stop_ids:
            return
        tokens.append(token)
        if cache.length >= block:  # context full: keep the latest half window and start a new cache
            window = tokens[-(block // 2):]
            cache = model.new_cache(1)
            logits = model(torch.tensor([window], device=device), cache=cache, last_only=True).logits
        else:
            logits = decode_step(model, tok, cache, native_kernels)


def decode_step(model: nn.Module, token: torch.Tensor, cache: Cache, native_kernels: bool) -> torch.Tensor:
    """Logits after one more token (`cache` holds the ones before it).

    `native_kernels` switches oneDNN off for the step (CPU, float32): its per-call set-up
    (~7 µs for one GELU) costs more than its kernels save on a single position, and ATen's
    own kernels take over. Measured: −60 µs a token on the benchmark GPT (4 × 128). The
    switch is set back as it was, whatever it was.
    """
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn and not native_kernels
    try:
        return model(token, cache=cache, last_only=True).logits
    finally:
        torch.backends.mkldnn.enabled = onednn


@dataclass
class StreamStats:
    """What `stream_text` did: tokens sampled (a closing <|end|>/<|eos|> included) and why it ended."""

    tokens: int = 0
    finish_reason: str = "length"  # "stop": <|end|>/<|eos|> or a stop string; "length": max_new_tokens


def stream_text(model: nn.Module, tokenizer: Tokenizer, prompt_ids: list[int], cfg: SampleConfig,
                stats: StreamStats | None = None, cancelled: Callable[[], bool] = lambda: False,
                ) -> Iterator[str]:
    """Yield printable text pieces of the continuation; stops at <|eos|>/<|end|> or a stop string.

    Byte-level tokens can split a character, so text is decoded from all generated ids and
    only the part that is complete (no trailing U+FFFD) and cannot be the start of a stop
    string is released. `stats` (for a server's usage and finish_reason) is filled in as it
    goes; `cancelled` is polled after every token so an abandoned request stops at once.
    """
    stats = stats if stats is not None else StreamStats()
    stop_ids = {tokenizer.eos_id, tokenizer.token_id("<|end|>")}
    ids: list[int] = []
    emitted = 0
    for token in generate_ids(model, prompt_ids, cfg, stop_ids):
        stats.tokens += 1
        if token in stop_ids:
            stats.finish_reason = "stop"
            break
        ids.append(token)
        text = tokenizer.decode(ids)
        if not text.endswith("\ufffd"):
            cut = _stop_cut(text, cfg.stop)
            if cut is not None:
                stats.finish_reason = "stop"
                if cut > emitted:
                    yield text[emitted:cut]
                return
            safe = len(text) - _held_back(text, cfg.stop)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        if cancelled():
            return
    text = tokenizer.decode(ids)
    cut = _stop_cut(text, cfg.stop)
    if cut is not None:
        stats.finish_reason = "stop"
    end = cut if cut is not None else len(text)
    if end > emitted:
        yield text[emitted:end]


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
