"""The leaderboard: every trained run on one scale, bits per character of the same held-out text.

For each run folder: family, size, training tokens, wall time and throughput (from its
checkpoint), and the bits per character of its data's whole validation split, scored
exactly (every token once, each family the way it reads; see `sequence_nll`). A masked-LM
encoder has no left-to-right likelihood, so it reports masked-token loss and accuracy in
columns of its own. The figures are cached in the run folder, keyed by checkpoint.
`write_leaderboard` prints the table and writes leaderboard.md and the picture.

Bits per character rank models only on the same text: runs whose datasets differ (another
source, normalizer option, split seed or validation fraction) scored other characters. Each
run carries the fingerprint of its validation text (`sokhan.data.fingerprint`, recorded by
`sokhan prepare`), and runs on different texts go to different tables, never one ranking.
A dataset prepared before fingerprints has an unknown text: its runs are ranked only with
runs on the same data folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sokhan.data.fingerprint import short_fingerprint
from sokhan.data.shards import TokenData, load_meta
from sokhan.errors import SokhanError
from sokhan.eval.bpc import sequence_nll
from sokhan.inspect.picture import XY, Picture, Series
from sokhan.inspect.save import save_picture
from sokhan.models.checkpoint import resolve_model_dir
from sokhan.models.trained import TrainedModel
from sokhan.train.metrics import last_val_row
from sokhan.units import bits_per_char

CACHE = "leaderboard.json"
UNKNOWN = "unknown"  # the text of a dataset prepared before `sokhan prepare` recorded fingerprints
MIXED_TEXTS = ("These runs scored different validation texts (their datasets differ in source, normalization or "
               "split), so each text has its own table: bits per character compare only within a table.")
FAMILY_COLOURS = {"ngram": "tab:gray", "rnn": "tab:orange", "lstm": "tab:green", "gru": "tab:olive", "gpt": "tab:blue"}


@dataclass
class RunSummary:
    run: str
    family: str
    size: str                    # layers × width, or the n-gram order
    parameters: int              # weights; for an n-gram, stored n-gram entries
    tokens: int                  # training tokens seen (an n-gram: counted once)
    seconds: float               # training wall time
    val_bpc: float | None        # causal families: bits per character of the whole val split
    masked_loss: float | None    # bert: masked-token cross-entropy (nats) on val
    masked_accuracy: float | None
    checkpoint: str = ""
    counted: bool = False        # counted (an n-gram), not trained: no training compute to plot
    text: str = UNKNOWN          # the short fingerprint of the validation text scored
    data: str = ""               # the data folder whose validation split was scored
    machine: str = ""            # what `seconds` was measured on (`sokhan.device.machine`); "" if not recorded

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.inf

    @property
    def train_flops(self) -> float | None:
        """≈ 6 · parameters · tokens (forward + backward; Kaplan et al. 2020); None for counted models."""
        return None if self.counted else 6.0 * self.parameters * self.tokens


def summarize(run_dir: str | Path, device: str = "auto") -> RunSummary:
    run_dir = Path(run_dir)
    folder = resolve_model_dir(run_dir)
    cache = run_dir / CACHE
    cached = _cached(cache, folder)
    if cached is not None:
        return cached
    lm = TrainedModel.load(folder, device=device)
    cfg, caps, progress = lm.model.config, lm.capabilities, lm.config.get("progress", {})
    if caps.needs_source:
        raise SokhanError(f"{run_dir} is a translation model: it is measured by BLEU and chrF++ (its scores.json, or "
                          f"`sokhan eval {run_dir} --source FILE --reference FILE`), not bits per character")
    if caps.classifies:
        raise SokhanError(f"{run_dir} is a classifier: it is measured by accuracy and macro-F1 (`sokhan evaluate "
                          f"{run_dir} --task classify --data FILE`), not bits per character")
    data_dir = lm.config.get("train", {}).get("data")
    if not data_dir or not Path(data_dir).is_dir():
        raise SokhanError(f"{run_dir}: its data folder {data_dir!r} is gone; the leaderboard scores its val split")
    size = f"order {cfg.order}" if caps.lookup else f"{cfg.n_layer}×{cfg.n_embd}"
    val_bpc = masked_loss = masked_accuracy = None
    if not caps.causal:
        row = last_val_row(run_dir)
        masked_loss, masked_accuracy = row.get("loss"), row.get("accuracy")
    else:
        val = TokenData(data_dir, "val")
        nll, _ = sequence_nll(lm.model, np.asarray(val.tokens), cfg.block_size)
        val_bpc = bits_per_char(nll, val.num_chars)
    text = val_text(data_dir)
    summary = RunSummary(run_dir.name, cfg.family, size, int(lm.model.num_parameters()), int(progress.get("tokens", 0)),
                         float(progress.get("elapsed", 0.0)), val_bpc, masked_loss, masked_accuracy, str(folder),
                         counted=caps.lookup, text=text, data=str(data_dir), machine=str(progress.get("machine", "")))
    cache.write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    return summary


def val_text(data_dir: str | Path) -> str:
    """The short fingerprint of a data folder's validation text, or UNKNOWN (prepared before fingerprints)."""
    fingerprint = load_meta(data_dir)["splits"].get("val", {}).get("fingerprint")
    return short_fingerprint(fingerprint) if fingerprint else UNKNOWN


