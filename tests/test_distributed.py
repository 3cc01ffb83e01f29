"""torchrun with 2 CPU processes (gloo): the run completes, the processes stay in sync, checkpoints resume on 1 or 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODELS

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
DRIVER = Path(__file__).with_name("distributed_driver.py")


def torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def records(folder: Path, mode: str, processes: int) -> list[dict]:
    return [json.loads((folder / f"{mode}-{processes}-rank{r}.json").read_text()) for r in range(processes)]


def test_a_two_process_run_stays_in_sync_and_its_checkpoint_resumes_on_one_or_two(tmp_path):
    started = torchrun(2, str(DRIVER), "start", str(tmp_path))
    assert started.returncode == 0, started.stderr[-3000:]
    first, second = records(tmp_path, "start", 2)
    assert first["step"] == second["step"] == 6
    assert first["generator"] == second["generator"], "every process must hold the same meta-generator"
    assert first["student"] == second["student"]

    resumed = torchrun(2, str(DRIVER), "resume", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = records(tmp_path, "resume", 2)
    assert first["step"] == second["step"] == 12
    assert first["generator"] == second["generator"] and first["student"] == second["student"]
    for rank in range(2):  # gloo threads left at interpreter exit abort the process now and then (SIGABRT after a good run)
        assert json.loads((tmp_path / f"resume-exit-rank{rank}.json").read_text()) == {"left_process_group": True, "threads_left": 0}

    alone = subprocess.run([sys.executable, str(DRIVER), "resume", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert records(tmp_path, "resume", 1)[0]["step"] == 12


def test_the_distill_command_runs_under_torchrun(tmp_path):
    out = tmp_path / "student.pt"
    result = torchrun(2, "-m", "fastdfkd_plugin.cli", "distill", "--teacher", f"{MODELS}:tiny", "--student", f"{MODELS}:student",
                      "--input-shape", "3,32,32", "--raw-pixels", "--kd-steps", "12", "--kd-steps-per-batch", "4", "--kd-batch-size", "16",
                      "--batch-size", "16", "--steps", "2", "--warmup-tasks", "1", "--eval-samples", "32", "--eval-every", "4",
                      "--bank-size", "256", "--lr", "0.05", "--temperature", "4", "--device", "cpu", "--no-plot", "-q",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "12 KD steps on 2 process(es)" in result.stdout
    lines = [json.loads(line) for line in Path(f"{out}.metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 4, 8, 12]


def test_a_gpu_process_without_a_gpu_of_its_own_is_told_so(monkeypatch):
    """The CUDA branch of setup() runs here without a GPU: two processes on a machine that shows one."""
    import torch

    from fastdfkd_plugin.errors import FastDFKDError
    from fastdfkd_plugin.runtime import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(FastDFKDError, match="process 1 has no GPU of its own \\(1 visible\\)"):
        distributed.setup("cuda")
