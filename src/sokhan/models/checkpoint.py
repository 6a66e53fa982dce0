"""Checkpoints: safetensors weights + JSON config + tokenizer + trainer state, written atomically.

A checkpoint is a folder `checkpoints/step-0000500/` holding

* `model.safetensors` — weights (tied tensors stored once),
* `config.json`       — model, training and normalizer settings,
* `tokenizer.json`    — the tokenizer the model was trained with,
* `trainer_state.pt`  — optimizer moments, RNG states and the data position, saved with
  `torch.save` but only ever read back with `torch.load(weights_only=True)`: tensors and
  plain containers, never arbitrary pickled objects.

How a save stays safe whenever the process dies (power cut, SIGKILL, a full disk):

1. the files go into `step-N.tmp/`, each fsync'ed, then the folder itself;
2. the folder is renamed to a name no checkpoint has yet — `step-N`, or `step-N-2`, `-3`, …
   when step N is saved again (a resumed run re-saving its last step) — so the checkpoint
   that `latest` names is never moved or overwritten;
3. `checkpoints/latest` is replaced atomically to name the new folder;
4. only then are old checkpoints pruned, each renamed to `….del` before it is deleted, so a
   half-deleted folder never looks complete.

So a folder with a checkpoint's name is always complete, and `latest` names a complete
checkpoint or does not exist. If it does not (the first save died before step 3),
`latest_checkpoint` falls back to the newest complete folder, and a run with none starts
fresh; leftovers (`*.tmp`, `*.del`) are swept at the next save.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from sokhan.config.base import json_kind
from sokhan.errors import SokhanError

WEIGHTS, CONFIG, TOKENIZER, STATE = "model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"
LATEST = "latest"
CONFIG_SECTIONS = ("model", "train", "normalizer", "data", "progress", "finetune", "lora",
                   "classifier")  # config.json's objects
CHECKPOINT_NAME = re.compile(r"step-(\d+)(?:-(\d+))?")  # step-0000500, or step-0000500-2 for a re-save


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write to `path.tmp`, fsync, rename over `path`: readers see the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with tied tensors (e.g. lm_head = embedding) kept once, contiguous, on CPU.

    Two entries are one tensor only when they view the same memory the same way: same storage,
    offset, shape, stride and dtype. Sharing a storage is not enough: on CUDA, cuDNN's
    `flatten_parameters` packs every weight of an RNN/LSTM/GRU into one buffer at different
    offsets, and keying by storage alone kept 2 of them.
    """
    seen: set[tuple] = set()
    out = {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().to("cpu").contiguous()
    return out


def weights_bytes(model: nn.Module) -> bytes:
    return save_safetensors(unique_state_dict(model))


def load_weights(model: nn.Module, folder: str | Path) -> None:
    """Load `model.safetensors` into `model`; every parameter must be present (tied ones once).

    Each tensor is checked against the model's before anything is copied: a parameter's shape
    and dtype must be the model's (a config.json edited after training, or weights from another
    model, would otherwise stop in `load_state_dict` with a traceback, or be cast silently). A
    buffer must have the model's dtype and number of dimensions only: the n-gram's tables are
    buffers as long as the counted data made them.
    """
    path = Path(folder) / WEIGHTS
    try:
        tensors = load_safetensors(path.read_bytes())
    except (OSError, SafetensorError) as e:
        raise SokhanError(f"cannot read weights {path}: {e}") from None
    expected = unique_state_dict(model)
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise SokhanError(f"weights in {path} do not fit this model (missing {missing[:3]}, unexpected {extra[:3]})")
    buffers = {name for name, _ in model.named_buffers()}
    for name, want in expected.items():
        got = tensors[name]
        fits = got.ndim == want.ndim if name in buffers else got.shape == want.shape
        if not fits or got.dtype != want.dtype:
            raise SokhanError(f"weights in {path} do not fit this model: {name} is {list(got.shape)} "
                              f"{str(got.dtype).removeprefix('torch.')} in the file, {list(want.shape)} "
                              f"{str(want.dtype).removeprefix('torch.')} in the model its config.json describes")
    model.load_state_dict(tensors, strict=False)


def _write_folder(tmp: Path, files: dict[str, bytes | str]) -> None:
    """Write `files` into a fresh folder `tmp`, every file and then the folder fsync'ed."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        with open(tmp / name, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(tmp)


def save_folder(folder: str | Path, files: dict[str, bytes | str]) -> Path:
    """Write a folder that has a fixed name (a fine-tune's `adapter/`, `merged/`): into `folder.tmp`,
    fsync'ed, then renamed to `folder`; an existing `folder` is moved aside to `folder.old` first
    and deleted last. (Checkpoints never replace a folder: see `save_checkpoint`.)"""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    _write_folder(tmp, files)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _order(name: str) -> tuple[int, int] | None:
    """(step, save) of a checkpoint folder's name: step-0000500 → (500, 1), step-0000500-2 → (500, 2)."""
    m = CHECKPOINT_NAME.fullmatch(name)
    return (int(m[1]), int(m[2] or 1)) if m else None


def complete_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """The complete checkpoints under `ckpt_root`, oldest first (by step, then by save)."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _order(p.name) and (p / WEIGHTS).is_file() and (p / CONFIG).is_file()]
    return sorted(found, key=lambda p: _order(p.name))


def _free_name(ckpt_root: Path, step: int) -> str:
    name = f"step-{step:07d}"
    again = 2
    while (ckpt_root / name).exists():
        name, again = f"step-{step:07d}-{again}", again + 1
    return name


def _remove(folder: Path) -> None:
    """Rename out of the checkpoint names first, then delete: a half-deleted folder never looks complete."""
    doomed = folder.with_name(folder.name + ".del")
    os.replace(folder, doomed)
    _fsync_dir(folder.parent)
    shutil.rmtree(doomed)


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, config: dict[str, Any],
                    tokenizer_json: str, trainer_state: dict[str, Any] | None, keep: int = 2) -> Path:
    """Save step `step` under `run_dir/checkpoints/`, point `latest` at it, prune old ones (module docstring)."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for leftover in [*ckpt_root.glob("step-*.tmp"), *ckpt_root.glob("step-*.del")]:  # from a save that died
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    files: dict[str, bytes | str] = {
        WEIGHTS: weights_bytes(model),
        CONFIG: json.dumps(config, indent=2, ensure_ascii=False),
        TOKENIZER: tokenizer_json,
    }
    if trainer_state is not None:
        buf = io.BytesIO()
        torch.save(trainer_state, buf)
        files[STATE] = buf.getvalue()
    name = _free_name(ckpt_root, step)
    tmp = ckpt_root / f"step-{step:07d}.tmp"
    _write_folder(tmp, files)
    os.replace(tmp, ckpt_root / name)
    _fsync_dir(ckpt_root)
    write_atomic(ckpt_root / LATEST, name + "\n")
    if keep > 0:
        for stale in complete_checkpoints(ckpt_root)[:-keep]:
            if stale.name != name:
                _remove(stale)
    return ckpt_root / name


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a run continues from: the one `checkpoints/latest` names, or, where `latest` is
    missing or names no complete checkpoint (a first save that died, or a file that is not a name),
    the newest complete one; None if the run has none. `latest` can only name a checkpoint folder
    of this run: its text is compared with their names, never followed as a path."""
    ckpt_root = Path(run_dir) / "checkpoints"
    latest = ckpt_root / LATEST
    if latest.is_file():
        named = latest.read_bytes().decode("utf-8", errors="replace").strip()
        if named in {p.name for p in complete_checkpoints(ckpt_root)}:
            return ckpt_root / named
    done = complete_checkpoints(ckpt_root)
    return done[-1] if done else None


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run folder with a complete checkpoint (`latest_checkpoint`)."""
    p = Path(path)
    if (p / WEIGHTS).is_file() and (p / CONFIG).is_file():
        return p
    found = latest_checkpoint(p)
    if found is not None:
        return found
    if not p.exists():
        raise SokhanError(f"no such model folder: {p}")
    raise SokhanError(f"{p} is not a sokhan model (no {WEIGHTS} + {CONFIG}, nor a complete checkpoint "
                      f"under checkpoints/)")


def run_folder(path: str | Path) -> Path:
    """The run a model folder belongs to: `run/checkpoints/step-…` → `run`; any other folder is its own run.

    Names in titles and the API, and the default place of `inspect/` pictures, come from here.
    """
    p = Path(path)
    return p.parent.parent if p.parent.name == "checkpoints" else p


def read_config(folder: str | Path) -> dict[str, Any]:
    """A model folder's config.json, its shape checked once here: an object with a `model` section, every
    section that holds options an object (callers read them with `.get`), and so are `data.splits` and
    each split in it. The values inside are checked where they are built into configs (`from_dict`)."""
    path = Path(folder) / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SokhanError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise SokhanError(f"{path} has no 'model' section")
    for name in CONFIG_SECTIONS:
        _check_object(data.get(name, {}), name, path)
    splits = data.get("data", {}).get("splits", {})
    _check_object(splits, "data.splits", path)
    for name, split in splits.items():
        _check_object(split, f"data.splits.{name}", path)
    return data


def _check_object(value: Any, name: str, path: Path) -> None:
    if not isinstance(value, dict):
        raise SokhanError(f"{path}: '{name}' must be an object, got {json_kind(value)}")


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / STATE
    if not path.is_file():
        raise SokhanError(f"{folder} has no {STATE}: it is a model, not a resumable checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        reason = str(e).split("\n")[0]
        raise SokhanError(f"cannot read trainer state {path}: {reason}") from None
    if not isinstance(state, dict):
        raise SokhanError(f"cannot read trainer state {path}: it holds a {type(state).__name__}, not a dict")
    return state
