"""Device resolution: CUDA when present, CPU otherwise, never hard-coded."""

from __future__ import annotations

import torch

from .errors import FastDFKDError


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
