"""A cache of warm generator states, so the warm-up is paid once per teacher and settings.

The warm-up is deterministic: its result depends only on its description (teacher
fingerprint, input shape, normalisation, synthesis settings, seed, device type), which
names the file (:func:`state_key`), so a cached state is pure memoisation and a set made
from it is bit-identical to one made from cold. Files live in ``$FASTDFKD_CACHE_DIR``
(default ``$XDG_CACHE_HOME/fastdfkd`` or ``~/.cache/fastdfkd``) as
:class:`~fastdfkd_plugin.runtime.checkpoint.Checkpoint` files that carry the teacher's fingerprint
and the description (a file whose teacher or description does not match is never used),
and the least recently used ones are removed beyond ``$FASTDFKD_CACHE_MAX_MB`` (default 2048).
The cache never makes a command fail: a file it cannot use is rebuilt and a folder that
cannot be written is skipped, each with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FastDFKDError
from ..runtime.checkpoint import WARM_STATE, Checkpoint

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FASTDFKD_CACHE_DIR"
CACHE_MAX_ENV = "FASTDFKD_CACHE_MAX_MB"
SUFFIX = ".warm-state.pt"


def cache_dir() -> Path:
    """Where warm states are kept."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastdfkd"


def state_key(description: dict[str, Any]) -> str:
    """A stable name for everything a warm state depends on (a JSON-serialisable description)."""
    text = json.dumps({"format": WARM_STATE.version, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(description: dict[str, Any], fingerprint: str, device: torch.device) -> tuple[dict[str, Any], Path] | None:
    """The state cached for ``description`` and its path, or ``None`` (missing, unreadable, for another teacher or settings)."""
    path = cache_dir() / f"{state_key(description)}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        saved = Checkpoint.load(path, WARM_STATE, fingerprint, device)
        saved.check_settings(description)
    except FastDFKDError as exc:
        log.warning("ignoring a cached warm state that cannot be used (%s)", exc)
        return None
    os.utime(path)  # most recently used: kept longest
    return saved.state, path


def save(description: dict[str, Any], fingerprint: str, synthesizer_state: dict[str, Any]) -> Path | None:
    """Store a warm state under its description atomically, then keep the cache within its size bound."""
    folder = cache_dir()
    path = folder / f"{state_key(description)}{SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Checkpoint(WARM_STATE, fingerprint, description, synthesizer_state).save(path)
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
