"""Speedrun on tiny Shakespeare: does sokhan reach, in half the wall time, what a nanoGPT-equivalent peer reaches?

The peer is Hugging Face's `GPT2LMHeadModel` at nanoGPT's README CPU shape (4 layers, 4 heads,
128 dims, block 64, batch 12, no dropout, exact GELU as nanoGPT's `nn.GELU()`, tied embeddings)
trained by nanoGPT's own recipe, copied here: AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1
on parameters of dim ≥ 2 and none on the rest (`configure_optimizers`; unfused on a CPU, as
nanoGPT leaves it), grad clip 1.0, `get_lr` (linear warmup over 100 iterations, cosine to 1e-4
at `--peer-iters`) and `get_batch` (random windows, `torch.randint` offsets). Its training wall
time T counts every iteration, batch drawing included, and no scoring.

sokhan then trains for T/2 on the same training text through its own public command,
`sokhan train --model gpt --preset speedrun … --max-time T/2` (the preset: the same shape with
RoPE, trained with Muon at lr 8e-3; batch 12 as the peer's), run in this process (`sokhan.cli.main`), so both
share the process, the threads and the load of the machine. Its clock is the engine's
`elapsed`, the steps' time without the evaluations and checkpoints, which is what `--max-time`
spends; its cosine follows that clock. A checkpoint every `--checkpoints`-th of the run tells
when it first reaches the peer's figure. If it has not by T/2, a second run with a budget of
`--reach` × T (its own cosine over that budget) finds when it does; at `--reach 1` its end is
the equal-wall-time figure.

The data is nanoGPT's data/shakespeare_char/prepare.py split: the first 90 % of the characters
train, the last 10 % are held out. sokhan's data folder is `sokhan prepare --tokenizer char` of
the training text as one document (`doc_split=file`, so the model sees the text as nanoGPT
does, blank lines included), its val split the held-out text in two halves (prepare wants two
documents there), a split seed picked so that the three files land where they belong. The
Persian normalizer leaves this English text as it is but for the trailing spaces of a few lines
(21 characters in the file). The peer's vocabulary is nanoGPT's, the text's 65 characters;
sokhan's tokenizer adds its special tokens and 256 byte fallbacks (a larger embedding).

Both models are scored by one function on the held-out text, never by the engine's estimate:
windows of 64 characters (whatever sokhan's context), stride 32, every held-out character scored exactly once (the first
window all of its targets, with the last training character as the context of the first;
each later window its last 32), bits per character = total nats / ln 2 / characters scored.

    python benchmarks/speedrun.py                                  # peer 2000 iterations, sokhan --preset speedrun T/2
    python benchmarks/speedrun.py --repeats 3                      # the whole comparison three times
    python benchmarks/speedrun.py --preset none                    # the shape with sokhan's default recipe
    python benchmarks/speedrun.py --sokhan-arg=--warmup-steps=100  # any `sokhan train` flag, passed through
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sokhan.cli import main as sokhan_main
from sokhan.config import NormalizerConfig, PrepareConfig
from sokhan.data.prepare import prepare, split_of
from sokhan.data.shards import load_meta
from sokhan.data.sources import file_documents, normalized_documents
from sokhan.models.checkpoint import complete_checkpoints, latest_checkpoint
from sokhan.models.trained import TrainedModel
from sokhan.text.normalize import PersianNormalizer

TINYSHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}  # nanoGPT README's CPU run
BATCH = 12
STRIDE = 32

# nanoGPT's config/train_shakespeare_char.py with the README's CPU overrides
PEER_LR, PEER_MIN_LR, PEER_WARMUP, PEER_BETAS, PEER_DECAY, PEER_CLIP = 1e-3, 1e-4, 100, (0.9, 0.99), 0.1, 1.0


# -- data ------------------------------------------------------------------------------------------------------

@dataclass
class Text:
    train: str
    heldout: str
    chars: list[str]  # nanoGPT's vocabulary: every character of the whole text, sorted


def load_text(path: Path) -> Text:
    """nanoGPT's data/shakespeare_char/prepare.py: the first 90 % of the characters train, the rest is held out."""
    data = path.read_text(encoding="utf-8")
    n = int(len(data) * 0.9)
    return Text(data[:n], data[n:], sorted(set(data)))


