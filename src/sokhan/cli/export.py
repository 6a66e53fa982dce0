"""`sokhan export`: a model as another library's folder; `--format hf` writes one that Hugging Face
transformers loads (`AutoModelForCausalLM` and `AutoTokenizer`), as GPT-2 or Llama, with equal logits.

Only a model that a transformers class computes exactly is exported (GPT-2: learned positions,
LayerNorm, GELU or ReLU; Llama: RoPE, RMSNorm, SwiGLU; both pre-norm); any other is refused with
the option that stands in the way. A chat model's template goes along as the tokenizer's.
"""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import console, out_dir

NAME = "export"
HELP = "write a model as a Hugging Face transformers folder (GPT-2 or Llama), with its tokenizer"
FORMATS = ("hf",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model: a run folder (its latest checkpoint) or a checkpoint folder")
    parser.add_argument("out", type=out_dir, help="the folder to write (new, or empty)")
    parser.add_argument("--format", choices=FORMATS, default="hf",
                        help="hf: Hugging Face transformers (config.json, model.safetensors, tokenizer files) "
                             "(default: hf)")


def run(args: argparse.Namespace) -> None:
    from sokhan.interop import export_hf  # torch loads when the command runs, never for --help

    done = export_hf(args.model, args.out)
    chat = " with its chat template" if done.chat_template else ""
    console.print(f"wrote {done.folder}: {done.architecture}{chat}; load it with transformers' "
                  f"AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained", highlight=False,
                  soft_wrap=True)
