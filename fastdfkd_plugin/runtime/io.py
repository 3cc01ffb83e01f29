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
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import FastDFKDError, reason


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail before long work, not after it, when a file cannot be written at ``path``.

    The folder must exist and take new files, and ``path`` must not be a folder itself.
    """
    target = Path(path)
    if target.is_dir():
        raise FastDFKDError(f"{what} {target} is a folder, not a file; give a file path such as {target / 'out'}")
    check_writable_folder(target.parent)
    return target


def check_writable_folder(folder: Path) -> None:
    """The folder exists and takes new files (tried, not guessed from permission bits)."""
    if not folder.is_dir():
        raise FastDFKDError(f"output folder {folder} does not exist; create it or choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastdfkd-write-test-", dir=folder)
    except OSError as exc:
        raise FastDFKDError(f"cannot write in output folder {folder} ({exc.strerror}); choose a folder you can write to") from exc
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def output_mode(target: Path) -> int:
    """The mode a new file at ``target`` gets: an existing file's own, else the user's umask applied to 0666."""
    return target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    The result has the mode a plain ``open(path, "w")`` would give it (an existing
    file keeps its own); the temporary file is removed whatever happens.
    """
    target = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, output_mode(target))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_output_folder(folder: str | os.PathLike, overwrite: bool = False, replaces: str = "*") -> Path:
    """Fail before long work when :func:`staged_folder` could not write ``folder``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FastDFKDError(f"{folder} is a file, not a folder; choose a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FastDFKDError(f"folder {folder} is not empty; choose a new folder, or pass --overwrite to replace "
                            f"the {replaces} entries in it (nothing else there is touched)")
    check_writable_folder(folder.parent)
    return folder


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, overwrite: bool = False, replaces: str = "*") -> Iterator[Path]:
    """Yield a new staging folder beside ``folder``; on success move what it holds into ``folder``.

    Nothing the user did not ask for is deleted: a non-empty ``folder`` is refused unless
    ``overwrite``, and then only its entries matching the glob ``replaces`` (what this
    run writes there) are replaced; every other file stays. On failure only the staging
    folder goes.
    """
    folder = check_output_folder(folder, overwrite, replaces)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield staging
        if not folder.exists():
            os.chmod(staging, 0o777 & ~_umask())
            os.replace(staging, folder)
            return
        aside = Path(tempfile.mkdtemp(prefix=".replaced.", dir=staging))
        for old in folder.glob(replaces):
            os.replace(old, aside / old.name)  # deleted with the staging folder below
        for entry in staging.iterdir():
            if entry != aside:
                os.replace(entry, folder / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_disk_space(folder: str | os.PathLike, nbytes: int, what: str, fix: str) -> None:
    """Refuse up front, with the estimate, a file of ``nbytes`` that ``folder``'s disk cannot hold."""
    free = shutil.disk_usage(folder).free
    if nbytes > 0.95 * free:
        raise FastDFKDError(f"{what} needs about {nbytes / 2**30:.1f} GiB on the disk of {folder} but "
                            f"{free / 2**30:.1f} GiB is free; {fix}")


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
        raise FastDFKDError(f"{path} is not a readable {what} ({reason(exc)}); {unreadable}") from exc


def _holds_pickle(path: Path) -> bool:
    """Whether ``path`` looks like a PyTorch file (a zip archive or a legacy pickle), not random bytes."""
    with open(path, "rb") as handle:
        return zipfile.is_zipfile(handle) or handle.read(1) == b"\x80"


def save_npz(path: str | os.PathLike, inputs: np.ndarray, labels: np.ndarray | None, metadata: dict[str, Any],
             targets: np.ndarray | None = None, **outputs: np.ndarray) -> None:
    """Write a synthetic set: ``inputs`` float32 N×C×H×W, ``labels`` int64 (classes or class maps), ``metadata`` JSON,
    and ``targets`` (int64) and float32 ``outputs`` (the teacher's, where it has no labels) when given."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            inputs=np.ascontiguousarray(inputs, dtype=np.float32),
            **({} if labels is None else {"labels": np.ascontiguousarray(labels, dtype=np.int64)}),
            metadata=np.array(json.dumps(metadata, sort_keys=True)),
            **({} if targets is None else {"targets": np.ascontiguousarray(targets, dtype=np.int64)}),
            **{name: np.ascontiguousarray(array, dtype=np.float32) for name, array in outputs.items()},
        )


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read a set written by :func:`save_npz` (labels ``None`` for a generic teacher's set); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FastDFKDError(f"synthetic set {path} does not exist; write one with `fastdfkd synthesize --out {path}`")
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["inputs"], data["labels"] if "labels" in data.files else None, json.loads(str(data["metadata"]))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise FastDFKDError(
            f"{path} is not a synthetic set written by fastdfkd (expected inputs and metadata): {exc}"
        ) from exc


@contextlib.contextmanager
def working_folder(folder: str | os.PathLike) -> Iterator[None]:
    """Run third-party calls that write into the working folder (ONNX Runtime's shape inference, AMD Quark's report)
    in ``folder``, so nothing lands beside the user's files; the previous working folder is restored."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