def _cached(cache: Path, folder: Path) -> RunSummary | None:
    """The cached summary, if it is of this checkpoint scored on the text its data folder holds now: a
    re-prepared folder (another text) is scored again. A folder that is gone leaves the figure as it was."""
    if not cache.is_file():
        return None
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # a damaged cache is only a cache
    if (not isinstance(data, dict) or data.get("checkpoint") != str(folder)
            or set(data) != {f.name for f in dataclasses.fields(RunSummary)}):
        return None
    try:
        current = val_text(data["data"])
    except SokhanError:
        return RunSummary(**data)
    return RunSummary(**data) if current == data["text"] else None


def measured_on(summaries: list[RunSummary]) -> str:
    """Where the table's times were measured, from the run folders: one machine for all, or each with its runs.
    Bits per character do not depend on the machine; wall time and tokens/s do."""
    machines: dict[str, list[str]] = {}
    for s in sort_runs(summaries):
        machines.setdefault(s.machine or "a machine not recorded (a run trained before sokhan kept it)", []).append(
            s.run)
    if len(machines) == 1:
        return f"Times measured on {next(iter(machines))}."
    return "Times measured on " + "; ".join(f"{where} ({', '.join(runs)})" for where, runs in machines.items()) + "."


def table(summaries: list[RunSummary], title: str = "leaderboard") -> Table:
    """Causal families first, best bits per character on top; masked encoders after, in their own columns."""
    t = Table(title=title, caption=measured_on(summaries))
    for name in ("run", "family", "size", "params", "tokens", "time", "tok/s", "val bpc", "MLM loss", "MLM acc"):
        t.add_column(name, justify="left" if name in ("run", "family", "size") else "right", no_wrap=True)
    for s in sort_runs(summaries):
        t.add_row(s.run, s.family, s.size, short(s.parameters), short(s.tokens), seconds(s.seconds),
                  short(s.tokens_per_s), fmt(s.val_bpc, 3), fmt(s.masked_loss, 3), fmt(s.masked_accuracy, 3))
    return t


def seconds(t: float) -> str:
    return f"{t:.0f}s" if t >= 10 else f"{t:.2f}s"


