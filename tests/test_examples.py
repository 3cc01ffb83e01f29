"""The three example scripts shaped like public toolkit examples run in both modes, and data-free works in each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUICK = ["--warmup-tasks", "3"]  # a rougher synthesizer than the default 40 tasks: CI checks behaviour, not the best numbers


def run_example(script: str, *args: str, cwd: Path) -> dict:
    """The JSON result line a script prints last."""
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["onnxruntime_quantize.py", "pt2e_calibrate.py"])
def test_quantization_examples_calibrate_on_synthetic_images_as_well_as_on_real_ones(script, tmp_path):
    real = run_example(script, cwd=tmp_path)
    synthetic = run_example(script, "--data-free", *QUICK, cwd=tmp_path)
    assert real["calibration"] == "real" and synthetic["calibration"] == "synthetic"
    assert real["fp32_accuracy"] == synthetic["fp32_accuracy"] > 90  # the same trained model in both runs
    assert abs(real["int8_accuracy"] - real["fp32_accuracy"]) <= 2
    assert abs(synthetic["int8_accuracy"] - synthetic["fp32_accuracy"]) <= 2  # measured: 96.0 -> 96.2 on both


@pytest.mark.slow
def test_pruning_example_fine_tunes_without_the_data(tmp_path):
    real = run_example("prune_finetune.py", cwd=tmp_path)
    synthetic = run_example("prune_finetune.py", "--data-free", *QUICK, cwd=tmp_path)
    assert real["accuracy_pruned"] == synthetic["accuracy_pruned"] < 50 and real["speed_up"] > 3
    assert real["accuracy_fine_tuned"] > 85  # measured: 91.8 %
    assert synthetic["accuracy_fine_tuned"] > synthetic["accuracy_pruned"] + 30  # measured: 10.2 % -> 72.4 %