def prepare_sokhan_data(text: Text, folder: Path) -> Path:
    """`sokhan prepare --tokenizer char` of the training text as its one train document, the held-out halves as
    val; the split is prepare's hash of each document's opening, so the seed is the first that puts them there."""
    half = len(text.heldout) // 2
    files = {"train.txt": text.train, "heldout-1.txt": text.heldout[:half], "heldout-2.txt": text.heldout[half:]}
    for name, body in files.items():
        (folder / name).write_text(body, encoding="utf-8")
    paths = [folder / name for name in files]
    normalize = PersianNormalizer(NormalizerConfig(digits="keep"))
    openings = [next(normalized_documents(file_documents(p, doc_split="file", on_decode_error="fail"), normalize))
                for p in paths]
    wanted = ["train", "val", "val"]
    seed = next(s for s in range(10_000) if [split_of(doc, s, 0.5) for doc in openings] == wanted)
    out = folder / "data"
    prepare(PrepareConfig(source=",".join(map(str, paths)), out_dir=str(out), tokenizer="char", doc_split="file",
                          val_fraction=0.5, seed=seed, digits="keep", workers=1), progress=False)
    splits = load_meta(out)["splits"]
    train = splits["train"]
    if (train["documents"], splits["val"]["documents"]) != (1, 2) or train["tokens"] != train["chars"] + 1:
        sys.exit(f"speedrun: sokhan's data is not the training text as one document of one token per character "
                 f"(train: {train['documents']} documents, {train['tokens']:,} tokens for {train['chars']:,} "
                 f"characters; val: {splits['val']['documents']} documents)")
    return out


# -- scoring ---------------------------------------------------------------------------------------------------

@torch.inference_mode()
def bits_per_char(logits_of: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, block: int,
                  stride: int, batch: int = 128) -> float:
    """Bits per character of `ids[1:]` given `ids[0]` as context, by sliding windows of `block` tokens.

    The first window scores every target it has; each later one moves by `stride` and scores only
    its last `stride` targets (the last window fewer: what is left), so every target is scored
    once, after at least block − stride tokens of context. With one token per character this is
    total nats / ln 2 / characters. Every window has the same length, so they go `batch` at a
    time through `logits_of`, which maps (B, T) ids to (B, T, V) logits.
    """
    n = len(ids) - 1  # targets: ids[1:]
    windows = []  # (start, end, new): inputs ids[start:end] predict ids[start + 1:end + 1], the last `new` scored
    done = 0
    while done < n:
        end = min(done + (block if done == 0 else stride), n)
        windows.append((max(0, end - block), end, end - done))
        done = end
    nats = 0.0
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        x = torch.stack([ids[s:e] for s, e, _ in group])
        y = torch.stack([ids[s + 1:e + 1] for s, e, _ in group])
        logits = logits_of(x).float()
        nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
        nats += sum(float(row[-new:].double().sum()) for row, (_, _, new) in zip(nll, group))
    return nats / math.log(2) / n


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors are counted once


# -- the peer: nanoGPT's recipe on HF's GPT-2 --------------------------------------------------------------------

def peer_lr(it: int, decay_iters: int) -> float:
    """nanoGPT's get_lr: linear warmup, then a cosine down to min_lr at `decay_iters`."""
    if it < PEER_WARMUP:
        return PEER_LR * (it + 1) / (PEER_WARMUP + 1)
    if it > decay_iters:
        return PEER_MIN_LR
    ratio = (it - PEER_WARMUP) / (decay_iters - PEER_WARMUP)
    return PEER_MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (PEER_LR - PEER_MIN_LR)


