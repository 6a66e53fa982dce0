"""Checkpoints: safetensors weights + JSON config + tokenizer + trainer state, written atomically.

A checkpoint is a folder `checkpoints/step-000500/` holding

* `model.safetensors` — weights (tied tensors stored once),
* `config.json`       — model, training and normalizer settings,
* `tokenizer.json`    — the tokenizer the model was trained with,
* `trainer_state.pt`  — optimizer moments, RNG states and the data position, saved with
  `torch.save` but only ever read back with `torch.load(weights_only=True)`: tensors and
  plain containers, never arbitrary pickled objects.

It is written into a temporary folder, every file fsync'ed, then renamed into place, and
only then does `checkpoints/latest` (itself replaced atomically) point at it. A crash at
any moment leaves `latest` naming a complete checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from sokhan.errors import SokhanError

WEIGHTS, CONFIG, TOKENIZER, STATE = "model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"
LATEST = "latest"


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
    """The state dict with tied tensors (e.g. lm_head = embedding) kept once, contiguous, on CPU."""
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict().items():
        key = t.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().to("cpu").contiguous()
    return out


def weights_bytes(model: nn.Module) -> bytes:
    return save_safetensors(unique_state_dict(model))


def load_weights(model: nn.Module, folder: str | Path) -> None:
    """Load `model.safetensors` into `model`; every parameter must be present (tied ones once)."""
    path = Path(folder) / WEIGHTS
    try:
        tensors = load_safetensors(path.read_bytes())
    except (OSError, SafetensorError) as e:
        raise SokhanError(f"cannot read weights {path}: {e}") from None
    expected = set(unique_state_dict(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise SokhanError(f"weights in {path} do not fit this model (missing {missing[:3]}, unexpected {extra[:3]})")
    model.load_state_dict(tensors, strict=False)


def save_folder(folder: str | Path, files: dict[str, bytes | str]) -> Path:
    """Write a whole folder atomically: into `folder.tmp`, fsync'ed, then renamed to `folder`."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        with open(tmp / name, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():  # re-saving a step: keep the old copy until the new one is in place
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, config: dict[str, Any],
                    tokenizer_json: str, trainer_state: dict[str, Any] | None, keep: int = 2) -> Path:
    """Save step `step` under `run_dir/checkpoints/`, point `latest` at it, prune old ones."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes | str] = {
        WEIGHTS: weights_bytes(model),
        CONFIG: json.dumps(config, indent=2, ensure_ascii=False),
        TOKENIZER: tokenizer_json,
    }
    if trainer_state is not None:
        buf = io.BytesIO()
        torch.save(trainer_state, buf)
        files[STATE] = buf.getvalue()
    name = f"step-{step:07d}"
    save_folder(ckpt_root / name, files)
    write_atomic(ckpt_root / LATEST, name + "\n")
    if keep > 0:
        done = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
        for stale in done[:-keep]:
            shutil.rmtree(stale)
    return ckpt_root / name


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run folder whose `checkpoints/latest` names one."""
    p = Path(path)
    if (p / WEIGHTS).is_file() and (p / CONFIG).is_file():
        return p
    latest = p / "checkpoints" / LATEST
    if latest.is_file():
        target = p / "checkpoints" / latest.read_text(encoding="utf-8").strip()
        if (target / WEIGHTS).is_file():
            return target
    if not p.exists():
        raise SokhanError(f"no such model folder: {p}")
    raise SokhanError(f"{p} is not a sokhan model (no {WEIGHTS} + {CONFIG}, nor checkpoints/{LATEST})")


def run_folder(path: str | Path) -> Path:
    """The run a model folder belongs to: `run/checkpoints/step-…` → `run`; any other folder is its own run.

    Names in titles and the API, and the default place of `inspect/` pictures, come from here.
    """
    p = Path(path)
    return p.parent.parent if p.parent.name == "checkpoints" else p


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SokhanError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise SokhanError(f"{path} has no 'model' section")
    return data


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / STATE
    if not path.is_file():
        raise SokhanError(f"{folder} has no {STATE}: it is a model, not a resumable checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        reason = str(e).split("\n")[0]
        raise SokhanError(f"cannot read trainer state {path}: {reason}") from None
