"""Decoding a translation: greedy and beam search, batched, the encoder run once per sentence.

A batch of source sentences is padded and encoded once; the cache (`Seq2SeqCache`) then holds
each decoder layer's cross-attention keys and values over that encoding, and the decoder's
self-attention keys and values so far, so each generated token costs one position of the
decoder. Beam search (as in the paper: beam 4, length penalty α = 0.6) keeps `beam` hypotheses
per sentence as rows of one batch and reorders the cache rows when hypotheses are extended.

Scores are compared after the length penalty of Wu et al. (2016, GNMT §7):
lp(Y) = ((5 + |Y|) / 6)^α, score = log P(Y | X) / lp(Y), where |Y| counts the generated tokens
with the closing <|eos|>. A sentence is done when `beam` hypotheses have ended and the best of them
scores at least as well as the best open one would if it ended now (the rule of Hugging Face's beam
scorer): counting ended hypotheses alone (fairseq's rule) lets hypotheses that skipped a token end a
step before the right one and shut it out. At the length limit the open hypotheses end there. With
beam 1 this is exactly greedy decoding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from sokhan.config import TranslateConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.models.trained import TrainedModel
from sokhan.text.normalize import normalize_source

EXTRA_TOKENS = 10   # the length limit: max_length_ratio · source tokens + this


class SourceTooLong(UserWarning):
    """A source sentence was cut to fit the model's context (`--too-long truncate`)."""


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float       # log P(tokens | source), without the length penalty


def one_line(text: str) -> str:
    """A decoded translation as the training targets were written: words joined by single spaces. Targets never
    hold a line break, but a model can still write one (byte-level BPE has every byte), which would break the
    one-line-per-input promise of `sokhan translate --input`."""
    return " ".join(text.split())


def length_penalty(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


def source_ids(translator: TrainedModel, text: str, too_long: str = "truncate", where: str = "") -> list[int]:
    """The ids the encoder reads: the normalized sentence and <|eos|> (as training saw sources), cut to
    the context with a `SourceTooLong` warning, or refused, when longer."""
    ids = translator.tokenizer.encode_plain(normalize_source(text)) + [translator.tokenizer.eos_id]
    block = translator.block_size
    if len(ids) > block:
        what = f"{where}: " if where else ""
        if too_long == "refuse":
            raise SokhanError(f"{what}the source has {len(ids)} tokens, more than the model's context of {block}; "
                              f"shorten it, or let it be cut (too-long mode 'truncate')")
        warnings.warn(f"{what}the source has {len(ids)} tokens, cut to the model's context of {block}",
                      SourceTooLong, stacklevel=2)
        ids = ids[: block - 1] + [translator.tokenizer.eos_id]
    return ids


def max_new_tokens(source_length: int, cfg: TranslateConfig, block_size: int) -> int:
    return max(1, min(block_size, int(cfg.max_length_ratio * source_length) + EXTRA_TOKENS))


def _encoded(model: torch.nn.Module, sources: list[list[int]], pad_id: int, bos_id: int,
             ) -> tuple[torch.Tensor, object]:
    """Run the encoder on the padded batch and the decoder on <|bos|>: (log-probs (B, V), the cache)."""
    device = model_device(model)
    width = max(map(len, sources))
    src = torch.full((len(sources), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sources), width), dtype=torch.bool, device=device)
    for i, ids in enumerate(sources):
        src[i, : len(ids)] = torch.tensor(ids, device=device)
        mask[i, : len(ids)] = True
    cache = model.new_cache(len(sources))
    bos = torch.full((len(sources), 1), bos_id, dtype=torch.long, device=device)
    logits = model(bos, source=src, source_padding=mask, cache=cache).logits[:, -1]
    return _log_probs(logits), cache


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(logits.sum()):
        raise SokhanError("the model's logits are not finite (NaN/inf): its weights or activations are broken")
    return torch.log_softmax(logits.float(), dim=-1)


@torch.inference_mode()
def greedy_tokens(model: torch.nn.Module, sources: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int,
                  max_new: list[int]) -> Iterator[tuple[int, int]]:
    """The likeliest token at every step, for a batch of sources at once: yields (row, token id) as each is
    chosen, never the closing <|eos|>. A finished row leaves the batch (and the cache)."""
    logp, cache = _encoded(model, sources, pad_id, bos_id)
    lengths = [0] * len(sources)
    open_rows = list(range(len(sources)))
    while open_rows:
        choice = logp.argmax(dim=-1).tolist()
        still_open, last = [], []
        for i, (row, token) in enumerate(zip(open_rows, choice)):
            if token == eos_id:
                continue
            yield row, token
            lengths[row] += 1
            if lengths[row] < max_new[row]:
                still_open.append(i)
                last.append(token)
        if not still_open:
            return
        if len(still_open) < len(open_rows):
            cache.reorder(torch.tensor(still_open, device=logp.device))
        open_rows = [open_rows[i] for i in still_open]
        logp = _log_probs(model(torch.tensor(last, device=logp.device)[:, None], cache=cache).logits[:, -1])


def greedy_decode(model: torch.nn.Module, sources: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int,
                  max_new: list[int]) -> list[list[int]]:
    """Greedy decoding of a batch; each output ends before <|eos|>."""
    out: list[list[int]] = [[] for _ in sources]
    for row, token in greedy_tokens(model, sources, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id, max_new=max_new):
        out[row].append(token)
    return out


