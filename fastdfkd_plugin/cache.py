"""A cache of warm generator states, so the warm-up is paid once per teacher and settings.

The warm-up is deterministic: its result depends only on what :func:`state_key` hashes
(teacher fingerprint, input shape, normalisation, synthesis settings, seed, device type),
so a cached state is pure memoisation and a set made from it is bit-identical to one
made from cold. Files live in ``$FASTDFKD_CACHE_DIR`` (default
``$XDG_CACHE_HOME/fastdfkd`` or ``~/.cache/fastdfkd``), are written atomically, carry the
teacher's fingerprint (a file whose fingerprint does not match is never used), and the
least recently used ones are removed beyond ``$FASTDFKD_CACHE_MAX_MB`` (default 2048).
The cache never makes a command fail: a folder that cannot be written is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .errors import FastDFKDError
from .io import atomic_path, load_torch

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FASTDFKD_CACHE_DIR"
CACHE_MAX_ENV = "FASTDFKD_CACHE_MAX_MB"
SUFFIX = ".warm-state.pt"
FORMAT = 1


def cache_dir() -> Path:
    """Where warm states are kept."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastdfkd"


def state_key(description: dict[str, Any]) -> str:
    """A stable name for everything a warm state depends on (a JSON-serialisable description)."""
    text = json.dumps({"format": FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(key: str, fingerprint: str, device: torch.device) -> tuple[dict[str, Any], Path] | None:
    """The cached state for ``key`` and its path, or ``None`` (missing, unreadable or for another teacher)."""
    path = cache_dir() / f"{key}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        state = load_torch(path, "cached warm state", missing="", unreadable="", map_location=device)
    except FastDFKDError as exc:
        log.warning("ignoring an unreadable cached warm state (%s); it will be rebuilt", exc)
        return None
    if not isinstance(state, dict) or state.get("teacher_fingerprint") != fingerprint or state.get("key") != key:
        log.warning("ignoring cached warm state %s: it was made for another teacher or settings", path)
        return None
    os.utime(path)  # most recently used: kept longest
    return state["synthesizer"], path


def save(key: str, fingerprint: str, synthesizer_state: dict[str, Any]) -> Path | None:
    """Store a warm state under ``key`` atomically, then keep the cache within its size bound."""
    folder = cache_dir()
    path = folder / f"{key}{SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"key": key, "teacher_fingerprint": fingerprint, "synthesizer": synthesizer_state}, tmp)
    except (OSError, FastDFKDError) as exc:
        log.warning("could not cache the warm generator state in %s (%s); set %s to a writable folder", folder, exc,
                    CACHE_DIR_ENV)
        return None
    _trim(folder, keep=path)
    return path


def _trim(folder: Path, keep: Path) -> None:
    """Remove the least recently used states beyond the size bound (never ``keep``, never other files)."""
    limit = float(os.environ.get(CACHE_MAX_ENV, "2048")) * 2**20
    files = sorted(folder.glob(f"*{SUFFIX}"), key=lambda file: file.stat().st_mtime, reverse=True)
    total = 0
    for file in files:
        total += file.stat().st_size
        if total > limit and file != keep:
            file.unlink(missing_ok=True)