def train_peer(text: Text, iters: int, seed: int) -> tuple[nn.Module, float]:
    """HF GPT-2 trained as nanoGPT's train.py trains it on a CPU; returns the model and its training seconds."""
    from transformers import GPT2Config, GPT2LMHeadModel

    stoi = {c: i for i, c in enumerate(text.chars)}
    data = np.array([stoi[c] for c in text.train], dtype=np.uint16)
    block = SHAPE["block_size"]
    cfg = GPT2Config(vocab_size=len(text.chars), n_positions=block, n_embd=SHAPE["n_embd"],
                     n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, activation_function="gelu", tie_word_embeddings=True, bos_token_id=None,
                     eos_token_id=None)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": PEER_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=PEER_LR, betas=PEER_BETAS)
    model.train()
    t0 = time.perf_counter()
    for it in range(iters):
        for group in optimizer.param_groups:
            group["lr"] = peer_lr(it, iters)
        ix = torch.randint(len(data) - block, (BATCH,))  # nanoGPT's get_batch
        x = torch.stack([torch.from_numpy(data[i:i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block].astype(np.int64)) for i in ix])
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), PEER_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    model.eval()
    return model, seconds


# -- sokhan ------------------------------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    step: int
    elapsed: float  # the engine's training seconds at this checkpoint
    bpc: float
    params: int


def train_sokhan(args: argparse.Namespace, data: Path, run: Path, budget: float, steps_guess: int,
                 seed: int) -> None:
    """`sokhan train` for `budget` seconds, a checkpoint about every `steps_guess / --checkpoints` steps."""
    interval = max(1, round(steps_guess / args.checkpoints))
    argv = ["train", "--data", str(data), "--out-dir", str(run), "--model", "gpt", "--batch-size", str(BATCH),
            "--max-time", f"{budget:.3f}", "--max-steps", str(10**9), "--eval-interval", str(interval),
            "--keep-checkpoints", "0", "--seed", str(seed), "--device", "cpu", "--no-progress"]
    if args.preset != "none":
        argv += ["--preset", args.preset]
    else:
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in SHAPE.items()] + ["--dropout", "0"]
    status = sokhan_main(argv + (args.sokhan_arg or []))
    if status:
        sys.exit(f"speedrun: `sokhan {' '.join(argv)}` exited with status {status}")


class Scorer:
    """Scores sokhan checkpoints on the held-out text (each once), checking that its tokenizer gives one
    token per character."""

    def __init__(self, text: Text):
        self.text = text.train[-1] + text.heldout  # the last training character: the first one's context
        self.done: dict[Path, Checkpoint] = {}

    def __call__(self, folder: Path) -> Checkpoint:
        if folder not in self.done:
            tm = TrainedModel.load(folder, device="cpu")
            if tm.block_size < SHAPE["block_size"]:
                sys.exit(f"speedrun: sokhan's context is {tm.block_size} tokens; the scoring windows are "
                         f"{SHAPE['block_size']}")
            ids = tm.tokenizer.encode_plain(self.text)
            if len(ids) != len(self.text) or tm.tokenizer.decode(ids) != self.text:
                sys.exit(f"speedrun: sokhan's tokenizer maps the {len(self.text):,} held-out characters to "
                         f"{len(ids):,} tokens; bits per character needs one token per character")
            bpc = bits_per_char(lambda x: tm.model(x).logits, torch.tensor(ids), SHAPE["block_size"], STRIDE)
            progress = tm.config["progress"]
            self.done[folder] = Checkpoint(progress["step"], progress["elapsed"], bpc, count_params(tm.model))
        return self.done[folder]

    def first_reaching(self, run: Path, target: float) -> Checkpoint | None:
        """The run's first checkpoint (in training order) at or below `target` bits per character."""
        return next((c for c in map(self, complete_checkpoints(run / "checkpoints")) if c.bpc <= target), None)

    def final(self, run: Path) -> Checkpoint:
        return self(latest_checkpoint(run))


# -- the comparison ------------------------------------------------------------------------------------------------

