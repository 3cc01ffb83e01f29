"""Measuring memory, so that a command can size its batches before the work instead of being killed during it.

Two measurements: :func:`peak_bytes` runs a function and returns how far the process's
memory rose above where it stood (on CUDA the allocator's peak; on Linux the kernel's
resident high-water mark, reset through ``/proc/self/clear_refs``), and
:class:`AllocatedBytes` counts every byte the operators inside it allocate, which for a
forward pass is the sum of all its intermediate tensors: what a tool that keeps every
intermediate (ONNX Runtime's calibration) holds per input.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .devices import proc_bytes

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


def can_measure_peak(device: torch.device) -> bool:
    """Whether :func:`peak_bytes` works here: CUDA always, CPU where the kernel lets a process reset its high-water mark."""
    if device.type == "cuda":
        return True
    try:
        with open(CLEAR_REFS, "w") as clear:
            clear.write("5")
        return proc_bytes(STATUS, "VmRSS:") > 0
    except OSError:
        return False


def peak_bytes(function: Callable[[], Any], device: torch.device, since: int | None = None) -> int:
    """How far memory on ``device`` rose while ``function`` ran, above ``since`` (default: where it stood before).

    Call :func:`can_measure_peak` first. ``since`` (a :func:`baseline`) lets several probes
    count from one starting point, so memory a first probe freed but the allocator kept
    is still counted in a second.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device) if since is None else since
        torch.cuda.reset_peak_memory_stats(device)
        function()
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - start, 0)
    start = proc_bytes(STATUS, "VmRSS:") if since is None else since
    with open(CLEAR_REFS, "w") as clear:
        clear.write("5")  # the high-water mark restarts from the resident set now (proc(5))
    function()
    return max(proc_bytes(STATUS, "VmHWM:") - start, 0)


def baseline(device: torch.device) -> int:
    """Where memory on ``device`` stands now, as :func:`peak_bytes` counts it."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else proc_bytes(STATUS, "VmRSS:")


class AllocatedBytes(TorchDispatchMode):
    """Counts the bytes of every tensor the operators run inside it create (views of their inputs excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        outputs = func(*args, **(kwargs or {}))
        known = {leaf.untyped_storage().data_ptr() for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)}
        for leaf in tree_leaves(outputs):
            if isinstance(leaf, torch.Tensor):
                storage = leaf.untyped_storage()
                if storage.data_ptr() not in known:
                    known.add(storage.data_ptr())
                    self.total += storage.nbytes()
        return outputs
