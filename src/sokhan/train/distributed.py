"""Training on several processes under torchrun: DDP, or FSDP2 with `--fsdp`; the engine's one door to them.

`torchrun --nproc_per_node N -m sokhan train …` starts N copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK (and the rendezvous address) in their environment; `start` sees them
and joins the process group (gloo on a CPU, nccl on CUDA, the device cuda:LOCAL_RANK). Outside
torchrun nothing here runs and the engine is the one-process engine it always was.

How a run of N processes equals a run of one (the engine and the tasks do it with these helpers):

* Every process draws the same *global* batch (N × batch_size rows) from the same seeded data
  generator and keeps its own rows (`take_rows`: rank r keeps rows r·n/N … (r+1)·n/N; a task
  reading token shards draws every row's window but reads only its own). Each
  micro-batch's mean loss is weighted by its share of the step's targets counted over every
  process (`Group.sum`), times N, because DDP and FSDP average gradients: the gradient is the one
  a single process with the global batch would get.
* Only rank 0 logs, draws the progress bar and writes checkpoints. A checkpoint holds the full
  weights and optimizer state (FSDP's shards gathered: `full_tensor`), in the format one process
  writes, so a run resumes with any number of processes. Every rank reads it back (the run
  folder must be on a filesystem they share).
* A process that dies or hangs does not stall the others forever: a collective waits at most
  `--dist-timeout` seconds, a lost peer raises at once, and torchrun ends the job.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sokhan.errors import SokhanError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def under_torchrun() -> bool:
    """torchrun (or another launcher of torch.distributed) started this process."""
    return all(name in os.environ for name in ENV)


def env_rank() -> int:
    """This process's rank under torchrun, else 0 (the one process)."""
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


@dataclass
class Group:
    """This process's place in the job and the collectives the engine uses (every rank calls each, in step)."""

    rank: int
    world: int
    device: torch.device
    fsdp: bool
    created: bool  # this module joined the group (and leaves it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _reduce(self, values: list[float], op: dist.ReduceOp) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def sum(self, *values: float) -> list[float]:
        return self._reduce(list(values), dist.ReduceOp.SUM)

    def max(self, *values: float) -> list[float]:
        return self._reduce(list(values), dist.ReduceOp.MAX)

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, torch.float64)
        dist.all_reduce(t)
        return t.cpu()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_rows(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's `t` (equal shapes) joined along `dim`, in rank order, on the CPU."""
        t = t.detach().to(self.device).contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t)
        return torch.cat([p.cpu() for p in parts], dim=dim)

    def close(self) -> None:
        if self.created and dist.is_initialized():
            dist.destroy_process_group()


def start(fsdp: bool, timeout_s: float, device: torch.device) -> Group | None:
    """Join the torchrun job this process belongs to; None outside torchrun (where `fsdp` is refused)."""
    if not under_torchrun():
        if fsdp:
            raise SokhanError("--fsdp shards a model across the processes of a torchrun job: launch it with "
                              "`torchrun --nproc_per_node N -m sokhan train … --fsdp`")
        return None
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise SokhanError(f"training under torchrun runs on CPUs (gloo) or CUDA GPUs (nccl), not on {device.type}")
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return Group(dist.get_rank(), dist.get_world_size(), device, fsdp, created)


