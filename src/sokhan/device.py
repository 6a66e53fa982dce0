"""Where a model runs and in what precision: device choice, autocast, a model's own device."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import platform
from pathlib import Path

import torch
from torch import nn

from sokhan.errors import SokhanError


def resolve_device(name: str) -> torch.device:
    """"auto" is the GPU when there is one, else the CPU; a CUDA device asked for where there is none is an error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SokhanError(f"device '{name}' asked for, but CUDA is not available here")
    if name in ("auto", "cuda") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # under torchrun: this process's GPU
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SokhanError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """The autocast context of a training `dtype`: "auto" is bf16 on a CUDA GPU that has it, float32 elsewhere.

    On a CPU, bf16 pays off only with AMX tiles and wide matrices (README: 2.6–3× from width
    384 up, 0.78× at width 128), so "auto" leaves the CPU in float32; `bfloat16` asks for it.
    """
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise SokhanError(f"dtype must be auto, float32 or bfloat16, got '{dtype}'")


def model_device(model: nn.Module) -> torch.device:
    """Where a model lives: its first parameter's device, or its first buffer's (n-grams have no parameters)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


@functools.cache
def processor() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """What a time measured on `device` was measured on, in one line: the GPU's name, or the CPU's with its
    cores and torch's threads; and torch's version. A run folder keeps it beside its wall time, as the same
    command takes another time on another machine (the zoo's README table came from one 2-core Xeon)."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{processor()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
        if device.type != "cpu":
            where = f"{device.type} on {where}"
    return f"{where}; torch {torch.__version__}"
