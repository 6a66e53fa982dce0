"""`sokhan import`: a local Hugging Face transformers checkpoint (GPT-2 or Llama, safetensors, sharded
or not, with its tokenizer.json) as a sokhan model folder that `sample`, `chat`, `eval` and
`finetune --base` take.

Pickled weights (`pytorch_model.bin`) are refused unread. The checkpoint's end-of-text token
becomes `<|eos|>`; sokhan's other special tokens are added, with new embedding rows.
"""

from __future__ import annotations

import argparse

from sokhan.cli.arguments import console, out_dir

NAME = "import"
HELP = "read a local Hugging Face GPT-2 or Llama checkpoint (safetensors) into a sokhan model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR",
                        help="the transformers checkpoint folder: config.json, model.safetensors (or shards with "
                             "model.safetensors.index.json) and tokenizer.json")
    parser.add_argument("out", type=out_dir, help="the sokhan model folder to write (new, or empty)")


def run(args: argparse.Namespace) -> None:
    from sokhan.interop import import_hf  # torch loads when the command runs, never for --help

    done = import_hf(args.hf_dir, args.out)
    renamed = ", ".join(f"{old} → {new}" for old, new in done.renamed.items()) or "none"
    console.print(f"wrote {done.folder}: {done.architecture} as a sokhan gpt ({done.config.n_layer} layers, "
                  f"d_model {done.config.n_embd}, vocabulary {done.config.vocab_size}); special tokens renamed: "
                  f"{renamed}; added: {', '.join(done.added) or 'none'}", highlight=False, soft_wrap=True)
