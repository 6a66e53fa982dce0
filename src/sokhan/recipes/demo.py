"""Recipe: the main job. With no data and no network, tell the whole story on the Divan of Hafez.

prepare (normalize, train a BPE tokenizer, write shards) → pretrain a small GPT on the CPU
→ report validation bits per character → sample a few couplets → draw what it attends to and
what it expects next → fine-tune it on the Persian dialogs of `chatterbot-corpus` → a chat
model that `sokhan chat` loads → the report card of both (`sokhan.recipes.report_card`).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from sokhan.api import LanguageModel
from sokhan.config import FINETUNE_DEFAULTS, DemoConfig, FinetuneConfig, PrepareConfig, TrainConfig
from sokhan.data.prepare import prepare
from sokhan.eval.leaderboard import summarize
from sokhan.inspect import plot_attention, plot_next_token
from sokhan.recipes.finetune import finetune
from sokhan.recipes.pretrain import pretrain
from sokhan.recipes.report_card import write_report

PROMPTS = ["الا یا ایها الساقی", "دل", "صبا"]
FIRST_LINE = "الا یا ایها الساقی ادر کاسا و ناولها"  # the Divan's opening line, drawn by `look_inside`


def run_demo(cfg: DemoConfig, console: Console) -> Path:
    out = Path(cfg.out_dir)
    console.rule("[bold]1 · prepare: normalize the Divan of Hafez, train a tokenizer, write token shards")
    data_dir = prepare(PrepareConfig(source=cfg.source, out_dir=str(out / "data"), tokenizer=cfg.tokenizer,
                                     vocab_size=cfg.vocab_size, seed=cfg.seed), progress=cfg.progress)
    console.rule("[bold]2 · pretrain: a small GPT, on this machine's CPU")
    train_cfg = TrainConfig(data=str(data_dir), out_dir=str(out / "pretrain"), max_steps=cfg.steps,
                            max_time=cfg.max_time, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                            min_lr=cfg.lr / 10, warmup_steps=min(100, max(1, cfg.steps // 10)),
                            eval_interval=cfg.eval_interval, device=cfg.device, seed=cfg.seed,
                            progress=cfg.progress, keep_checkpoints=1)
    if (out / "pretrain" / "checkpoints").exists():  # a fresh demo each time: never mix two runs
        shutil.rmtree(out / "pretrain")
    result = pretrain(train_cfg, {"preset": cfg.preset}, console=console)
    if result.interrupted:  # Ctrl-C stops the demo, not only this step (its checkpoint is saved)
        raise KeyboardInterrupt
    console.rule("[bold]3 · sample: the model continues a few openings")
    lm = LanguageModel.load(result.run_dir, device=cfg.device)
    for i, prompt in enumerate(PROMPTS):
        text = prompt + lm.generate(prompt, max_new_tokens=60, temperature=0.8, top_k=50, seed=cfg.seed + i)
        console.print(Panel(text.strip(), title=f"sample {i + 1}", expand=False))
    exact = summarize(result.run_dir, device=cfg.device)  # every val token once, as the leaderboard scores it
    console.print(f"validation: {exact.val_bpc:.3f} bits per character (the whole split, text {exact.text}) "
                  f"after {result.step} steps "
                  f"({result.tokens:,} tokens, {result.elapsed:.0f}s of training)")
    console.print(f"loss curve: {result.run_dir / 'loss.png'}")
    pictures = look_inside(lm, result.run_dir / "inspect")
    if cfg.chat_steps <= 0:
        name_pictures(console, pictures)
        console.print(f"report card: {write_report([result.run_dir], out / 'report', device=cfg.device)}")
        console.print(f"try: [bold]sokhan sample {result.run_dir} --prompt \"دل\"[/]")
        return result.run_dir
    console.rule("[bold]4 · fine-tune: turn the poet into a chat model on Persian dialogs (chatterbot-corpus)")
    chat_dir = out / "chat"
    if chat_dir.exists():
        shutil.rmtree(chat_dir)
    chat_cfg = replace(FINETUNE_DEFAULTS, out_dir=str(chat_dir), max_steps=cfg.chat_steps, batch_size=cfg.batch_size,
                       eval_interval=max(1, cfg.chat_steps // 3), device=cfg.device, seed=cfg.seed,
                       progress=cfg.progress, keep_checkpoints=1)
    chat = finetune(FinetuneConfig(base=str(result.run_dir), data="chatterbot"), chat_cfg, console)
    if chat.interrupted:
        raise KeyboardInterrupt
    lm = LanguageModel.load(chat.run_dir, device=cfg.device)
    for question in ("سلام، حالت چطوره؟", "کامپیوتر چیه؟"):
        reply = lm.chat([{"role": "user", "content": question}], max_new_tokens=40, temperature=0.7, top_k=50,
                        seed=cfg.seed)
        console.print(Panel(f"you › {question}\nbot › {reply.strip()}", expand=False))
    console.print(f"pretrained model: {result.run_dir}   chat model: {chat.run_dir}")
    name_pictures(console, pictures)
    console.print(f"report card: {write_report([result.run_dir, chat.run_dir], out / 'report', device=cfg.device)}")
    console.print(f"run [bold]sokhan chat {chat.run_dir}[/]")
    return chat.run_dir


def look_inside(lm: LanguageModel, out_dir: Path) -> list[Path]:
    """The last layer's attention, and the next-token guess, for the Divan's first line (PNG + HTML each)."""
    attention = plot_attention(lm, FIRST_LINE, out_dir, layer=lm.model.config.n_layer - 1)
    next_token = plot_next_token(lm, FIRST_LINE, out_dir)
    return [attention.png, attention.html, next_token.png, next_token.html]


def name_pictures(console: Console, pictures: list[Path]) -> None:
    console.print("look inside: " + "   ".join(str(p) for p in pictures))
