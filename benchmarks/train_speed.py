"""Training speed: sokhan's GPT against Hugging Face `GPT2LMHeadModel` of the same shape.

Both models get the same config, the same batches in the same order, the same optimizer
(`sokhan.train.optim.make_optimizer`: torch AdamW, decay on matrices only), the same
learning rate and grad clip 1.0, and the same loss (cross-entropy of the next token; the
HF loss is computed from its logits exactly as ours is, so both do the same work). The
step is the engine's: forward, loss, backward, clip, AdamW, zero_grad.

Timing is interleaved: repetition r times a block of `--steps` steps of every contestant,
in an order that alternates between repetitions, so a busy neighbour on the machine slows
all of them alike. Reported: the median tokens/s of each, ours/HF, parameter counts (the
shapes match) and the mean loss of the first and last timed block of each (a sanity check
that both learn alike, not a test). On CUDA also MFU, nanoGPT's estimate: flops per token
6·N + 12·L·H·Q·T (PaLM appendix B) against `--peak-tflops` (989: H100 SXM, bf16 dense).
Ours uses the exact (erf) GELU, as nanoGPT and BERT do; HF's GPT-2 default is `gelu_new`
(the tanh approximation, composed of elementwise ops). `--hf-activation gelu` gives HF the
very same function and kernel as ours, to see how much of the ratio that choice is.

    python benchmarks/train_speed.py                       # CPU, 4×4×128, block 64, batch 12
    python benchmarks/train_speed.py --compile             # + torch.compile of both models
    python benchmarks/train_speed.py --data                # tinyshakespeare instead of Hafez
    python benchmarks/train_speed.py --device cuda --preset gpt2 --dtype bfloat16   # GPT-2 124M, MFU
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sokhan.data.prepare import PrepareConfig, prepare
from sokhan.data.shards import TokenData
from sokhan.models import GPT, ModelConfig
from sokhan.train.optim import make_optimizer

TINYSHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"


def load_data(source: str, out_dir: str) -> TokenData:
    """Character-level token data of `source` ("hafez" or a .txt file), prepared by sokhan itself."""
    prepare(PrepareConfig(source=source, out_dir=out_dir, tokenizer="char"), progress=False)
    return TokenData(out_dir, "train")


def build_models(args, vocab_size: int) -> tuple[nn.Module, nn.Module]:
    """Ours and HF's GPT-2 with the same sizes; HF uses its default (sdpa) attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if args.preset == "gpt2":  # GPT-2 124M with its padded 50304 vocabulary (char ids are a small subset)
        ours_cfg = ModelConfig.create(preset="gpt2", dropout=0.0)
    else:
        ours_cfg = ModelConfig(vocab_size=vocab_size, block_size=args.block_size, n_layer=4, n_head=4, n_embd=128,
                               dropout=0.0, positional="learned", activation="gelu", tie_weights=True)
    hf_cfg = GPT2Config(vocab_size=ours_cfg.vocab_size, n_positions=ours_cfg.block_size, n_embd=ours_cfg.n_embd,
                        n_layer=ours_cfg.n_layer, n_head=ours_cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, activation_function=args.hf_activation, layer_norm_epsilon=ours_cfg.norm_eps,
                        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    ours = GPT(ours_cfg)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(hf_cfg)
    return ours, hf


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors are counted once


def flops_per_token(n_params: int, n_layer: int, n_head: int, head_size: int, block: int) -> float:
    """Training FLOPs per token, nanoGPT's estimate_mfu (PaLM appendix B): 6N + 12·L·H·Q·T."""
    return 6 * n_params + 12 * n_layer * n_head * head_size * block


@dataclass
class Contestant:
    name: str
    model: nn.Module                 # the module whose parameters are trained
    step_model: nn.Module            # what is called (the compiled wrapper, or the model)
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def ours_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, y).loss