def short(n: float) -> str:
    """1234567 → 1.2M: a count that fits a narrow terminal column."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def markdown(summaries: list[RunSummary]) -> str:
    head = ("| run | family | size | parameters | train tokens | wall time | tokens/s | val bits/char | "
            "masked loss | masked acc. |")
    lines = [head, "|" + "---|" * 10]
    for s in sort_runs(summaries):
        lines.append(f"| {s.run} | {s.family} | {s.size} | {s.parameters:,} | {s.tokens:,} | {seconds(s.seconds)} | "
                     f"{s.tokens_per_s:,.0f} | {fmt(s.val_bpc, 3)} | {fmt(s.masked_loss, 3)} | "
                     f"{fmt(s.masked_accuracy, 3)} |")
    return "\n".join(lines) + "\n\n" + measured_on(summaries) + "\n"


def sort_runs(summaries: list[RunSummary]) -> list[RunSummary]:
    return sorted(summaries, key=lambda s: (s.val_bpc is None, s.val_bpc or 0.0, s.masked_loss or 0.0))


def fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def leaderboard_picture(summaries: list[RunSummary], title: str, name: str = "leaderboard") -> Picture:
    """Bits/char against training compute (≈6·N·D FLOPs) and against wall time; one point per run.

    Counted n-gram models have no FLOP figure: on the compute panel they are dashed
    horizontal lines across the networks' range, so each network reads against the counts.
    """
    causal = [s for s in summaries if s.val_bpc is not None]
    if not causal:
        raise SokhanError("no left-to-right model among the runs: nothing to plot in bits per character")
    trained = [s for s in causal if s.train_flops is not None]
    span = [min(s.train_flops for s in trained), max(s.train_flops for s in trained)] if trained else [1.0, 10.0]
    span = [span[0] / 2, span[1] * 2]  # the lines reach past the outermost points
    compute, wall = [], []
    for family in dict.fromkeys(s.family for s in causal):
        runs = [s for s in causal if s.family == family]
        colour = FAMILY_COLOURS.get(family, "tab:purple")
        points = [s for s in runs if s.train_flops is not None]
        if points:
            compute.append(Series(family, np.array([s.train_flops for s in points]),
                                  np.array([s.val_bpc for s in points]), "markers", [s.run for s in points],
                                  annotate=True, color=colour))
        for s in runs:
            if s.train_flops is None:
                compute.append(Series(s.run, np.array(span), np.array([s.val_bpc] * 2), "line", [s.run, ""],
                                      annotate=True, color=colour, dashed=True, legend=False))
        wall.append(Series(family, np.array([max(s.seconds, 1e-2) for s in runs]), np.array([s.val_bpc for s in runs]),
                           "markers", [s.run for s in runs], annotate=True, color=colour))
    values = np.array([s.val_bpc for s in causal])
    pad = 0.08 * max(values.max() - values.min(), 0.05)
    y_range = (float(values.min() - pad), float(values.max() + pad))
    bpc = "validation bits per character (lower is better)"
    panels = [XY(compute, "against training compute", "training compute ≈ 6 · parameters · tokens (FLOPs)", bpc,
                 log_x=True, y_range=y_range),
              XY(wall, "against training wall time", "training wall time (s)", bpc, log_x=True, y_range=y_range)]
    return Picture(name, title, panels, columns=2, panel_size=(6.0, 4.8))


def by_text(summaries: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """The runs grouped by the validation text they were scored on, in the order first met: one ranking each.

    Runs on an unknown text (a dataset without a fingerprint) group by data folder: one folder
    holds one text, and two folders may not.
    """
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        groups.setdefault(s.text if s.text != UNKNOWN else f"{UNKNOWN} ({s.data})", []).append(s)
    return groups


def write_leaderboard(summaries: list[RunSummary], out: Path, console: Console, title: str) -> list[Picture]:
    """Print one table per validation text; write leaderboard.md, and a picture per text with bits per character.

    Runs that all scored one text (a zoo, runs on one dataset) give one table, leaderboard.md
    and leaderboard.png/.html. Runs on several texts give a table per text, leaderboard.md
    with a section per text and leaderboard-TEXT.png/.html for each, after one line saying why.
    """
    out.mkdir(parents=True, exist_ok=True)
    wide = Console(file=console.file, width=max(console.width, 120), quiet=console.quiet)  # whole rows, even in a log
    groups = by_text(summaries)
    if len(groups) > 1:
        console.print(MIXED_TEXTS)
    sections, pictures = [], []
    for i, (text, runs) in enumerate(groups.items()):
        heading = f"{title} · validation text {text}"
        wide.print(table(runs, heading))
        sections.append(f"## validation text {text}\n\n{markdown(runs)}")
        if any(s.val_bpc is not None for s in runs):
            slug = f"{UNKNOWN}-{i + 1}" if text.startswith(UNKNOWN) else text  # a file name: no folder in it
            name = "leaderboard" if len(groups) == 1 else f"leaderboard-{slug}"
            pictures.append(save_picture(leaderboard_picture(runs, heading, name), out))
    document = markdown(summaries) if len(groups) == 1 else f"{MIXED_TEXTS}\n\n" + "\n".join(sections)
    (out / "leaderboard.md").write_text(document, encoding="utf-8")
    plots = ", ".join(str(p.png) for p in pictures) or "none: no left-to-right model has bits per character"
    console.print(f"table: {out / 'leaderboard.md'}   plot{'s' if len(pictures) > 1 else ''}: {plots}")
    return pictures
