"""Saved states that belong to one teacher: distillation checkpoints, generator states, warm-state cache entries.

They share one envelope, :class:`Checkpoint`: the kind of state, the format version of that
kind, the fingerprint of the teacher it was made with, the settings anything that continues
from it must share, and the state itself. Saving is atomic and loading ``weights_only``.
A file that is missing, unreadable, of another kind, of a format this version cannot read,
made for another teacher or with other settings is refused in one sentence that says what
to do instead. Files of an older format that hold everything needed are read (see
:data:`UPGRADES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import FastDFKDError
from .io import atomic_path, load_torch


@dataclass(frozen=True)
class Kind:
    """A kind of saved state: its name in messages, its current format, and what to do when a file cannot be used."""

    name: str
    version: int
    instead: str


DISTILLATION = Kind("distillation checkpoint", 3, "start again without --resume (with --overwrite to replace the file)")
GENERATOR_STATE = Kind("generator state", 2, "warm up a new generator (leave out --generator-state)")
WARM_STATE = Kind("cached warm state", 2, "it is rebuilt")


@dataclass
class Checkpoint:
    """One saved state: ``state`` for the teacher whose fingerprint is ``teacher``, made with ``settings``.

    ``path`` is where it was read from (named in refusals).
    """

    kind: Kind
    teacher: str
    settings: dict[str, Any]
    state: dict[str, Any]
    path: str | os.PathLike | None = None

    def save(self, path: str | os.PathLike) -> None:
        """Write it atomically: an interruption never leaves half a file."""
        with atomic_path(path) as tmp:
            torch.save({"kind": self.kind.name, "version": self.kind.version, "teacher_fingerprint": self.teacher,
                        "settings": self.settings, "state": self.state}, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, kind: Kind, teacher: str, device: torch.device | str = "cpu") -> Checkpoint:
        """The ``kind`` of state saved at ``path`` for the teacher with fingerprint ``teacher``; refused otherwise."""
        instead = kind.instead
        saved = load_torch(path, kind.name, missing=f"check the path, or {instead}", unreadable=instead, map_location=device)
        if isinstance(saved, dict) and "kind" not in saved and kind.name in UPGRADES:
            saved = UPGRADES[kind.name](saved)
        if not isinstance(saved, dict) or saved.get("kind") != kind.name:
            raise FastDFKDError(f"{path} is not a {kind.name}; check the path, or {instead}")
        if saved.get("version") != kind.version:
            raise FastDFKDError(f"{path} is a {kind.name} of format {saved.get('version')}, but this fastdfkd reads "
                                f"format {kind.version}; {instead}")
        if saved["teacher_fingerprint"] != teacher:
            raise FastDFKDError(f"{path} was made for another teacher (fingerprint {saved['teacher_fingerprint']}, this "
                                f"teacher's is {teacher}); use a {kind.name} of this teacher, or {instead}")
        return cls(kind, teacher, saved["settings"], saved["state"], path)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse to continue with other settings, naming every setting that differs and both values."""
        changed = [key for key in sorted(set(self.settings) | set(settings)) if self.settings.get(key) != settings.get(key)]
        if changed:
            raise FastDFKDError(
                f"{self.path or 'the ' + self.kind.name} was made with {', '.join(f'{key}={self.settings.get(key)!r}' for key in changed)}, but this run has "
                f"{', '.join(f'{key}={settings.get(key)!r}' for key in changed)}; use the same settings, or {self.kind.instead}"
            )


def _distillation_from_format_2(saved: dict[str, Any]) -> dict[str, Any]:
    """A distillation checkpoint written before :class:`Checkpoint` (``format`` 2): the same contents, another layout."""
    if saved.get("format") != 2:
        return saved
    state = {key: saved[key] for key in ("step", "student", "optimizer", "bank", "rng", "source", "log")}
    return {"kind": DISTILLATION.name, "version": DISTILLATION.version, "teacher_fingerprint": saved["teacher_fingerprint"],
            "settings": {**saved["config"], **saved["run"]}, "state": state}


def _generator_state_from_format_1(saved: dict[str, Any]) -> dict[str, Any]:
    """A generator state written before :class:`Checkpoint`; those from before the choice of generator hold the paper's."""
    if "synthesizer" not in saved:
        return saved
    return {"kind": GENERATOR_STATE.name, "version": GENERATOR_STATE.version, "teacher_fingerprint": saved["teacher_fingerprint"],
            "settings": {"input_shape": list(saved["input_shape"]), "generator": saved.get("generator_name", "paper")},
            "state": {key: saved[key] for key in ("rng", "labels_drawn", "synthesizer")}}


# Older layouts that are read, by kind; a warm-state cache entry of an older format is simply rebuilt.
UPGRADES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    DISTILLATION.name: _distillation_from_format_2,
    GENERATOR_STATE.name: _generator_state_from_format_1,
}