def hf_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def train_steps(c: Contestant, batches: list, n: int, accum: int, clip: float, autocast,
                device: torch.device) -> float:
    """Run `n` optimizer steps on the contestant's next batches; return the seconds they took."""
    c.model.train()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    losses = []
    for _ in range(n):
        for _ in range(accum):
            x, y = batches[c.step % len(batches)]
            with autocast:
                loss = c.loss_fn(c.step_model, x, y) / accum
            loss.backward()
            losses.append(loss.detach())
            c.step += 1
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(c.model.parameters(), clip)
        c.optimizer.step()
        c.optimizer.zero_grad(set_to_none=True)
    sync()
    elapsed = time.perf_counter() - t0
    c.losses.append(float(torch.stack(losses).sum()) / n)
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per timed block (default 20; 5 for gpt2)")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per contestant (interleaved)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: autocast")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of ours and of HF")
    p.add_argument("--preset", default="small", choices=("small", "gpt2"),
                   help="small: 4 layers, 4 heads, 128 dim; gpt2: GPT-2 124M (block 1024)")
    p.add_argument("--block-size", type=int, default=64, help="context for the small shape")
    p.add_argument("--batch", type=int, default=None, help="micro-batch (default 12; 16 for gpt2)")
    p.add_argument("--grad-accum", type=int, default=None, help="micro-batches per step (default 1; 4 for gpt2)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--data", nargs="?", const=str(TINYSHAKESPEARE), default="hafez",
                   help="a .txt file instead of the embedded Hafez corpus (bare flag: tinyshakespeare)")
    p.add_argument("--hf-activation", default="gelu_new", choices=("gelu_new", "gelu_pytorch_tanh", "gelu"),
                   help="HF's GELU: gelu_new (GPT-2's default: tanh approximation from elementwise ops), "
                        "gelu_pytorch_tanh (the same approximation, one kernel) or gelu (exact: what ours uses)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="for MFU; H100 SXM bf16 dense = 989")
    args = p.parse_args()

    if args.data != "hafez" and not Path(args.data).is_file():
        p.error(f"--data: no such file {args.data}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bfloat16"
                else contextlib.nullcontext())
    gpt2 = args.preset == "gpt2"
    batch = args.batch or (16 if gpt2 else 12)
    args.steps = args.steps or (5 if gpt2 else 20)
    args.grad_accum = args.grad_accum or (4 if gpt2 else 1)

    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(args.data, tmp)
        char_vocab = int(data.meta["vocab_size"])
        ours, hf = build_models(args, char_vocab)
        block = ours.config.block_size
        n_batches = (args.warmup + args.steps * args.repeats) * args.grad_accum
        rng = torch.Generator().manual_seed(1337)
        batches = [data.sample_batch(batch, block, rng, device) for _ in range(n_batches)]

    ours.to(device)
    hf.to(device)
    contestants = [Contestant("sokhan", ours, ours, ours_loss), Contestant("HF GPT2LMHeadModel", hf, hf, hf_loss)]
    if args.compile:
        ours_c, hf_c = build_models(args, char_vocab)
        ours_c.to(device)
        hf_c.to(device)
        contestants += [Contestant("sokhan + compile", ours_c, torch.compile(ours_c), ours_loss),
                        Contestant("HF + compile", hf_c, torch.compile(hf_c), hf_loss)]
    for c in contestants:
        c.optimizer = make_optimizer(c.model, args.lr, 0.1, (0.9, 0.99), device.type)

    cfg = ours.config
    n_ours = count_params(ours) - ours.positions.weight.numel()
    n_hf = count_params(hf) - hf.transformer.wpe.weight.numel()
    print(f"shape: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dim, block {block}, vocab {cfg.vocab_size}, "
          f"batch {batch} × accum {args.grad_accum}, {args.dtype}, {device}, {torch.get_num_threads()} threads, "
          f"data {args.data}")
    print(f"parameters: sokhan {count_params(ours):,} (non-position {n_ours:,}); "
          f"HF {count_params(hf):,} (non-position {n_hf:,}); HF attention: {hf.config._attn_implementation}, "
          f"HF activation: {args.hf_activation}")

    tokens_per_step = batch * block * args.grad_accum
    for c in contestants:  # warm-up (and compilation) outside the timed blocks
        train_steps(c, batches, args.warmup, args.grad_accum, 1.0, autocast, device)
        c.losses.clear()
    first_loss = {}
    for r in range(args.repeats):
        order = contestants if r % 2 == 0 else contestants[::-1]
        for c in order:
            seconds = train_steps(c, batches, args.steps, args.grad_accum, 1.0, autocast, device)
            c.rates.append(args.steps * tokens_per_step / seconds)
            first_loss.setdefault(c.name, c.losses[-1])

    fpt = flops_per_token(n_ours, cfg.n_layer, cfg.n_head, cfg.head_size, block)
    show_mfu = device.type == "cuda"
    mfu_head = f" {'MFU':>7s}" if show_mfu else ""
    print(f"\n{'':22s} {'tokens/s (median)':>18s} {'min':>9s} {'max':>9s}{mfu_head}   loss: first block → last block")
    for c in contestants:
        med = statistics.median(c.rates)
        mfu = f" {med * fpt / (args.peak_tflops * 1e12):7.2%}" if show_mfu else ""
        print(f"{c.name:22s} {med:18,.0f} {min(c.rates):9,.0f} {max(c.rates):9,.0f}{mfu}   "
              f"{first_loss[c.name]:.3f} → {c.losses[-1]:.3f}")
    if show_mfu:
        print(f"MFU: {fpt / 1e9:.3f} GFLOP per token (6·N + 12·L·H·Q·T, N = {n_ours:,}) "
              f"against a peak of {args.peak_tflops:g} TFLOPS (--peak-tflops)")
    by_name = {c.name: c for c in contestants}

    def ratio(a: str, b: str) -> None:
        ra, rb = by_name[a].rates, by_name[b].rates
        per_rep = statistics.median(x / y for x, y in zip(ra, rb))
        print(f"{a} / {b}: {statistics.median(ra) / statistics.median(rb):.2f}× "
              f"(median of per-repetition ratios {per_rep:.2f}×)")

    print()
    ratio("sokhan", "HF GPT2LMHeadModel")
    if args.compile:
        ratio("sokhan + compile", "HF + compile")
        ratio("sokhan + compile", "HF GPT2LMHeadModel")
    ours_last, hf_last = by_name["sokhan"].losses[-1], by_name["HF GPT2LMHeadModel"].losses[-1]
    steps_done = by_name["sokhan"].step // args.grad_accum
    close = abs(ours_last - hf_last) < 0.1 * max(ours_last, hf_last)
    print(f"sanity: after {steps_done} steps on the same batches, loss sokhan {ours_last:.3f} vs HF {hf_last:.3f} "
          f"({'similar' if close else 'DIFFERENT'}; ln(vocab) = {math.log(cfg.vocab_size):.3f})")


if __name__ == "__main__":
    main()
