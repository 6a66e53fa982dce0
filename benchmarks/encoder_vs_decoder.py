"""The seed's claim, measured: does a BERT-style encoder beat a GPT-style decoder at understanding tasks?

The source texts say an encoder that reads both sides suits encoding tasks and a left-to-right decoder suits
generation. Here both are pretrained the same way on the same corpus — the same preset (layers, width, heads,
context), the same tokenizer, the same wall-clock budget, on this machine — then each is fine-tuned with a
classification head (`sokhan finetune --task classify`: BERT reads its first position, GPT its last token; with
`--pair-encoding separate` each text of a pair is read alone and mean-pooled, the head comparing the two) on two
ParsiNLU tasks for the same budget, and scored on the held-out test files beside the majority class:

* entailment (premise, hypothesis → entailment / neutral / contradiction): train on `entailment.train.jsonl`, test on
  `entailment.test_natural.jsonl` (natural Persian; majority class 37.5 %);
* paraphrase (question1, question2 → paraphrase / different): `qqp.train.jsonl` → `qqp.test.jsonl` (56.5 %).

Everything runs through the command line a user types (printed as it goes), so the figures are the commands'.
The data is `../shared/data/fa-tasks` (ParsiNLU, CC BY-NC-SA: read, never copied).

    python benchmarks/encoder_vs_decoder.py                                  # Hafez, 5 min each pretraining
    python benchmarks/encoder_vs_decoder.py --pretrain-time 120 --finetune-time 60 --out runs/encdec-quick
    python benchmarks/encoder_vs_decoder.py --pair-encoding separate --out runs/encdec-separate
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fa-tasks"
TASKS = {  # name: (train file, test file, text field, pair field)
    "entailment": ("entailment.train.jsonl", "entailment.test_natural.jsonl", "premise", "hypothesis"),
    "paraphrase": ("qqp.train.jsonl", "qqp.test.jsonl", "question1", "question2"),
}
FAMILIES = ("gpt", "bert")
UNBOUNDED = 10**9  # --max-steps: the time budget alone ends a run


def sokhan(*args: str) -> float:
    """Run `sokhan ARGS…` as a user would; returns its wall time. A failure stops the benchmark with its output."""
    command = [sys.executable, "-m", "sokhan", *args]
    print("$ sokhan " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def majority(path: Path) -> tuple[str, float]:
    labels = Counter(json.loads(line)["label"] for line in path.read_text(encoding="utf-8").splitlines() if line)
    label, count = labels.most_common(1)[0]
    return str(label), count / sum(labels.values())


def result(run: Path, test: Path) -> dict[str, float]:
    """The metrics `sokhan evaluate --task classify` saved for `test`, as fractions."""
    saved = json.loads((run / "eval" / f"classify-{test.stem}.json").read_text(encoding="utf-8"))
    return {name: metric["value"] for name, metric in saved["metrics"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="hafez,fatol-hafez", help="the pretraining corpus (`sokhan prepare`)")
    parser.add_argument("--preset", default="small", help="the size of both models")
    parser.add_argument("--pretrain-time", type=int, default=300, help="seconds of pretraining, each model")
    parser.add_argument("--finetune-time", type=int, default=180, help="seconds of fine-tuning, each model and task")
    parser.add_argument("--pair-encoding", choices=("joint", "separate"), default="joint",
                        help="how the classifiers read a pair (`sokhan finetune --pair-encoding`)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=Path("runs/encoder-vs-decoder"))
    args = parser.parse_args()
    if not TASKS_DIR.is_dir():
        raise SystemExit(f"needs the ParsiNLU task files in {TASKS_DIR}")
    out = args.out
    data = out / "data"
    sokhan("prepare", "--source", args.corpus, "--out-dir", str(data), "--seed", str(args.seed))
    seconds: dict[str, float] = {}
    for family in FAMILIES:
        seconds[family] = sokhan("train", "--model", family, "--preset", args.preset, "--data", str(data),
                                 "--out-dir", str(out / family), "--max-time", str(args.pretrain_time),
                                 "--max-steps", str(UNBOUNDED),
                                 "--seed", str(args.seed), "--no-progress")
    rows = []
    for task, (train, test, text, pair) in TASKS.items():
        label, share = majority(TASKS_DIR / test)
        rows.append((task, f"majority class ({label})", 100 * share, None, None))
        for family in FAMILIES:
            run = out / f"{family}-{task}"
            spent = sokhan("finetune", "--task", "classify", "--base", str(out / family),
                           "--data", str(TASKS_DIR / train), "--text-field", text, "--pair-field", pair,
                           "--label-field", "label", "--pair-encoding", args.pair_encoding,
                           "--out-dir", str(run), "--max-time", str(args.finetune_time),
                           "--max-steps", str(UNBOUNDED),
                           "--seed", str(args.seed), "--no-progress")
            sokhan("evaluate", str(run), "--task", "classify", "--data", str(TASKS_DIR / test))
            scores = result(run, TASKS_DIR / test)
            rows.append((task, family, 100 * scores["accuracy"], 100 * scores.get("macro-F1", float("nan")), spent))
    lines = [f"Pretraining: {args.corpus}, preset {args.preset}, {args.pretrain_time} s each "
             f"(gpt {seconds['gpt']:.0f} s, bert {seconds['bert']:.0f} s of wall time with the command); "
             f"fine-tuning {args.finetune_time} s each, pairs read {args.pair_encoding}.", "",
             "| task | model | accuracy | macro-F1 | fine-tune command time |", "|---|---|---|---|---|"]
    for task, model, accuracy, f1, spent in rows:
        f1_text = "" if f1 is None else f"{f1:.1f} %"
        spent_text = "" if spent is None else f"{spent:.0f} s"
        lines.append(f"| {task} | {model} | {accuracy:.1f} % | {f1_text} | {spent_text} |")
    table = "\n".join(lines)
    print(table)
    (out / "encoder_vs_decoder.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
