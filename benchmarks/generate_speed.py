"""Generation speed at batch 1: sokhan's `generate_ids` against Hugging Face `model.generate`.

Both sample with a KV cache from the *same weights*: a randomly initialised HF
`GPT2LMHeadModel` is copied into sokhan's GPT (the logits are checked to agree), both get
the same prompt length and the same number of new tokens (HF is kept from stopping early:
no eos, `min_new_tokens` = `max_new_tokens`), temperature 1 and the same top-k. Prefill
is included in the time of both.

sokhan runs twice: as `sokhan sample` does by default (eager), and with its decode step
compiled (`compile_decode_step`, what `sokhan sample --compile` does; the one-off compile
time is printed, not counted). Timing is interleaved: each repetition times `--runs`
generations of each, in rotating order; reported are the median tokens/s (new tokens only)
and each of ours over HF.

    python benchmarks/generate_speed.py                                   # block 64: 8-token prompt + 48 new
    python benchmarks/generate_speed.py --block-size 256 --new-tokens 200
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from sokhan.config import SampleConfig
from sokhan.infer.sampling import compile_decode_step, generate_ids
from sokhan.models import GPT, ModelConfig


def build(args) -> tuple[GPT, nn.Module]:
    """A random HF GPT-2 of the small shape, and sokhan's GPT holding the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = ModelConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                      n_head=args.n_head, n_embd=args.n_embd, dropout=0.0, positional="learned",
                      activation="gelu", tie_weights=True)
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=True,
                        bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    ours = GPT(cfg).eval()
    ours.load_state_dict(hf_to_sokhan(hf.state_dict(), cfg.n_layer))
    return ours, hf


def hf_to_sokhan(sd: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """Rename HF GPT-2 weights to sokhan's; HF's Conv1D stores (in, out), nn.Linear (out, in)."""
    out = {"embed.weight": sd["transformer.wte.weight"], "positions.weight": sd["transformer.wpe.weight"],
           "final_norm.weight": sd["transformer.ln_f.weight"], "final_norm.bias": sd["transformer.ln_f.bias"],
           "lm_head.weight": sd["transformer.wte.weight"]}
    names = {"ln_1": "attn_norm", "ln_2": "ffn_norm", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.out",
             "mlp.c_fc": "ffn.up", "mlp.c_proj": "ffn.down"}
    for i in range(n_layer):
        for hf_name, name in names.items():
            w, b = sd[f"transformer.h.{i}.{hf_name}.weight"], sd[f"transformer.h.{i}.{hf_name}.bias"]
            out[f"blocks.{i}.{name}.weight"] = w if hf_name.startswith("ln") else w.t().contiguous()
            out[f"blocks.{i}.{name}.bias"] = b
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--runs", type=int, default=5, help="generations per timed block")
    p.add_argument("--repeats", type=int, default=9, help="timed blocks per contestant (interleaved)")
    p.add_argument("--vocab-size", type=int, default=311, help="311: the Hafez character vocabulary")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--no-compile", action="store_true", help="leave out the compiled contestant")
    args = p.parse_args()
    if args.prompt_tokens + args.new_tokens > args.block_size:
        p.error("prompt + new tokens must fit in the block (no context sliding in either)")
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, hf = build(args)
    prompt = torch.randint(3, args.vocab_size, (args.prompt_tokens,), generator=torch.Generator().manual_seed(1))
    n = args.new_tokens

    with torch.no_grad():  # same function: compare the logits of a full window
        x = torch.randint(0, args.vocab_size, (2, args.block_size))
        diff = (ours(x).logits - hf(input_ids=x, attention_mask=torch.ones_like(x)).logits).abs().max().item()

    def run_ours(seed: int, temperature: float = 1.0, model: GPT = ours) -> list[int]:
        cfg = SampleConfig(max_new_tokens=n, temperature=temperature, top_k=args.top_k, seed=seed)
        return list(generate_ids(model, prompt.tolist(), cfg))

    def run_hf(seed: int, sample: bool = True) -> list[int]:
        torch.manual_seed(seed)
        ids = prompt[None]
        kw = dict(do_sample=True, top_k=args.top_k, temperature=1.0, top_p=1.0) if sample else dict(do_sample=False)
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                          use_cache=True, eos_token_id=None, pad_token_id=0, **kw)
        return out[0, ids.size(1):].tolist()

    # sanity: lengths, and greedy decoding agrees token for token
    assert len(run_ours(0)) == n and len(run_hf(0)) == n, "a generator stopped early"
    greedy_ours, greedy_hf = run_ours(0, temperature=0.0), run_hf(0, sample=False)
    agree = sum(a == b for a, b in zip(greedy_ours, greedy_hf))

    contestants = {"sokhan eager": run_ours, "HF generate": run_hf}
    if not args.no_compile:  # the same weights in a second GPT, its decode step compiled
        compiled = copy.deepcopy(ours)
        compile_seconds = compile_decode_step(compiled)
        contestants["sokhan compiled"] = lambda seed: run_ours(seed, model=compiled)
        greedy_compiled = run_ours(0, temperature=0.0, model=compiled)
    for fn in contestants.values():  # warm-up
        fn(0)
    rates: dict[str, list[float]] = {k: [] for k in contestants}
    names = list(contestants)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            for i in range(args.runs):
                contestants[name](r * args.runs + i)
            rates[name].append(args.runs * n / (time.perf_counter() - t0))

    print(f"shape: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} dim, block {args.block_size}, "
          f"vocab {args.vocab_size}; batch 1, prompt {args.prompt_tokens} + {n} new tokens, top-k {args.top_k}, "
          f"{torch.get_num_threads()} threads; HF attention: {hf.config._attn_implementation}")
    print(f"same weights: max |logits difference| {diff:.2e}; greedy tokens agreeing {agree}/{n}")
    if not args.no_compile:
        print(f"compiled decode step: {compile_seconds:.1f} s to compile (not timed below); greedy tokens "
              f"agreeing with eager {sum(a == b for a, b in zip(greedy_compiled, greedy_ours))}/{n}")
    print(f"\n{'':22s} {'new tokens/s (median)':>22s} {'min':>9s} {'max':>9s}")
    for name, v in rates.items():
        print(f"{name:22s} {statistics.median(v):22,.0f} {min(v):9,.0f} {max(v):9,.0f}")
    hf_rates = rates["HF generate"]
    print()
    for name in (k for k in rates if k.startswith("sokhan")):
        ours_rates = rates[name]
        print(f"{name} / HF: {statistics.median(ours_rates) / statistics.median(hf_rates):.2f}× (median of "
              f"per-repetition ratios {statistics.median(x / y for x, y in zip(ours_rates, hf_rates)):.2f}×)")


if __name__ == "__main__":
    main()
