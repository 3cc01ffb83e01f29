"""Device resolution (CUDA when present, CPU otherwise, never hard-coded) and how much memory a device has free."""

from __future__ import annotations

import os

import torch

from ..errors import FastDFKDError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None``/a name into a usable :class:`torch.device`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FastDFKDError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FastDFKDError("device 'cuda' was requested but no CUDA GPU is visible; use --device cpu or auto")
    return resolved


def proc_bytes(path: str, key: str) -> int:
    """The kB field ``key`` of a Linux ``/proc`` file (``MemAvailable:`` in /proc/meminfo, ``VmRSS:`` in /proc/self/status),
    in bytes; ``OSError`` where the file or the field is missing."""
    with open(path) as fields:
        for line in fields:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise OSError(f"{path} has no {key}")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` (CPU: the kernel's MemAvailable), or ``None`` when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return proc_bytes("/proc/meminfo", "MemAvailable:")
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: int, device: torch.device, what: str, fix: str) -> None:
    """Refuse up front, with the estimate, work whose tensors would not fit in ``device``'s free memory."""
    free = available_memory(device)
    if free is not None and nbytes > 0.9 * free:
        raise FastDFKDError(f"{what} needs about {nbytes / 2**30:.1f} GiB of {device.type} memory but "
                            f"{free / 2**30:.1f} GiB is free; {fix}")