@torch.inference_mode()
def beam_decode(model: torch.nn.Module, sources: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int,
                max_new: list[int], beam: int, alpha: float) -> list[list[int]]:
    """Beam search for a batch of sources (see the module docstring); each output ends before <|eos|>."""
    logp, cache = _encoded(model, sources, pad_id, bos_id)
    n, vocab = len(sources), logp.size(-1)
    device = logp.device
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    # The open hypotheses: for sentence s, rows s·beam … s·beam + beam − 1 of the batch.
    cache.reorder(torch.arange(n, device=device).repeat_interleave(beam))
    beams: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in range(n)]  # one start per sentence
    logp = logp.repeat_interleave(beam, dim=0)
    active = list(range(n))  # sentences still searching, in the order of the batch's row groups
    for step in range(max(max_new)):
        k = beam
        # Scores of every extension of every open hypothesis: (sentences, beam · vocab).
        base = torch.full((len(active), beam), -math.inf, device=device)
        for i, s in enumerate(active):
            for j, hyp in enumerate(beams[s]):
                base[i, j] = hyp.score
        total = (base[:, :, None] + logp.view(len(active), beam, vocab)).view(len(active), beam * vocab)
        top_scores, top_ids = total.topk(min(2 * k, beam * vocab), dim=-1)
        next_rows: list[int] = []
        still_active: list[int] = []
        for i, s in enumerate(active):
            new: list[Hypothesis] = []
            last_step = step + 1 >= max_new[s]
            for score, flat in zip(top_scores[i].tolist(), top_ids[i].tolist()):
                if score == -math.inf:
                    break
                j, token = divmod(flat, vocab)
                tokens = beams[s][j].tokens
                if token == eos_id:
                    finished[s].append((score / length_penalty(len(tokens) + 1, alpha), tokens))
                    continue
                new.append(Hypothesis(tokens + [token], score))
                next_rows.append(i * beam + j)
                if last_step:  # the length limit: the open hypothesis ends here
                    finished[s].append((score / length_penalty(len(tokens) + 1, alpha), tokens + [token]))
                if len(new) == beam:
                    break
            # Done when `beam` have ended and no open hypothesis, scored as if it ended now, beats the best of them.
            best_ended = max((score for score, _ in finished[s]), default=-math.inf)
            best_open = new[0].score / length_penalty(len(new[0].tokens), alpha) if new else -math.inf
            if (len(finished[s]) >= beam and best_ended >= best_open) or last_step or not new:
                del next_rows[len(next_rows) - len(new):]
                continue
            while len(new) < beam:  # fewer open extensions than beams (a tiny vocabulary): pad with dead rows
                new.append(Hypothesis(new[0].tokens, -math.inf))
                next_rows.append(next_rows[-1])
            beams[s] = new
            still_active.append(s)
        if not still_active:
            break
        cache.reorder(torch.tensor(next_rows, device=device))
        active = still_active
        last = torch.tensor([[h.tokens[-1]] for s in active for h in beams[s]], device=device)
        logp = _log_probs(model(last, cache=cache).logits[:, -1])
    return [max(f, key=lambda pair: pair[0])[1] if f else [] for f in finished]


def translate_batch(translator: TrainedModel, texts: list[str], cfg: TranslateConfig, where: str = "",
                    first_line: int = 1) -> list[str]:
    """Translations of `texts`, in order; an empty (or blank) source line gives an empty line, without
    running the model. A source too long is named `where:line` (counting from `first_line`)."""
    tok = translator.tokenizer
    todo = [(i, text) for i, text in enumerate(texts) if text.strip()]
    out = [""] * len(texts)
    if not todo:
        return out
    sources = [source_ids(translator, text, cfg.too_long, f"{where}:{first_line + i}" if where else "")
               for i, text in todo]
    limits = [max_new_tokens(len(ids), cfg, translator.block_size) for ids in sources]
    common = dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id, max_new=limits)
    if cfg.beam == 1:
        ids = greedy_decode(translator.model, sources, **common)
    else:
        ids = beam_decode(translator.model, sources, beam=cfg.beam, alpha=cfg.length_penalty, **common)
    for (i, _), result in zip(todo, ids):
        out[i] = one_line(tok.decode(result))
    return out


def translate_lines(translator: TrainedModel, lines: Iterable[str], cfg: TranslateConfig, where: str = "",
                    ) -> Iterator[str]:
    """One translation per input line, in order, decoded `cfg.batch_size` lines at a time (each batch's
    lines are yielded as soon as it is done, so a long file streams)."""
    batch: list[str] = []
    done = 0
    for line in lines:
        batch.append(line)
        if len(batch) == cfg.batch_size:
            yield from translate_batch(translator, batch, cfg, where, done + 1)
            done, batch = done + len(batch), []
    if batch:
        yield from translate_batch(translator, batch, cfg, where, done + 1)


def stream_translation(translator: TrainedModel, text: str, cfg: TranslateConfig) -> Iterator[str]:
    """The greedy translation of one sentence in printable pieces as its tokens are chosen (a server streams
    them); the pieces joined equal `translate_batch(…, beam=1)`'s line. A piece is released once its text
    is settled: byte-level BPE can end mid-character, which decodes as a trailing U+FFFD until the
    character's last byte comes."""
    if not text.strip():
        return
    tok = translator.tokenizer
    ids = source_ids(translator, text, cfg.too_long)
    limit = [max_new_tokens(len(ids), cfg, translator.block_size)]
    out: list[int] = []
    emitted = ""
    for _, token in greedy_tokens(translator.model, [ids], pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                  max_new=limit):
        out.append(token)
        decoded = one_line(tok.decode(out))  # trailing spaces wait: the final line has none
        if decoded.endswith("\ufffd") or token in tok.byte_run_ids:
            continue
        if decoded.startswith(emitted) and len(decoded) > len(emitted):
            yield decoded[len(emitted):]
            emitted = decoded
    final = one_line(tok.decode(out))
    if final.startswith(emitted) and len(final) > len(emitted):
        yield final[len(emitted):]