def row_slice(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s rows of a global batch of `n`: r·n/N … (r+1)·n/N, an even split, as even as n allows (a rank
    may get none when n < N)."""
    return slice(rank * n // world, (rank + 1) * n // world)


def take_rows(batch: Any, rank: int, world: int) -> Any:
    """Rank `rank`'s rows of a global batch (`row_slice`): a tensor, or a tuple / NamedTuple whose tensors share
    the batch dimension first (other fields, e.g. a flag, are kept)."""
    if isinstance(batch, torch.Tensor):
        return batch[row_slice(batch.size(0), rank, world)]
    if isinstance(batch, tuple):
        parts = [take_rows(part, rank, world) if isinstance(part, torch.Tensor) and part.dim() > 0 else part
                 for part in batch]
        return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} across processes")


# -- wrapping the model ------------------------------------------------------------------------------------------

def wrap(model: nn.Module, group: Group) -> nn.Module:
    """DDP: the wrapper the training step runs (the model itself stays what evaluation and saving read).
    FSDP2: `fully_shard` each layer of every ModuleList, then the whole model (tied weights stay in one unit);
    the model becomes sharded in place and is returned."""
    if group.fsdp:
        from torch.distributed.fsdp import fully_shard  # FSDP2 (torch >= 2.6)

        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for layer in module:
                    fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    # No device_ids: the inputs are on the device already, and DDP must not copy them (a recurrent model's cache
    # object is updated in place).
    return DistributedDataParallel(model)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, group: Group, sync: bool) -> Iterator[None]:
    """Reduce gradients across ranks in this backward only when `sync` (the last micro-batch of a step):
    FSDP2's `set_requires_gradient_sync`, DDP's `no_sync`."""
    if group.fsdp:
        model.set_requires_gradient_sync(sync)
        yield
    elif not sync:
        with model.no_sync():
            yield
    else:
        yield


def is_sharded(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor, keep: bool) -> torch.Tensor | None:
    """A sharded tensor gathered whole (every rank calls it); on the CPU where `keep`, else dropped."""
    whole = t.full_tensor() if is_sharded(t) else t
    return whole.detach().cpu() if keep else None


def full_weights(model: nn.Module, names: list[str], keep: bool) -> dict[str, torch.Tensor]:
    """The model's weights named `names` (the one-process checkpoint's: tied weights once), gathered whole."""
    state = model.state_dict()
    out = {}
    for name in names:
        t = full(state[name], keep)
        if t is not None:
            out[name] = t.contiguous()
    return out


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool) -> dict[str, Any]:
    """`optimizer.state_dict()` with every sharded moment gathered whole: what one process would save."""
    state = optimizer.state_dict()
    out = {}
    for index in sorted(state["state"]):
        entry = {}
        for key, value in state["state"][index].items():
            entry[key] = full(value, keep) if isinstance(value, torch.Tensor) else value
        out[index] = entry
    return {"state": out if keep else {}, "param_groups": state["param_groups"]}


def shard_optimizer_state(full_state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A one-process optimizer state made to fit `optimizer`'s sharded parameters (each rank its own shard)."""
    from torch.distributed.tensor import distribute_tensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, entry in full_state["state"].items():
        p = params[index]
        state[index] = {key: distribute_tensor(value.to(p.device_mesh.device_type), p.device_mesh, p.placements)
                        if is_sharded(p) and isinstance(value, torch.Tensor) and value.dim() > 0 else value
                        for key, value in entry.items()}
    return {"state": state, "param_groups": full_state["param_groups"]}


class Weights(nn.Module):
    """Gathered weights in the guise `save_checkpoint` reads (`state_dict()`)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.tensors = tensors

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(self.tensors)


def is_collective_failure(error: BaseException) -> bool:
    """A collective failed (a peer gone, a timeout), as opposed to a bug of the step that raised RuntimeError."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(word in text for word in ("gloo", "NCCL", "Connection closed",
                                                                              "Connection reset"))


def lost_peer(group: Group, error: BaseException) -> SokhanError:
    """A collective failed: another process of the job died, hung past the timeout, or the network broke."""
    return SokhanError(f"rank {group.rank}: lost the other processes of this torchrun job ({one_line(error)}); "
                       f"another rank stopped or hung for longer than --dist-timeout: see its own message and "
                       f"torchrun's summary")


GatherRows = Callable[[torch.Tensor, int], torch.Tensor]


def rank0_first(group: Group | None, what: str, work: Callable[[], object]) -> None:
    """Run `work` on rank 0 while the other ranks wait for its outcome, so they read only what it finished writing.

    Rank 0 tells the others whether `work` failed before it raises, so each of them stops at once with
    one line naming rank 0 (rather than waiting --dist-timeout, or a traceback from a half-written
    folder). Outside torchrun it simply runs `work`."""
    if group is None:
        work()
        return
    failure: BaseException | None = None
    if group.main:
        try:
            work()
        except BaseException as e:  # told to the others below, then raised here
            failure = e
    try:
        told = group.broadcast(None if failure is None else one_line(failure))
    except RuntimeError as e:  # a rank died before the news went round (gloo's errors are plain RuntimeErrors)
        if failure is not None:  # rank 0's own error says more
            raise failure from None
        if not is_collective_failure(e):
            raise
        raise lost_peer(group, e) from None
    if failure is not None:
        raise failure
    if told is not None:
        raise SokhanError(f"rank {group.rank}: rank 0 stopped while {what} ({told}); see its own message")


def one_line(error: BaseException) -> str:
    """An error as one short line: its message's first line, else its type."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
