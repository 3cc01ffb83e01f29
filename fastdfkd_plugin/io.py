"""Files: atomic writes, safe ``torch.load`` and the synthetic-set ``.npz`` format.

A crash or Ctrl-C never leaves a half-written output: everything is written to a
temporary file in the destination folder and moved into place with ``os.replace``.
Every ``torch.load`` goes through :func:`load_torch`, with ``weights_only=True``
unless the user opted in to unpickling (which runs code from the file).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import FastDFKDError


def check_output_folder(path: str | os.PathLike) -> Path:
    """Fail before long work, not after it, when ``path`` cannot be written."""
    target = Path(path)
    if not target.parent.exists():
        raise FastDFKDError(f"output folder {target.parent} does not exist; create it or choose another path")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success."""
    target = check_output_folder(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_torch(
    path: str | os.PathLike,
    what: str,
    *,
    missing: str,
    unreadable: str,
    map_location: str | torch.device = "cpu",
    weights_only: bool = True,
) -> Any:
    """``torch.load`` of a ``what`` (e.g. "checkpoint"); one sentence, with the fix, for a missing, unsafe or unreadable file.

    ``missing`` and ``unreadable`` say what to do in either case.
    """
    path = Path(path)
    if not path.is_file():
        raise FastDFKDError(f"{what} {path} does not exist; {missing}")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # pickle, zip and torch errors come in many types
        if weights_only and "weights_only" in str(exc) and _holds_pickle(path):
            raise FastDFKDError(
                f"{path} holds more than plain tensors, so it was not loaded safely; if you trust the file, "
                "pass --allow-pickle (this runs code from the file)"
            ) from exc
        reason = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:200]}" if str(exc).strip() else exc.__class__.__name__
        raise FastDFKDError(f"{path} is not a readable {what} ({reason}); {unreadable}") from exc


def _holds_pickle(path: Path) -> bool:
    """Whether ``path`` looks like a PyTorch file (a zip archive or a legacy pickle), not random bytes."""
    with open(path, "rb") as handle:
        return zipfile.is_zipfile(handle) or handle.read(1) == b"\x80"


def save_npz(path: str | os.PathLike, inputs: np.ndarray, labels: np.ndarray, metadata: dict[str, Any]) -> None:
    """Write a synthetic set: ``inputs`` float32 N×C×H×W, ``labels`` int64, ``metadata`` JSON."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            inputs=np.ascontiguousarray(inputs, dtype=np.float32),
            labels=np.ascontiguousarray(labels, dtype=np.int64),
            metadata=np.array(json.dumps(metadata, sort_keys=True)),
        )


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a set written by :func:`save_npz`; raise a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FastDFKDError(f"synthetic set {path} does not exist; write one with `fastdfkd synthesize --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["inputs"], data["labels"], json.loads(str(data["metadata"]))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise FastDFKDError(
            f"{path} is not a synthetic set written by fastdfkd (expected inputs, labels and metadata): {exc}"
        ) from exc
