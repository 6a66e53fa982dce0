"""Continuous batching: the sequences of many requests decoded together, one forward pass per step for all.

Iteration-level scheduling (Orca: Yu et al., OSDI 2022): a sequence joins the batch or leaves it
between two steps, not when the whole batch is done, so a short reply never waits for a long one
and a new request starts at once. At batch 1 a step of a small model costs its ~100 fixed-cost
calls whatever the width (DEVELOPERS.md, "Speed facts"); sixteen rows cost little more than one.

How a sequence goes through (`BatchedDecoder`):

* `add`: its prompt is prefilled alone, at batch 1, exactly as `generate_ids` does (the same
  call on the same window), and its first token is sampled from those logits; then its keys and
  values are copied into a free row of the batch's KV cache.
* `step`: every row's newest token goes through the model in one forward pass; each row's next
  token is sampled with its own `SampleConfig` and its own seeded generator, so a request draws
  the same random numbers batched or alone (`generate_ids`), whoever else is in the batch.
* `remove`: the row is freed between steps (the request finished, or its client left); the last
  row moves into its place, so the rows in use are always the first ones and a step computes
  nothing for empty rows.

The rows are left-padded in one cache (`KVCache`): every row's tokens end at the cache's common
length, so a step writes every row's new keys and values at the same position, and a boolean
`padding` hides each row's padding from attention (the same mask a padded batch uses). Each row
has its own positions (`positions=`: the tokens it has, not the column), so a row's learned or
rotary positions are the ones it would have alone. A padding position holds zeros, never an old
row's values (a NaN there would leak through the zero attention weight). The common length is
always the longest row's: a longer sequence joining moves the others right, and when rows leave
the padding every row has is dropped (`KVCache.shift`). So the cache has room for one more token
whenever no row's own context is full; a row whose context is full starts again from its latest
half window, as `generate_ids` does: the window but its newest token prefilled alone, the newest
token in the next step with the other rows (so they never wait for it).

The tokens equal `generate_ids`'s for the same prompt and config: the prefill and the first
token exactly (and every token while the rows need no padding: one row alone takes the very step
`generate_ids` takes), later tokens as long as no two candidates are tied to within float32
rounding (a batched matrix product may add in another order: logits differ by ~1e-7 here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sokhan.config import SampleConfig
from sokhan.device import model_device
from sokhan.errors import SokhanError
from sokhan.infer.sampling import (
    check_finite,
    check_prompt,
    decode_step,
    new_generator,
    next_token,
    prefers_native_kernels,
    refill_length,
)
from sokhan.models.components import KVCache


@dataclass(eq=False)
class Sequence:
    """One sequence in the batch: its tokens so far and how it samples."""

    cfg: SampleConfig
    tokens: list[int]  # the prompt's last window and every token sampled since; the newest is not cached yet
    generator: torch.Generator | None
    sampled: int = 0  # new tokens so far
    cached: int = 0  # tokens whose keys and values its row holds: every token but the newest
    row: int = -1  # its row while it is in the batch


class BatchedDecoder:
    """Up to `rows` sequences of a model whose `capabilities.batch_decodes`, decoded together (module docstring)."""

    def __init__(self, model: nn.Module, rows: int):
        if not model.capabilities.batch_decodes:
            raise ValueError(f"{type(model).__name__} cannot decode a batch of sequences of different lengths")
        self.model, self.rows = model, rows
        self.block = model.config.block_size
        self.device = model_device(model)
        self.native = prefers_native_kernels(model)
        cache = model.new_cache(rows)
        if not isinstance(cache, KVCache):
            raise ValueError(f"{type(model).__name__}'s cache is not a KV cache")
        self.cache = cache  # its `length` is the common length every row's tokens end at
        self.columns = torch.arange(self.block, device=self.device)
        self.active: list[Sequence] = []  # in row order

    @property
    def full(self) -> bool:
        return len(self.active) >= self.rows

    @torch.inference_mode()
    def add(self, prompt: list[int], cfg: SampleConfig) -> tuple[Sequence, int]:
        """Start a sequence after `prompt` in a free row: (the sequence, its first token).

        Raises SokhanError (nothing is added) for an empty prompt or non-finite logits.
        """
        check_prompt(prompt)
        if self.full:
            raise ValueError(f"all {self.rows} rows are in use")
        seq = Sequence(cfg, list(prompt[-self.block:]), new_generator(cfg, self.device))
        alone, token = self._prefill(seq, seq.tokens)
        seq.row = len(self.active)
        self.active.append(seq)
        self._place(seq, alone)
        return seq, token

    def remove(self, seq: Sequence) -> None:
        """Free `seq`'s row; the last row moves into it."""
        last = self.active.pop()
        if last is not seq:
            self.cache.copy_row(last.row, seq.row)
            last.row = seq.row
            self.active[seq.row] = last
        seq.row = -1
        self._trim()

    @torch.inference_mode()
    def step(self) -> list[tuple[Sequence, int | SokhanError]]:
        """One more token for every sequence, in one forward pass: (sequence, its token, or the error that ended
        it), in row order.

        A sequence whose context is full first starts again from its latest half window (`_restart`), so that
        it takes this step with the others instead of making them wait for its prefill.
        """
        for seq in self.active:
            if seq.cached >= self.block:
                self._restart(seq)
        self._trim()
        length, active = self.cache.length, list(self.active)
        tokens = torch.tensor([[seq.tokens[-1]] for seq in active], device=self.device)
        in_use = self.cache.rows(len(active))
        if all(seq.cached == length for seq in active):  # no padding: the step `generate_ids` takes
            logits = decode_step(self.model, tokens, in_use, self.native)
        else:
            cached = torch.tensor([seq.cached for seq in active], device=self.device)
            padding = self.columns[:length + 1] >= (length - cached).unsqueeze(1)
            logits = decode_step(self.model, tokens, in_use, self.native, padding=padding,
                                 positions=cached.unsqueeze(1))
        self.cache.length = in_use.length
        logits = logits[:, -1]
        chosen = self._choose(logits, active)
        for seq in active:
            seq.cached += 1
        outcomes: list[tuple[Sequence, int | SokhanError]] = []
        for seq, token, total in zip(active, chosen, logits.sum(dim=-1).tolist()):
            try:
                outcomes.append((seq, self._took(seq, token, total)))
            except SokhanError as e:
                self.remove(seq)
                outcomes.append((seq, e))
        return outcomes

    @staticmethod
    def _choose(logits: torch.Tensor, active: list[Sequence]) -> list[int]:
        """Each row's next token from its (V,) logits, by its own config and generator. Rows that sample alike
        (all greedy, or the same temperature, top-k and top-p) are sampled in one call, each row with its own
        random numbers (`next_token`)."""
        groups: dict[tuple, list[int]] = {}
        for i, seq in enumerate(active):
            cfg = seq.cfg
            groups.setdefault((True,) if cfg.greedy else (False, cfg.temperature, cfg.top_k, cfg.top_p), []).append(i)
        chosen = [0] * len(active)
        for rows in groups.values():
            rows_logits = logits if len(rows) == len(active) else logits[rows]
            picked = next_token(rows_logits, active[rows[0]].cfg, [active[i].generator for i in rows])
            for i, token in zip(rows, picked.flatten().tolist()):
                chosen[i] = token
        return chosen

    def _prefill(self, seq: Sequence, window: list[int]) -> tuple[KVCache, int]:
        """`window` through the model alone, as `generate_ids` reads it: (its cache, the token sampled after it)."""
        alone = self.model.new_cache(1)
        logits = self.model(torch.tensor([window], device=self.device), cache=alone, last_only=True).logits[:, -1]
        seq.cached = alone.length
        token = int(next_token(logits, seq.cfg, seq.generator))
        return alone, self._took(seq, token, logits.sum().item())

    def _restart(self, seq: Sequence) -> None:
        """A full context starts again from its latest half window, as `generate_ids` does: all of it but the
        newest token is prefilled alone into its row; the newest goes through the next step with the other rows.

        The step's logits are those `generate_ids` gets from the whole half window, up to rounding (the
        module docstring). Measured with 16 streaming clients of the tests' tiny GPT (block 64, 64-token
        replies): prefilling the whole window and sampling from it in a step of its own, as before, made the
        other rows wait, and refills took 10 % of the model thread.
        """
        window = seq.tokens[-refill_length(self.block):-1]
        alone = self.model.new_cache(1)
        if window:
            self.model(torch.tensor([window], device=self.device), cache=alone, last_only=True)
        seq.cached = alone.length
        self._place(seq, alone)

    @staticmethod
    def _took(seq: Sequence, token: int, total: float) -> int:
        """`token` is `seq`'s next, sampled from logits whose sum is `total` (refused unless finite)."""
        check_finite(total, seq.sampled + 1)
        seq.sampled += 1
        seq.tokens.append(token)
        return token

    def _place(self, seq: Sequence, alone: KVCache) -> None:
        """Copy a sequence's cache, prefilled alone, into its row, ending at the common length (made longer first
        if the sequence is longer than every row)."""
        if alone.length > self.cache.length:
            self._shift(alone.length - self.cache.length)
        self.cache.place(seq.row, alone)

    def _trim(self) -> None:
        """Keep the common length at the longest row's: drop the padding every row has (none left: start at 0)."""
        pad = self.cache.length - max((seq.cached for seq in self.active), default=0)
        if pad:
            self._shift(-pad)

    def _shift(self, by: int) -> None:
        """Move the tokens of every row in use `by` positions (see `KVCache.shift`); their positions stay."""
        in_use = self.cache.rows(len(self.active))
        in_use.shift(by)
        self.cache.length = in_use.length
