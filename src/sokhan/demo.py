"""Recipe: the main job. With no data and no network, tell the whole story on the Divan of Hafez.

prepare (normalize, train a BPE tokenizer, write shards) → pretrain a small GPT on the CPU
→ report validation bits per character → sample a few couplets → leave a model folder
that `sokhan sample` loads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.console import Console
from rich.panel import Panel

from sokhan.data.prepare import PrepareConfig, prepare
from sokhan.train.engine import TrainConfig
from sokhan.train.pretrain import pretrain

PROMPTS = ["الا یا ایها الساقی", "دل", "صبا"]


@dataclass
class DemoConfig:
    section: ClassVar[str] = "demo"

    out_dir: str = "runs/demo"
    source: str = "hafez,fatol-hafez"
    tokenizer: str = "bpe"
    vocab_size: int = 2048
    preset: str = "small"
    steps: int = 1500
    max_time: float = 480.0     # seconds of training at most, so the demo fits in 10 minutes
    batch_size: int = 16
    lr: float = 2e-3
    eval_interval: int = 250
    device: str = "auto"
    seed: int = 1337
    progress: bool = True


def run_demo(cfg: DemoConfig, console: Console) -> Path:
    out = Path(cfg.out_dir)
    console.rule("[bold]1 · prepare: normalize the Divan of Hafez, train a tokenizer, write token shards")
    data_dir = prepare(PrepareConfig(source=cfg.source, out_dir=str(out / "data"), tokenizer=cfg.tokenizer,
                                     vocab_size=cfg.vocab_size, seed=cfg.seed), progress=cfg.progress)
    console.rule("[bold]2 · pretrain: a small GPT, on this machine's CPU")
    train_cfg = TrainConfig(data=str(data_dir), out_dir=str(out / "pretrain"), preset=cfg.preset,
                            max_steps=cfg.steps, max_time=cfg.max_time, batch_size=cfg.batch_size, lr=cfg.lr,
                            min_lr=cfg.lr / 10, warmup_steps=min(100, max(1, cfg.steps // 10)),
                            eval_interval=cfg.eval_interval, device=cfg.device, seed=cfg.seed,
                            progress=cfg.progress, keep_checkpoints=1)
    if (out / "pretrain" / "checkpoints").exists():  # a fresh demo each time: never mix two runs
        shutil.rmtree(out / "pretrain")
    result = pretrain(train_cfg, console=console)
    console.rule("[bold]3 · sample: the model continues a few openings")
    from sokhan.api import LanguageModel

    lm = LanguageModel.load(result.run_dir, device=cfg.device)
    for i, prompt in enumerate(PROMPTS):
        text = prompt + lm.generate(prompt, max_new_tokens=60, temperature=0.8, top_k=50, seed=cfg.seed + i)
        console.print(Panel(text.strip(), title=f"sample {i + 1}", expand=False))
    bpc = f"{result.val_bpc:.3f}" if result.val_bpc is not None else "n/a"
    console.print(f"validation: {bpc} bits per character after {result.step} steps "
                  f"({result.tokens:,} tokens, {result.elapsed:.0f}s of training)")
    console.print(f"loss curve: {result.run_dir / 'loss.png'}")
    console.print(f"try: [bold]sokhan sample {result.run_dir} --prompt \"دل\"[/]")
    return result.run_dir
