"""The training engine every model family shares: one loop you can read top to bottom.

AdamW + warmup/cosine, gradient accumulation (every target token weighted alike) and
clipping, bf16 autocast on CUDA, optional torch.compile, periodic evaluation (loss and an
estimate of bits per character), metrics to JSONL, a rich progress bar, atomic checkpoints
with everything needed to resume exactly, and Ctrl-C that finishes the step, saves and stops.
Under torchrun the same loop runs on every process, DDP or FSDP2 (`sokhan.train.distributed`).
What a batch is and how its loss is taken is the family's `Task` (`sokhan.train.tasks`);
what else happens at a checkpoint (the recipes draw the loss curve) is the `on_save` hook's.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from sokhan.config import TrainConfig
from sokhan.device import autocast_for, machine, resolve_device
from sokhan.errors import SokhanError
from sokhan.models.checkpoint import (
    latest_checkpoint,
    load_trainer_state,
    load_weights,
    read_config,
    save_checkpoint,
    unique_state_dict,
)
from sokhan.train import distributed
from sokhan.train.metrics import MetricsLog
from sokhan.train.optim import MuonAdamW, lr_at, make_optimizer, optimizer_kind
from sokhan.train.tasks import Batch, Task


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    tokens: int
    elapsed: float
    val_loss: float | None = None
    val_bpc: float | None = None    # the training loop's estimate from eval_iters random windows (see `evaluate`)
    val_metrics: dict[str, float] = field(default_factory=dict)  # every figure of the last evaluation
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # the run's metrics rows, from its first step


class StopRequest:
    """Ctrl-C (SIGINT), or SIGTERM (what `kill`, a scheduler's time limit and `docker stop` send), asks
    the loop to stop at the end of the current step, never inside one.

    Stopping mid-step would save a state that is no state of the run: micro-batches drawn
    (data RNG, stream position, token count) and dropout noise used, but no update made; a
    resume from it is not the run it continues. So the first Ctrl-C only sets `requested`;
    the loop finishes the step, saves and returns. A second signal raises KeyboardInterrupt
    at once (unsaved: the previous checkpoint stands). Signals reach only the main thread,
    so elsewhere this does nothing, nor for a signal that is ignored (SIGINT in a job a
    script put in the background); the handlers before are put back afterwards.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, console: Console):
        self.console, self.requested = console, False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self.previous.items():  # None: set outside Python; Python's default stands in
            signal.signal(sig, previous if previous is not None else
                          signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.console.print(f"[yellow]{name}: finishing this step, then saving (again: stop now, unsaved)[/]")


class Trainer:
    """Trains `model` on `task` as `cfg` says, writing checkpoints (config `run_config`, the tokenizer) to cfg.out_dir.

    `on_save(run_dir)` runs after every checkpoint is written (the recipes draw the loss curve there).
    """

    def __init__(self, model: nn.Module, task: Task, cfg: TrainConfig, run_config: dict[str, Any],
                 tokenizer_json: str, console: Console | None = None,
                 on_save: Callable[[Path], None] | None = None):
        self.cfg, self.task, self.run_config, self.tokenizer_json = cfg, task, run_config, tokenizer_json
        self.on_save = on_save
        self.console = console or Console(stderr=True)
        self.device = resolve_device(cfg.device)
        self.group = distributed.start(cfg.fsdp, cfg.dist_timeout, self.device)  # None outside torchrun
        rank = 0
        if self.group is not None:
            self.device, rank = self.group.device, self.group.rank
            task.split_rows(rank, self.group.world, self.group.gather_rows)  # or refuses, in one line
            if not self.group.main:  # only rank 0 speaks
                self.console = Console(stderr=True, quiet=True)
        self.model = model.to(self.device)
        self.run_dir = Path(cfg.out_dir)
        self.autocast = autocast_for(self.device, cfg.dtype)
        self.optimizer_kind = "adamw" if cfg.optimizer == "auto" else cfg.optimizer  # a resume may change auto's
        self.optimizer = self._new_optimizer(model)
        self.data_rng = torch.Generator().manual_seed(cfg.seed)  # the data position: where batches come from
        torch.manual_seed(cfg.seed + rank)                       # dropout (each rank its own)
        self.weight_names: list[str] = []  # FSDP: the one-process checkpoint's weight names (tied weights once)
        self.step, self.tokens, self.elapsed = 0, 0, 0.0
        self.lr_decay_steps = cfg.lr_decay_steps or cfg.max_steps  # where the cosine reaches min_lr
        self.cosine_by_time = bool(cfg.max_time) and not cfg.lr_decay_steps  # ... or the time budget ends
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # -- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a resume needs beyond the weights. Under torchrun every rank calls it (FSDP's optimizer shards
        and a recurrent task's hidden rows are gathered) and rank 0 gets the one-process state, plus each
        rank's dropout RNG (`rank_rng`) for a resume with as many processes."""
        group = self.group
        optimizer = (distributed.full_optimizer_state(self.optimizer, group.main) if group is not None and group.fsdp
                     else self.optimizer.state_dict())
        state = {"step": self.step, "tokens": self.tokens, "elapsed": self.elapsed,
                 "lr_decay_steps": self.lr_decay_steps, "cosine_by_time": self.cosine_by_time,
                 "optimizer": optimizer, "data_rng": self.data_rng.get_state(),
                 "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        state["task"] = self.task.state_dict()
        if group is not None:
            ranks = group.gather_objects([state["torch_rng"], state.get("cuda_rng")])
            state["torch_rng"], state["cuda_rng"] = ranks[0]
            if state["cuda_rng"] is None:
                del state["cuda_rng"]
            state["rank_rng"] = ranks
        return state

    def restore(self, folder: Path) -> None:
        load_weights(self.model, folder)
        state = load_trainer_state(folder)
        trained_with = optimizer_kind(state.get("optimizer"))
        if trained_with != ("muon" if isinstance(self.optimizer, MuonAdamW) else "adamw"):
            if self.cfg.optimizer != "auto":
                raise SokhanError(f"{folder} was trained with --optimizer {trained_with}, and its optimizer state is "
                                  f"that one's; resume with --optimizer {trained_with} (or auto), or start a fresh "
                                  f"--out-dir")
            self.optimizer_kind = trained_with  # auto: the run goes on with the optimizer it was trained with
            self.optimizer = self._new_optimizer(self.model)
        try:  # a state written by this engine always loads; anything else is named in one line
            _check_state(state)
            self.optimizer.load_state_dict(state["optimizer"])
            _check_moments(self.optimizer)
            self.data_rng.set_state(state["data_rng"])
            torch_rng, cuda_rng = state["torch_rng"], state.get("cuda_rng")
            rank_rng = state.get("rank_rng")
            if self.group is not None and self.group.rank > 0:  # its own dropout RNG, or a fresh one
                if isinstance(rank_rng, list) and len(rank_rng) == self.group.world:
                    torch_rng, cuda_rng = rank_rng[self.group.rank]
                else:  # another number of processes wrote it
                    torch_rng, cuda_rng = torch.Generator().manual_seed(
                        self.cfg.seed + self.group.rank + 7919 * state["step"]).get_state(), None
            torch.set_rng_state(torch_rng)
            if cuda_rng is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda_rng, self.device)
            self.task.load_state_dict(state.get("task", {}))
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise SokhanError(f"{folder}: its trainer state does not fit this run ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else e!r}); resume from another checkpoint "
                              f"or start a fresh --out-dir") from None
        self.step, self.tokens, self.elapsed = state["step"], state["tokens"], float(state["elapsed"])
        self.console.print(f"resumed from {folder} at step {self.step}")
        # The cosine is the original run's unless --lr-decay-steps asks for another: stretching it to a
        # larger --max-steps would send the learning rate back up. (Checkpoints from before this was
        # saved: the schedule their own run had.)
        saved = read_config(folder).get("train", {})
        original = int(state.get("lr_decay_steps") or saved.get("lr_decay_steps") or saved.get("max_steps")
                       or self.lr_decay_steps)
        by_time = bool(state.get("cosine_by_time", bool(saved.get("max_time")) and not saved.get("lr_decay_steps")))
        if self.cfg.lr_decay_steps:
            if self.cfg.lr_decay_steps != original or by_time:
                self.console.print(f"learning rate: a new cosine, min_lr at step {self.lr_decay_steps} "
                                   f"(--lr-decay-steps; the run had {original})")
        else:
            self.lr_decay_steps, self.cosine_by_time = original, by_time
            budget = " or when --max-time runs out" if by_time else ""
            self.console.print(f"learning rate: the run's own cosine, min_lr at step {original}{budget} "
                               f"(--lr-decay-steps sets another)")

    def save(self) -> Path | None:
        """Write a checkpoint; a full disk or read-only folder is one line naming the path, and the last
        complete checkpoint stands (`save_checkpoint` only replaces `latest` once the new one is whole).
        Under torchrun every rank takes part in gathering it and rank 0 writes it (the others get None)."""
        where = machine(self.device) + (f"; {self.group.world} processes" if self.group is not None else "")
        self.run_config["progress"] = {"step": self.step, "tokens": self.tokens, "elapsed": round(self.elapsed, 2),
                                       "machine": where}  # what the elapsed time was measured on (the last one)
        model: nn.Module = self.model
        if self.group is not None and self.group.fsdp:
            model = distributed.Weights(distributed.full_weights(self.model, self.weight_names, self.group.main))
        state = self.state()
        if self.group is not None and not self.group.main:
            return None
        try:
            return save_checkpoint(self.run_dir, self.step, model, self.run_config, self.tokenizer_json,
                                   state, keep=self.cfg.keep_checkpoints)
        except OSError as e:
            kept = latest_checkpoint(self.run_dir)
            raise SokhanError(f"cannot save step {self.step}: {e.strerror or e} ({e.filename or self.run_dir}); "
                              f"{f'the last complete checkpoint is kept: {kept}' if kept else 'nothing is saved'}"
                              ) from None

    # -- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, splits: tuple[str, ...] = ("val",)) -> dict[str, dict[str, float]]:
        """Mean loss (and the task's other metrics) over `eval_iters` batches drawn with a fixed
        seed, so evaluations compare across steps; where the task has them, an *estimate* of bits
        per character (`bpc_estimate`) from those random windows. The exact figure, every token of
        the split once, is the leaderboard's (`sokhan.eval.leaderboard`)."""
        self.model.eval()
        out = {}
        for split in splits:
            if self.group is not None:
                out[split] = self._evaluate_split(split)
                continue
            rng = torch.Generator().manual_seed(self.cfg.seed + 1)
            sums: dict[str, float] = {}
            for _ in range(self.cfg.eval_iters):
                batch = self.task.sample(split, rng)
                with self.autocast:
                    figures = self.task.metrics(self.model, batch)
                for name, value in figures.items():
                    sums[name] = sums.get(name, 0.0) + value
            out[split] = {name: total / self.cfg.eval_iters for name, total in sums.items()}
            out[split]["bpc_estimate"] = self.task.bits_per_char(split, out[split]["loss"])
        self.model.train()
        return out

    def _evaluate_split(self, split: str) -> dict[str, float]:
        """Under torchrun: every rank draws each evaluation batch and scores its own rows (so FSDP's gathers
        stay in step, and a rank with no rows still takes part); each figure, a mean over the batch's
        targets, is summed weighted by the rank's targets over every rank, as one process scoring the
        whole batch would."""
        assert self.group is not None
        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        names: list[str] = []
        rows = []
        for _ in range(self.cfg.eval_iters):
            batch = self._mine(self.task.sample(split, rng))
            count = self.task.targets_in(batch)
            with self.autocast:
                figures = self.task.metrics(self.model, batch)
            names = names or list(figures)
            rows.append([count] + [figures[name] * count if count else 0.0 for name in names])
        totals = self.group.sum_tensor(torch.tensor(rows, dtype=torch.float64))
        scored = totals[totals[:, 0] > 0]
        means = (scored[:, 1:] / scored[:, :1]).mean(0) if len(scored) else torch.full((len(names),), math.nan)
        figures = {name: float(value) for name, value in zip(names, means)}
        figures["bpc_estimate"] = self.task.bits_per_char(split, figures["loss"])
        return figures

    def _mine(self, batch: Batch) -> Batch:
        """This rank's rows of the job's batch (the whole batch in one process)."""
        if self.group is None or self.task.reads_own_rows:
            return batch
        return distributed.take_rows(batch, self.group.rank, self.group.world)

    # -- one step's gradients ----------------------------------------------------------
    def accumulate(self, model: nn.Module, batches: list[Batch]) -> float:
        """Backpropagate the micro-batches of one step as if they were one batch; returns its loss.

        A task's loss is a mean over the targets of its batch, and the targets per micro-batch
        vary (a chat's assistant tokens, a masked LM's masked positions), so each micro-batch's
        mean is weighted by its share of the step's targets: the sum of every target's loss over
        their total count, as one big batch would give. (Dividing each mean by the number of
        micro-batches let a micro-batch of one target count as much as one of hundreds.) A
        micro-batch without a target adds nothing and is skipped.
        """
        if self.group is not None:
            return self._accumulate_across_ranks(model, batches)
        counts = [self.task.targets_in(batch) for batch in batches]
        total = sum(counts)
        loss_sum = 0.0
        for batch, count in zip(batches, counts):
            if count == 0:
                continue
            with self.autocast:
                loss = self.task.loss(model, batch) * (count / total)
            loss.backward()
            loss_sum += loss.item()
        return loss_sum

    def _accumulate_across_ranks(self, model: nn.Module, batches: list[Batch]) -> float:
        """`accumulate` under torchrun, `batches` this rank's rows: each micro-batch's mean is weighted by its
        share of the targets of every rank's micro-batches, times the number of ranks (DDP and FSDP average
        the gradients), so the gradient is one process's on the whole batch. Gradients are reduced in the
        last micro-batch's backward only. Every rank runs every micro-batch, one without a target too (its
        loss times 0: a zero gradient), so that each takes part in every reduction."""
        assert self.group is not None
        counts = [self.task.targets_in(batch) for batch in batches]
        (total,) = self.group.sum(sum(counts))
        loss_sum = 0.0
        for i, (batch, count) in enumerate(zip(batches, counts)):
            with distributed.gradient_sync(model, self.group, sync=i == len(batches) - 1):
                with self.autocast:
                    loss = self.task.loss(model, batch)
                if count == 0:
                    (loss * 0.0).backward()
                    continue
                (loss * (count * self.group.world / total)).backward()
                loss_sum += loss.item() * count / total
        return self.group.sum(loss_sum)[0]

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> TrainResult:
        if self.group is None:
            return self._fit()
        try:  # a collective that fails: another rank died or hung past --dist-timeout
            result = self._fit()
        except RuntimeError as e:  # gloo's timeout is a plain RuntimeError
            if not distributed.is_collective_failure(e):
                raise
            raise distributed.lost_peer(self.group, e) from None
        self.group.close()
        return result

    def _distribute(self) -> nn.Module:
        """Under torchrun, after the weights and optimizer state are loaded: the model the step runs. DDP wraps
        it; FSDP shards it in place, and the optimizer is made anew over the shards (with the state it had)."""
        assert self.group is not None
        if not self.group.fsdp:
            return distributed.wrap(self.model, self.group)
        if isinstance(self.optimizer, MuonAdamW):  # auto, resuming a Muon run (TrainConfig refuses muon + fsdp)
            raise SokhanError("this run was trained with Muon, which cannot run under --fsdp (it orthogonalizes "
                              "each whole matrix); resume it without --fsdp")
        self.weight_names = list(unique_state_dict(self.model))
        loaded = self.optimizer.state_dict()
        distributed.wrap(self.model, self.group)
        self.optimizer = self._new_optimizer(self.model)
        if loaded["state"]:
            self.optimizer.load_state_dict(distributed.shard_optimizer_state(loaded, self.optimizer))
        return self.model

    def _new_optimizer(self, model: nn.Module) -> torch.optim.AdamW | MuonAdamW:
        cfg = self.cfg
        return make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), self.device.type,
                              self.optimizer_kind)

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        found = latest_checkpoint(self.run_dir)
        if self.group is not None:  # rank 0's view of the run folder decides for every rank
            found = self.group.broadcast(found)
        if cfg.resume and found is not None:
            self.restore(found)
        elif found is not None:
            raise SokhanError(f"{self.run_dir} already has checkpoints; pass --resume to continue, "
                              f"or another --out-dir")
        elif (self.run_dir / "checkpoints").exists() or cfg.resume:
            self.console.print(f"{self.run_dir} has no complete checkpoint (a first save that did not finish?): "
                               f"starting fresh")
        main = self.group is None or self.group.main
        metrics = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            metrics = MetricsLog(self.run_dir, continue_after=self.step if found is not None and cfg.resume else None)
        def log(row: dict[str, Any]) -> None:
            if metrics is not None:
                metrics.write(row)

        train_model = self._distribute() if self.group is not None else self.model
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.model.train()
        result = TrainResult(self.run_dir, self.step, self.tokens, self.elapsed)
        progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("step {task.fields[step]}"),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                            TimeRemainingColumn(), console=self.console,
                            disable=not (cfg.progress and self.console.is_terminal),
                            transient=False)
        saved_at = self.step  # a fresh run has nothing saved; a resumed one is saved where it stands
        t_last, tokens_last = time.perf_counter(), self.tokens
        with progress, StopRequest(self.console) as stop:
            def done() -> float:  # the bar follows whichever budget, steps or wall-clock time, ends the run first
                return max(self.step / cfg.max_steps, self.elapsed / cfg.max_time if cfg.max_time else 0.0)

            bar = progress.add_task("train", total=1.0, completed=done(), loss="-", tps="-", step=self.step)
            def budget_left() -> bool:
                return self.step < cfg.max_steps and not (cfg.max_time and self.elapsed >= cfg.max_time)

            agreed = [False]  # under torchrun: whether any rank was asked to stop, agreed after each step
            def stopping() -> bool:
                return stop.requested if self.group is None else agreed[0]

            while budget_left() and not stopping():
                t0 = time.perf_counter()
                by_time = self.elapsed / cfg.max_time if self.cosine_by_time and cfg.max_time else 0.0
                lr = lr_at(self.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, self.lr_decay_steps, by_time,
                           cfg.lr_schedule)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.task.set_progress(min(done(), 1.0))
                batches = [self._mine(self.task.sample("train", self.data_rng)) for _ in range(cfg.grad_accum)]
                loss = self.accumulate(train_model, batches)
                if not math.isfinite(loss):  # before the update: the weights and the last checkpoint stay good
                    raise self._diverged("loss", loss)
                if cfg.grad_clip > 0:
                    norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                    if not math.isfinite(norm):
                        raise self._diverged("gradient norm", norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                tokens, took = sum(self.task.tokens_in(batch) for batch in batches), time.perf_counter() - t0
                if self.group is not None:  # every rank counts the job's tokens and the slowest rank's time
                    (tokens,) = self.group.sum(tokens)
                    took, asked = self.group.max(took, float(stop.requested))
                    agreed[0] = asked > 0
                self.tokens += int(tokens)
                self.elapsed += took
                if self.step % cfg.log_interval == 0 or self.step == 1:
                    now = time.perf_counter()
                    tps = (self.tokens - tokens_last) / max(now - t_last, 1e-9)
                    t_last, tokens_last = now, self.tokens
                    log({"step": self.step, "split": "train", "loss": loss, "lr": lr,
                         "tokens": self.tokens, "tokens_per_s": round(tps, 1), "time": round(self.elapsed, 3)})
                    progress.update(bar, loss=f"{loss:.3f}", tps=f"{tps:,.0f}")
                progress.update(bar, completed=min(done(), 1.0), step=self.step)
                if self.step % cfg.eval_interval == 0:
                    self._eval_and_save(log, result)
                    saved_at = self.step
            result.interrupted = stopping() and budget_left()  # Ctrl-C in the last step: the run is done
            if result.interrupted:
                self.console.print(f"[yellow]stopped after step {self.step}[/]")
            if saved_at != self.step:
                self._eval_and_save(log, result, evaluate=not result.interrupted)
        rows = metrics.rows if metrics is not None else []
        if metrics is not None:
            metrics.close()
        if result.val_loss is None:  # nothing evaluated now: the run's last evaluation stands
            last = next((r for r in reversed(rows) if r["split"] == "val"), None)
            if last is not None:
                result.val_metrics = {k: v for k, v in last.items() if k not in ("step", "split", "tokens", "time")}
                result.val_loss, result.val_bpc = last["loss"], last.get("bpc_estimate", last.get("bpc"))
        result.step, result.tokens, result.elapsed, result.history = self.step, self.tokens, self.elapsed, rows
        return result

    def _diverged(self, what: str, value: float) -> SokhanError:
        kept = latest_checkpoint(self.run_dir)
        return SokhanError(f"{what} became {value} at step {self.step + 1}, before its update; "
                           f"{f'the last good checkpoint is {kept}' if kept else 'no checkpoint was saved yet'}; "
                           f"lower --lr (or raise --warmup-steps) and resume")

    def _eval_and_save(self, log: Callable[[dict[str, Any]], None], result: TrainResult,
                       evaluate: bool = True) -> None:
        if evaluate:
            ev = self.evaluate()["val"]
            result.val_loss, result.val_bpc, result.val_metrics = ev["loss"], ev["bpc_estimate"], ev
            log({"step": self.step, "split": "val", **ev, "tokens": self.tokens, "time": round(self.elapsed, 3)})
            extra = "".join(f", {name} {value:.4f}" for name, value in ev.items()
                            if name not in ("loss", "bpc_estimate"))
            bpc = f", ≈{ev['bpc_estimate']:.3f} bits/char" if ev["bpc_estimate"] is not None else ""
            self.console.print(f"step {self.step}: val loss {ev['loss']:.4f}{bpc}{extra} "
                               f"(estimate: {self.cfg.eval_iters} random batches)")
        if self.save() is not None and self.on_save is not None:
            try:
                self.on_save(self.run_dir)
            except OSError as e:  # the checkpoint is written; what the hook draws is not worth a traceback
                raise SokhanError(f"step {self.step} is saved, but writing {e.filename or self.run_dir} failed: "
                                  f"{e.strerror or e}") from None


def _check_state(state: dict[str, Any]) -> None:
    """The keys and types a trainer state must have (`Trainer.state`); TypeError/KeyError name what is wrong."""
    for key, kind in (("step", int), ("tokens", int), ("elapsed", (int, float)), ("optimizer", dict),
                      ("data_rng", torch.Tensor), ("torch_rng", torch.Tensor), ("task", dict)):
        if key not in state:
            raise KeyError(f"no '{key}'")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise TypeError(f"'{key}' is a {type(state[key]).__name__}")
    if state["step"] < 0 or state["tokens"] < 0:
        raise ValueError("a negative step or token count")


def _check_moments(optimizer: torch.optim.Optimizer) -> None:
    """Each loaded moment has its parameter's shape (`load_state_dict` does not check; the update would fail)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"optimizer '{name}' has shape {tuple(value.shape)} for a parameter of "
                                     f"{tuple(p.shape)}")
