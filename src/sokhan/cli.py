"""`sokhan` command line: subcommands follow the journey (prepare → train → sample → eval → leaderboard).

Every option of a config dataclass is a flag (`max_steps` → `--max-steps`), and `--config
FILE.toml` loads a file first; flags typed on the command line win. Errors a user can
cause print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from typing import Any

from rich.console import Console

from sokhan.errors import SokhanError

if typing.TYPE_CHECKING:
    from sokhan.train.engine import TrainResult

console = Console(stderr=True)


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field in the dataclass source: the flag's help text."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, flags=re.M))


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                     aliases: dict[str, str] | None = None) -> None:
    """One flag per dataclass field (plus any `aliases`); default None so we know which ones the user typed."""
    from sokhan.config import field_type

    group = parser.add_argument_group(f"{cls.__name__} options")
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flags = ["--" + f.name.replace("_", "-")] + ([aliases[f.name]] if aliases and f.name in aliases else [])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp = field_type(cls, f)
        text = f"{comments[f.name]} " if f.name in comments else ""
        text = f"{text}(default: {default})".replace("%", "%%")
        if tp is bool:
            group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typing.get_origin(tp) is list:
            group.add_argument(*flags, dest=f.name, action="append", default=None, metavar="TEXT",
                               help=f"{text}; repeatable")
        else:
            group.add_argument(*flags, dest=f.name, default=None, metavar=getattr(tp, "__name__", "VALUE").upper(),
                               help=text)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    from sokhan.data.prepare import PrepareConfig
    from sokhan.demo import DemoConfig
    from sokhan.infer.sampling import SampleConfig
    from sokhan.models.config import ModelConfig
    from sokhan.train.engine import TrainConfig

    parser = argparse.ArgumentParser(prog="sokhan", description="A Persian-first workbench for language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole story on the embedded Hafez corpus: prepare → pretrain → sample")
    add_config_flags(p, DemoConfig)

    p = sub.add_parser("prepare", help="normalize a corpus, train a tokenizer, write token shards")
    p.add_argument("--config", help="TOML file with a [prepare] table")
    add_config_flags(p, PrepareConfig)

    p = sub.add_parser("train", aliases=["pretrain"],
                       help="train a model of any family on prepared data: --model gpt|bert|rnn|lstm|gru|ngram")
    p.add_argument("--config", help="TOML file with [train] and [model] tables")
    add_config_flags(p, TrainConfig)
    add_config_flags(p, ModelConfig, aliases={"family": "--model"})

    from sokhan.train.finetune import FinetuneConfig

    p = sub.add_parser("finetune", help="supervised fine-tuning on conversations (full or LoRA): a chat model")
    p.add_argument("--config", help="TOML file with [finetune] and [train] tables")
    add_config_flags(p, FinetuneConfig)
    add_config_flags(p, TrainConfig, skip=("data", "preset"))

    p = sub.add_parser("sample", help="generate text from a trained model (streams to the terminal)")
    p.add_argument("model", help="model or run folder")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--config", help="TOML file with a [sample] table")
    add_config_flags(p, SampleConfig)

    p = sub.add_parser("chat", help="chat with a model in the terminal (/help inside lists the commands)")
    p.add_argument("model", help="model or run folder")
    p.add_argument("--system", default="", help="system prompt (change it inside with /system)")
    p.add_argument("--device", default="auto")
    p.add_argument("--config", help="TOML file with a [sample] table")
    add_config_flags(p, SampleConfig)

    p = sub.add_parser("eval", help="bits per character of a text file under a model")
    p.add_argument("model", help="model or run folder")
    p.add_argument("file", help="UTF-8 text file")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride in tokens (default: block/2)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("fill", help="a BERT-style model's top guesses for each <mask> in a sentence")
    p.add_argument("model", help="a masked-LM (bert) model or run folder")
    p.add_argument("text", help='text with one or more <mask>, e.g. "دل <mask> است"')
    p.add_argument("--top-k", type=int, default=5, help="candidates to print per mask (default: 5)")
    p.add_argument("--device", default="auto")

    from sokhan.zoo import ZooConfig

    p = sub.add_parser("zoo", help="every family on the Hafez corpus under one time budget each, then the leaderboard")
    add_config_flags(p, ZooConfig)

    p = sub.add_parser("leaderboard", help="bits per character of trained runs on their held-out text: table + plot")
    p.add_argument("runs", nargs="+", help="run folders (from `sokhan train`)")
    p.add_argument("--out-dir", default=".", help="where leaderboard.md and leaderboard.png go (default: .)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP API and a web page (chat + Inspect) for a model")
    p.add_argument("model", help="model or run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every /v1 request")
    p.add_argument("--max-tokens-cap", type=int, default=None,
                   help="largest max_tokens a request may ask for (default: the model's context)")
    p.add_argument("--model-name", default=None, help="the model's id in the API (default: the folder's name)")
    p.add_argument("--device", default="auto")

    add_inspect_parser(sub)
    return parser


def add_inspect_parser(sub: argparse._SubParsersAction) -> None:
    """`sokhan inspect VIEW …`: one picture (NAME.png + standalone NAME.html) per call."""
    p = sub.add_parser("inspect", help="pictures of a model's insides, PNG + standalone HTML: "
                                       "attention, positions, next, embeddings, curves")
    views = p.add_subparsers(dest="view", required=True, metavar="VIEW")

    def common(q: argparse.ArgumentParser, model: bool = True) -> None:
        if model:
            q.add_argument("model", help="model or run folder")
            q.add_argument("--device", default="auto")
        q.add_argument("--out-dir", default=None,
                       help="where NAME.png and NAME.html go (default: the run folder's inspect/)")

    q = views.add_parser("attention", help="attention weights per layer and head as heatmaps (gpt, bert)")
    common(q)
    q.add_argument("text", help="the text the model reads")
    q.add_argument("--layer", type=int, default=None, help="one layer (0-based; default: all)")
    q.add_argument("--head", type=int, default=None, help="one head (0-based; default: all, and their mean)")
    q.add_argument("--max-tokens", type=int, default=64, help="read at most this many tokens (default: 64)")
    q = views.add_parser("positions", help="the positional encoding: matrix, curves, similarity of positions")
    common(q)
    q = views.add_parser("next", help="top-k next tokens, and each token's surprisal in bits (causal models)")
    common(q)
    q.add_argument("text", help="the text the model reads")
    q.add_argument("--top-k", type=int, default=10, help="next tokens to show (default: 10)")
    q.add_argument("--max-tokens", type=int, default=None,
                   help="read at most the last N tokens (default: the model's context)")
    q = views.add_parser("embeddings", help="2-D PCA of the token embeddings, the most frequent tokens named")
    common(q)
    q.add_argument("--top", type=int, default=40, help="tokens to name (default: 40)")
    q = views.add_parser("curves", help="loss and bits/char against steps and tokens, one or several runs")
    q.add_argument("runs", nargs="+", help="run folders (with metrics.jsonl)")
    common(q, model=False)


def cmd_prepare(args: argparse.Namespace) -> None:
    from sokhan.config import load_config
    from sokhan.data.prepare import PrepareConfig, prepare

    cfg = load_config(PrepareConfig, args.config, given(args, PrepareConfig))
    out = prepare(cfg)
    console.print(f"prepared data in {out}")


def report(result: TrainResult, next_step: str) -> int:
    """The last lines of a training command; exit status 130 when Ctrl-C stopped it."""
    if result.interrupted:
        console.print(f"stopped at step {result.step} (checkpoint saved); continue with the same command and --resume")
        return 130
    console.print(f"done: {result.step} steps, {result.tokens:,} tokens in {result.elapsed:.0f}s; "
                  f"model in {result.run_dir}; next: {next_step}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from sokhan.config import coerce, load_config, read_section
    from sokhan.models.config import ModelConfig
    from sokhan.train.engine import TrainConfig
    from sokhan.train.pretrain import pretrain

    cfg = load_config(TrainConfig, args.config, given(args, TrainConfig))
    model_overrides = read_section(args.config, ModelConfig.section) if args.config else {}
    model_overrides.update(given(args, ModelConfig))
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    model_overrides = {k: coerce(ModelConfig, k, v) for k, v in model_overrides.items() if k in names}
    next_step = f"sokhan fill {cfg.out_dir} \"… <mask> …\"" if model_overrides.get("family") == "bert" else \
        f"sokhan sample {cfg.out_dir}"
    return report(pretrain(cfg, model_overrides, console), next_step)


def cmd_finetune(args: argparse.Namespace) -> int:
    from sokhan.config import load_config
    from sokhan.train.engine import TrainConfig
    from sokhan.train.finetune import FINETUNE_DEFAULTS, FinetuneConfig, finetune

    ft = load_config(FinetuneConfig, args.config, given(args, FinetuneConfig))
    cfg = load_config(TrainConfig, args.config, given(args, TrainConfig), base=FINETUNE_DEFAULTS)
    return report(finetune(ft, cfg, console), f"sokhan chat {cfg.out_dir}")


def cmd_sample(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel
    from sokhan.config import load_config
    from sokhan.infer.sampling import SampleConfig

    cfg = load_config(SampleConfig, args.config, given(args, SampleConfig))
    lm = LanguageModel.load(args.model, device=args.device)
    out = sys.stdout
    for i in range(args.num_samples):
        sample_cfg = dataclasses.replace(cfg, seed=None if cfg.seed is None else cfg.seed + i)
        if args.num_samples > 1:
            out.write(f"--- sample {i + 1}\n")
        out.write(args.prompt)
        for piece in lm.stream(args.prompt, **dataclasses.asdict(sample_cfg)):
            out.write(piece)
            out.flush()
        out.write("\n")


def cmd_chat(args: argparse.Namespace) -> int:
    from sokhan.api import LanguageModel
    from sokhan.config import load_config
    from sokhan.infer.sampling import SampleConfig
    from sokhan.infer.terminal_chat import TerminalChat

    cfg = load_config(SampleConfig, args.config, given(args, SampleConfig))
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_causal("chat")
    return TerminalChat(lm, cfg, system=args.system).run()


def cmd_eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sokhan.api import LanguageModel

    path = Path(args.file)
    if not path.is_file():
        raise SokhanError(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SokhanError(f"{path} is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise SokhanError(f"{path} is empty")
    lm = LanguageModel.load(args.model, device=args.device)
    bpc = lm.bits_per_char(text, stride=args.stride)
    print(f"{bpc:.4f} bits/char  ({path}, {len(text):,} characters, model {lm.path})")


def cmd_demo(args: argparse.Namespace) -> None:
    from sokhan.config import load_config
    from sokhan.demo import DemoConfig, run_demo

    run_demo(load_config(DemoConfig, None, given(args, DemoConfig)), console)


def cmd_serve(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel
    from sokhan.serve import default_model_name, serve

    if not 0 <= args.port <= 65535:
        raise SokhanError(f"--port {args.port} is not a TCP port (0-65535)")
    if args.max_tokens_cap is not None and args.max_tokens_cap < 1:
        raise SokhanError("--max-tokens-cap must be ≥ 1")
    lm = LanguageModel.load(args.model, device=args.device)
    lm.require_causal("serving a chat API")
    name = args.model_name or default_model_name(args.model)
    serve(lm, args.host, args.port, model_name=name, api_key=args.api_key, max_tokens_cap=args.max_tokens_cap,
          announce=console.print)


def cmd_fill(args: argparse.Namespace) -> None:
    from sokhan.api import LanguageModel
    from sokhan.infer.fill import fill_masks

    lm = LanguageModel.load(args.model, device=args.device)
    for i, candidates in enumerate(fill_masks(lm, args.text, args.top_k), start=1):
        print(f"<mask> {i}:")
        for text, p in candidates:
            print(f"  {p:6.1%}  {text}")


def cmd_zoo(args: argparse.Namespace) -> None:
    from sokhan.config import load_config
    from sokhan.zoo import ZooConfig, run_zoo

    run_zoo(load_config(ZooConfig, None, given(args, ZooConfig)), console)


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sokhan.eval.leaderboard import summarize
    from sokhan.zoo import write_leaderboard

    summaries = [summarize(run, device=args.device) for run in args.runs]
    write_leaderboard(summaries, Path(args.out_dir), console, "bits per character on held-out text")


def cmd_inspect(args: argparse.Namespace) -> None:
    from pathlib import Path

    import sokhan.inspect as pictures
    from sokhan.api import LanguageModel

    if getattr(args, "max_tokens", None) is not None and args.max_tokens < 1:
        raise SokhanError("--max-tokens must be ≥ 1")
    if getattr(args, "text", None) is not None and not args.text.strip():
        raise SokhanError("give a text to look at")
    first = Path(args.runs[0] if args.view == "curves" else args.model)
    run = first.parent.parent if first.parent.name == "checkpoints" else first  # a checkpoint: its run folder
    out = Path(args.out_dir) if args.out_dir else run / "inspect"
    if args.view == "curves":
        picture = pictures.plot_curves(args.runs, out)
    else:
        lm = LanguageModel.load(args.model, device=args.device)
        if args.view == "attention":
            picture = pictures.plot_attention(lm, args.text, out, args.layer, args.head, args.max_tokens)
        elif args.view == "positions":
            picture = pictures.plot_positions(lm, out)
        elif args.view == "next":
            picture = pictures.plot_next_token(lm, args.text, out, args.top_k, args.max_tokens)
        else:
            picture = pictures.plot_embeddings(lm, out, args.top)
    print(picture.png)
    print(picture.html)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"prepare": cmd_prepare, "train": cmd_pretrain, "pretrain": cmd_pretrain, "finetune": cmd_finetune, "sample": cmd_sample, "eval": cmd_eval,
                "demo": cmd_demo, "chat": cmd_chat, "serve": cmd_serve, "fill": cmd_fill, "zoo": cmd_zoo,
                "leaderboard": cmd_leaderboard, "inspect": cmd_inspect}
    try:
        return handlers[args.command](args) or 0
    except SokhanError as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
