"""The warm-state cache: the warm-up is paid once per teacher and settings, and changes no result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import FAST, MODELS, SHAPE
from conftest import run_cli as run
from models import make_teacher

from fastdfkd_plugin import get_source
from fastdfkd_plugin.sources import cache
from fastdfkd_plugin.sources.fastdfkd import FastDFKDSource


def cached_states() -> list[Path]:
    return sorted(cache.cache_dir().glob(f"*{cache.SUFFIX}"))


def no_warm_up(monkeypatch):
    def warm_up_ran(self):
        raise AssertionError("the warm-up ran although a cached state was there")

    monkeypatch.setattr(FastDFKDSource, "_warm_up_tasks", warm_up_ran)


def test_a_cached_warm_state_skips_the_warm_up_and_gives_the_same_set(teacher, monkeypatch):
    cold = get_source("fastdfkd", teacher, SHAPE, seed=3, cache=False, **FAST).synthetic_set(16, 8)
    assert cached_states() == []
    first = get_source("fastdfkd", teacher, SHAPE, seed=3, **FAST).synthetic_set(16, 8)
    assert len(cached_states()) == 1
    no_warm_up(monkeypatch)
    second = get_source("fastdfkd", teacher, SHAPE, seed=3, **FAST).synthetic_set(16, 8)
    assert torch.equal(cold.inputs, first.inputs) and torch.equal(first.inputs, second.inputs)
    assert torch.equal(cold.labels, second.labels)


@pytest.mark.parametrize("change", [{"seed": 4}, {"steps": 3}, {"mean": (0.5, 0.5, 0.5)}, {"latent_dim": 16}])
def test_another_seed_setting_or_normalisation_is_another_state(teacher, change):
    get_source("fastdfkd", teacher, SHAPE, seed=3, **FAST).next_batch(4)
    get_source("fastdfkd", teacher, SHAPE, **{"seed": 3, **FAST, **change}).next_batch(4)
    assert len(cached_states()) == 2


def test_another_teacher_never_uses_the_state(teacher):
    get_source("fastdfkd", teacher, SHAPE, **FAST).next_batch(4)
    get_source("fastdfkd", make_teacher(seed=1), SHAPE, **FAST).next_batch(4)
    assert len(cached_states()) == 2


def test_a_state_whose_fingerprint_does_not_match_its_key_is_not_trusted(teacher, caplog):
    get_source("fastdfkd", teacher, SHAPE, **FAST).next_batch(4)
    (path,) = cached_states()
    state = torch.load(path, weights_only=True)
    state["teacher_fingerprint"] = "0" * 16
    torch.save(state, path)
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    source.next_batch(4)
    assert source.warmup_seconds > 0 and "made for another teacher" in caplog.text


def test_a_corrupt_state_is_ignored_and_rebuilt(teacher, caplog):
    get_source("fastdfkd", teacher, SHAPE, **FAST).next_batch(4)
    (path,) = cached_states()
    path.write_bytes(b"not a state")
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    assert source.next_batch(4).inputs.shape == (4, *SHAPE)
    assert "not a readable cached warm state" in caplog.text and torch.load(path, weights_only=True)["kind"] == "cached warm state"


def test_the_cache_keeps_within_its_size_bound(teacher, monkeypatch):
    get_source("fastdfkd", teacher, SHAPE, seed=1, **FAST).next_batch(4)
    size_mb = cached_states()[0].stat().st_size / 2**20
    monkeypatch.setenv(cache.CACHE_MAX_ENV, str(2.5 * size_mb))
    for seed in (2, 3, 4):
        get_source("fastdfkd", teacher, SHAPE, seed=seed, **FAST).next_batch(4)
    assert len(cached_states()) == 2  # the two most recently used


def test_an_unwritable_cache_never_fails_the_work(teacher, monkeypatch, tmp_path, caplog):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "file" / "cache"))  # below a file: cannot be created
    assert get_source("fastdfkd", teacher, SHAPE, **FAST).next_batch(4).inputs.shape == (4, *SHAPE)
    assert "could not cache" in caplog.text


CLI = ["--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--raw-pixels", "--steps", "2", "--warmup-tasks", "2", "--device", "cpu"]


def test_the_second_command_for_a_teacher_starts_without_a_warm_up(tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "synthesize", *CLI, "--num-samples", "8", "--out", str(tmp_path / "s.npz"))
    assert code == 0 and "cached the warm generator" in err
    no_warm_up(monkeypatch)
    code, out, err = run(capsys, "export-onnx", *CLI, "--num-samples", "8", "--out", str(tmp_path / "m.onnx"))
    assert code == 0 and "warm generator from the cache (2 tasks" in err and "no warm-up" in err, err


def test_no_cache_neither_reads_nor_writes(tmp_path, capsys):
    assert run(capsys, "synthesize", *CLI, "--no-cache", "--num-samples", "8", "--out", str(tmp_path / "s.npz"), "-q")[0] == 0
    assert cached_states() == [] and not os.listdir(cache.cache_dir())