def compare(args: argparse.Namespace, text: Text, data: Path, work: Path, seed: int) -> None:
    """One peer run and one or two sokhan runs, with every figure printed."""
    block = SHAPE["block_size"]
    peer, T = train_peer(text, args.peer_iters, seed)
    stoi = {c: i for i, c in enumerate(text.chars)}
    peer_ids = torch.tensor([stoi[c] for c in text.train[-1] + text.heldout])
    peer_bpc = bits_per_char(lambda x: peer(input_ids=x).logits, peer_ids, block, STRIDE)
    print(f"peer (HF GPT2LMHeadModel, nanoGPT recipe): {count_params(peer):,} parameters, {args.peer_iters} "
          f"iterations in T = {T:.1f} s ({args.peer_iters / T:.1f} it/s): {peer_bpc:.4f} bits/char", flush=True)

    score = Scorer(text)
    run = work / f"sokhan-{seed}"
    train_sokhan(args, data, run, T / 2, args.peer_iters // 2, seed)
    half = score.final(run)
    print(f"sokhan: {half.params:,} parameters, {half.step} steps in {half.elapsed:.1f} s "
          f"({half.step / half.elapsed:.1f} it/s): {half.bpc:.4f} bits/char at T/2", flush=True)
    reached = score.first_reaching(run, peer_bpc)
    if reached is not None:
        print(f"sokhan first reaches the peer's {peer_bpc:.4f} at {reached.elapsed:.1f} s (= {reached.elapsed / T:.2f} "
              f"× T; step {reached.step}: {reached.bpc:.4f})")
        print("target (sokhan reaches the peer's bits/char in <= T/2): met", flush=True)
        return
    verdict = f"not met: at T/2 sokhan is {half.bpc - peer_bpc:.4f} bits/char above; "
    if args.reach <= 0.5:
        print(verdict + f"its time to the peer's figure is not sought (--reach {args.reach:g})", flush=True)
        return
    long_run = work / f"sokhan-{seed}-reach"
    train_sokhan(args, data, long_run, args.reach * T, round(args.peer_iters * args.reach), seed)
    end = score.final(long_run)
    print(f"sokhan over {args.reach:g} × T (a run of its own, its cosine over that budget): {end.step} steps in "
          f"{end.elapsed:.1f} s: {end.bpc:.4f} bits/char")
    reached = score.first_reaching(long_run, peer_bpc)
    if reached is None:
        print(verdict + f"never within the budget ({args.reach:g} × T = {args.reach * T:.1f} s)", flush=True)
    else:
        print(verdict + f"it reaches the peer's figure at {reached.elapsed:.1f} s (= {reached.elapsed / T:.2f} × T)",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-iters", type=int, default=2000, help="the peer's iterations (its cosine ends there)")
    p.add_argument("--repeats", type=int, default=1, help="run the whole comparison this many times")
    p.add_argument("--seed", type=int, default=1337, help="seed of both runs (repeat r uses seed + r)")
    p.add_argument("--preset", default="speedrun",
                   help="sokhan's preset (its model, and the training a preset brings: speedrun's Muon); none: the "
                        "nanoGPT shape with sokhan's default recipe")
    p.add_argument("--sokhan-arg", action="append", metavar="FLAG",
                   help="a `sokhan train` flag passed through, e.g. --sokhan-arg=--lr=2e-3 (repeatable; wins)")
    p.add_argument("--checkpoints", type=int, default=40, help="about this many sokhan checkpoints per run")
    p.add_argument("--reach", type=float, default=1.0,
                   help="if sokhan misses the target at T/2: a second run of this many × T finds when it gets there")
    args = p.parse_args()
    if not TINYSHAKESPEARE.is_file():
        sys.exit(f"speedrun: no tiny Shakespeare at {TINYSHAKESPEARE}")

    text = load_text(TINYSHAKESPEARE)
    print(f"tiny Shakespeare: {len(text.train):,} training characters, {len(text.heldout):,} held out, "
          f"{len(text.chars)} distinct; shape {SHAPE['n_layer']}×{SHAPE['n_head']}×{SHAPE['n_embd']}, block "
          f"{SHAPE['block_size']}, batch {BATCH}; "
          f"sokhan: {f'--preset {args.preset}' if args.preset != 'none' else 'the shape'}"
          f"{' ' + ' '.join(args.sokhan_arg) if args.sokhan_arg else ''}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare_sokhan_data(text, work)
        for r in range(args.repeats):
            load = os.getloadavg()
            print(f"\nrepeat {r + 1}/{args.repeats}: seed {args.seed + r}, load average {load[0]:.2f}", flush=True)
            compare(args, text, data, work, args.seed + r)
            print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
