"""The memory plan: probes that leave the source as it was, batches sized to a budget, refusals before work."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FAST, MODELS, SHAPE, TinyNet, run_cli

from fastdfkd_plugin import Teacher, get_source
from fastdfkd_plugin.errors import FastDFKDError
from fastdfkd_plugin.hooks.argtypes import memory_size
from fastdfkd_plugin.runtime.memory import glibc_malloc
from fastdfkd_plugin.runtime.memory_meter import AllocatedBytes, baseline, can_measure_peak
from fastdfkd_plugin.sources.memory_plan import plan_memory
from fastdfkd_plugin.training.distillation import DistillConfig, distill_datafree
from fastdfkd_plugin.training.memory_plan import DistillationPlan, plan_distillation

CPU = torch.device("cpu")
needs_meter = pytest.mark.skipif(not can_measure_peak(CPU), reason="the kernel's resident high-water mark (Linux)")
GIB = 2**30


def test_allocated_bytes_counts_each_new_tensor_and_no_view():
    x = torch.zeros(4, 100)
    with AllocatedBytes() as counter:
        y = x * 2  # 1,600 bytes
        y.view(400)  # a view: nothing new
        torch.ones(10, dtype=torch.float64)  # 80 bytes
    assert counter.total == 1600 + 80


PEAK = """
import torch
from fastdfkd_plugin.runtime.memory_meter import peak_bytes
def step():
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
    del big
print(peak_bytes(step, torch.device("cpu")), peak_bytes(lambda: None, torch.device("cpu")))
"""


@needs_meter
def test_the_peak_of_a_step_is_measured_from_where_memory_stood():
    """In a fresh process: memory an earlier test freed and the allocator kept would be reused without showing."""
    done = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    step, nothing = map(int, done.stdout.split())
    assert 60 * 2**20 < step < 200 * 2**20 and nothing < 16 * 2**20


KEPT = """
import torch
from fastdfkd_plugin.runtime.memory import keep_freed_memory, release_freed_memory
from fastdfkd_plugin.runtime.memory_meter import peak_bytes
assert keep_freed_memory()  # as the fastdfkd command sets it
def step():
    big = torch.ones(64 * 2**20 // 4)
    del big
freed = torch.ones(256 * 2**20 // 4)
del freed  # kept by the allocator: a step reuses it without raising the resident set
hidden = peak_bytes(step, torch.device("cpu"))
release_freed_memory()
print(hidden, peak_bytes(step, torch.device("cpu")))
"""


@needs_meter
@pytest.mark.skipif(not glibc_malloc(), reason="glibc's malloc only")
def test_memory_the_process_kept_is_handed_back_before_a_probe_so_the_probe_reads_true():
    done = subprocess.run([sys.executable, "-c", KEPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    hidden, seen = map(int, done.stdout.split())
    assert hidden < 16 * 2**20 < 60 * 2**20 < seen


@needs_meter
def test_the_probe_leaves_the_source_as_it_was(teacher):
    """Where the batch asked for fits, the seeded set is bit-identical to one made without a plan."""
    planned = get_source("fastdfkd", teacher, SHAPE, **FAST)
    plan = plan_memory(planned, 8, budget=baseline(CPU) + 4 * GIB, calibration="each batch", num_samples=16)
    assert plan.synthesis_batch == 8 and plan.calibration_batch == 8
    assert plan.synthesis_per_input > 0 and plan.intermediates_per_input > 0
    unplanned = get_source("fastdfkd", teacher, SHAPE, **FAST)
    assert torch.equal(planned.synthetic_set(16, plan.synthesis_batch).inputs, unplanned.synthetic_set(16, 8).inputs)


@needs_meter
def test_a_tight_budget_lowers_the_batch_and_the_warm_up_batch(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    measured = plan_memory(source, 64, budget=baseline(CPU) + 4 * GIB)
    room = measured.synthesis_fixed + 5 * measured.synthesis_per_input + measured.synthesis_per_input // 2
    plan = plan_memory(source, 64, budget=baseline(CPU) + room)
    assert 1 <= plan.synthesis_batch < 64
    assert plan.synthesis_bytes() <= room + measured.synthesis_per_input  # within a second probe's noise
    assert source.warmup_batch_size == min(16, plan.synthesis_batch)  # what memory allows: the batch asked for is larger
    assert "asked 64" in plan.describe()


@needs_meter
def test_work_that_cannot_fit_at_one_input_is_refused_with_the_estimate(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    with pytest.raises(FastDFKDError, match=r"needs about .* GiB even one input at a time.*--memory-budget"):
        plan_memory(source, 64, budget=baseline(CPU) // 2)


@needs_meter
def test_calibrators_that_keep_every_batch_get_chunks(teacher):
    source = get_source("uniform", teacher, SHAPE, device="cpu")
    measured = plan_memory(source, 8, budget=baseline(CPU) + 4 * GIB, calibration="every batch", num_samples=64)
    assert measured.calibration_chunk is None  # 8 batches of 8 fit
    three_batches = 3 * measured.calibration_bytes(batch=8) + measured.calibration_bytes(batch=1) // 2
    tight = plan_memory(source, 8, budget=baseline(CPU) + three_batches, calibration="every batch", num_samples=64)
    assert tight.calibration_batch == 8 and tight.calibration_chunk == 3


@needs_meter
def test_a_command_that_synthesises_nothing_plans_its_calibration_without_probing_synthesis(teacher, monkeypatch):
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)

    def probe_step(batch_size):
        raise AssertionError("a synthesis step was probed for a command that synthesises nothing")

    monkeypatch.setattr(source, "probe_step", probe_step)
    plan = plan_memory(source, 8, budget=baseline(CPU) + 4 * GIB, calibration="each batch", synthesises=False)
    assert plan.calibration_batch == 8 and plan.synthesis_fixed == plan.synthesis_per_input == 0
    assert "synthesis batch" not in plan.describe() and "calibration batch 8" in plan.describe()


def test_ort_strides_divide_the_batch_count():
    from fastdfkd_plugin.adapters.onnxruntime import strided

    assert strided(8, None) is None and strided(8, 8) is None
    assert strided(8, 3) == 2 and strided(9, 3) == 3 and strided(7, 3) == 1


def test_strided_minmax_calibration_gives_the_same_ranges(onnx_file, synthetic, tmp_path):
    """Calibrating a few batches at a time changes nothing for MinMax (the minimum of minima)."""
    from fastdfkd_plugin.adapters.onnxruntime import Requantizer, calibration_reader, quantize_static_options

    options = quantize_static_options(dict(weight_type="int8", activation_type="uint8", calibrate_method="minmax"))
    ranges = []
    for stride in (None, 2):
        requantizer = Requantizer(onnx_file, tmp_path / f"ranges-{stride}.json", options)
        requantizer.calibrate(tmp_path / f"q-{stride}.onnx", calibration_reader(onnx_file, synthetic, 8), stride)
        ranges.append(json.loads(requantizer.ranges.read_text()))
    assert ranges[0] == ranges[1]


@pytest.mark.parametrize("text, expected", [("8G", 8 * GIB), ("512M", 512 * 2**20), ("1.5GiB", 3 * GIB // 2), ("2048", 2048)])
def test_memory_sizes_read_as_people_write_them(text, expected):
    assert memory_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_a_bad_memory_size_is_one_sentence(text):
    with pytest.raises(argparse.ArgumentTypeError, match="such as 8G"):
        memory_size(text)


@needs_meter
def test_the_command_prints_its_plan_and_refuses_an_impossible_budget(capsys, tmp_path):
    common = ["synthesize", "--model", "tests/models.py:TinyNet", "--input-shape", "3,32,32", "--mean", "0.5,0.5,0.5",
              "--std", "0.5,0.5,0.5", "--num-samples", "8", "--batch-size", "8", "--steps", "1", "--warmup-tasks", "1",
              "--out", str(tmp_path / "set.npz")]
    code, _, err = run_cli(capsys, *common)
    assert code == 0 and "memory plan: budget" in err and "synthesis batch 8 ≈" in err
    code, _, err = run_cli(capsys, *common[:-2], "--out", str(tmp_path / "none.npz"), "--memory-budget", "1M")
    assert code == 2 and "even one input at a time" in err and not (tmp_path / "none.npz").exists()
    assert np.load(tmp_path / "set.npz")["inputs"].shape == (8, *SHAPE)


# -- distillation and pruning: synthesis batch, KD step and image bank in one budget ------------------------------

def distillation_run(teacher, budget, *, bank_size=1000, kd_batch=8, checkpoint=None, resume=None, memory_plan=True):
    """(student, distiller) after three KD steps from the tiny teacher, from one seed."""
    torch.manual_seed(1)
    student = TinyNet(width=4)
    config = DistillConfig(steps=3, batch_size=kd_batch, synthesis_batch_size=8, steps_per_batch=2, bank_size=bank_size)
    distiller = distill_datafree(teacher, student, get_source("fastdfkd", teacher, SHAPE, **FAST), config, eval_samples=8,
                                 eval_every=0, checkpoint=checkpoint, resume=resume, memory_budget=budget, memory_plan=memory_plan)
    return student, distiller


@needs_meter
def test_a_distillation_that_fits_is_bit_identical_to_one_without_a_plan(teacher):
    planned, distiller = distillation_run(teacher, baseline(CPU) + 4 * GIB)
    unplanned, _ = distillation_run(teacher, None, memory_plan=False)
    assert distiller.config.bank_size == 1000 and distiller.config.synthesis_batch_size == 8
    assert all(torch.equal(a, b) for a, b in zip(planned.state_dict().values(), unplanned.state_dict().values()))


@needs_meter
def test_a_tight_budget_caps_the_bank_and_refuses_a_kd_batch_that_cannot_fit(teacher):
    source, student = get_source("fastdfkd", teacher, SHAPE, **FAST), TinyNet(width=4)
    config = DistillConfig(batch_size=8, synthesis_batch_size=8, bank_size=10**7)  # 10 million images: 115 GiB
    plan = plan_distillation(source, student, config, budget=baseline(CPU) + 4 * GIB)
    assert plan.config.synthesis_batch_size == 8 and plan.config.batch_size == 8
    assert 1000 < plan.config.bank_size < 10**7 and "bank" in plan.describe() and "asked 10000000" in plan.describe()
    room = plan.budget - plan.held - plan.resident
    assert max(plan.synthesis_bytes(), plan.kd_bytes()) + plan.bank_bytes() <= room
    assert 2 * plan.bank_bytes() + 8 * plan.image_bytes <= room  # a checkpoint copies the bank once it has wrapped round

    huge_kd = dataclasses.replace(config, batch_size=10**7, bank_size=1000)
    with pytest.raises(FastDFKDError, match=r"a KD step at batch 10000000, with a bank of 1000 images, needs about .* GiB"
                                            r".*lower --kd-batch-size to \d+ or less"):
        plan_distillation(source, student, huge_kd, budget=baseline(CPU) + 1 * GIB)
    with pytest.raises(FastDFKDError, match=r"synthesis .* even one input at a time, with a bank of 10000000 images.*--bank-size"):
        plan_distillation(source, student, dataclasses.replace(config, batch_size=10**7), budget=baseline(CPU) + 1 * GIB)


@needs_meter
def test_the_plan_leaves_the_student_its_batchnorm_averages_and_random_streams_as_they_were(teacher):
    student = TinyNet(width=4).eval()
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    stream = torch.get_rng_state()
    plan_distillation(get_source("fastdfkd", teacher, SHAPE, **FAST), student, DistillConfig(batch_size=8),
                      budget=baseline(CPU) + 4 * GIB)
    assert all(torch.equal(before[name], tensor) for name, tensor in student.state_dict().items())
    assert not student.training and all(param.grad is None for param in student.parameters())
    assert torch.equal(torch.get_rng_state(), stream)


@needs_meter
def test_a_resumed_distillation_keeps_the_bank_its_checkpoint_was_planned_with(teacher, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    tight = baseline(CPU) + 256 * 2**20
    _, first = distillation_run(teacher, tight, bank_size=10**7, checkpoint=checkpoint)
    assert first.config.bank_size < 10**7
    _, resumed = distillation_run(teacher, baseline(CPU) + 4 * GIB, bank_size=10**7, checkpoint=checkpoint, resume=True)
    assert resumed.config.bank_size == first.config.bank_size and resumed.step == 3  # accepted, not refused as other settings


@needs_meter
def test_distill_and_prune_print_their_plan_and_refuse_an_impossible_budget(capsys, tmp_path):
    common = ["--input-shape", "3,32,32", "--raw-pixels", "--steps", "1", "--warmup-tasks", "1", "--batch-size", "8",
              "--kd-batch-size", "8", "--bank-size", "16", "--device", "cpu"]
    commands = {"student.pt": ["distill", "--teacher", f"{MODELS}:tiny", "--student", f"{MODELS}:student", *common,
                               "--kd-steps", "2", "--eval-samples", "8", "--no-plot"],
                "pruned.pt": ["prune", "--model", f"{MODELS}:tiny", "--speed-up", "1.2", "--recovery-steps", "2",
                              "--bn-samples", "8", *common]}
    for out, command in commands.items():
        code, _, err = run_cli(capsys, *command, "--out", str(tmp_path / "none.pt"), "--memory-budget", "1M")
        assert code == 2 and "more than the memory budget of 0.0 GiB" in err and not (tmp_path / "none.pt").exists(), err
        code, _, err = run_cli(capsys, *command, "--out", str(tmp_path / out))
        assert code == 0 and (tmp_path / out).exists(), err
        assert "memory plan: budget" in err and "KD batch 8 ≈" in err and "bank 16 images ≈" in err


@needs_meter
def test_a_pruning_that_fits_is_bit_identical_to_one_without_a_plan_and_a_tight_one_batches_its_batchnorm_pass(
        teacher, monkeypatch):
    from fastdfkd_plugin.adapters import torch_pruning

    recovery = DistillConfig(steps=2, batch_size=8, synthesis_batch_size=8, steps_per_batch=1, bank_size=64)

    def pruned(**plan):
        source = get_source("fastdfkd", Teacher(teacher, SHAPE, device="cpu"), **FAST)
        student, _ = torch_pruning.prune_datafree(teacher, source, 1.3, recovery=recovery, bn_samples=32, batch_size=8, eval_samples=8, **plan)
        return student.state_dict()

    planned, unplanned = pruned(memory_budget=baseline(CPU) + 4 * GIB), pruned(memory_plan=False)
    assert all(torch.equal(planned[key], unplanned[key]) for key in planned)

    passes = []
    monkeypatch.setattr(torch_pruning, "reestimate_batchnorm", lambda model, batches: passes.append([len(b) for b in batches]))
    monkeypatch.setattr(DistillationPlan, "largest_forward", lambda plan: 10)
    pruned(memory_budget=baseline(CPU) + 4 * GIB)
    assert passes == [[10, 10, 10, 2]]  # 32 images, at most 10 a forward


def test_a_command_plans_its_batch_beside_the_set_it_builds_in_memory(teacher, monkeypatch):
    """synthesize, evaluate and the closing estimates keep every synthesised input until the set is done, so their
    plan counts the set as held throughout (two real probes at these sizes differ by more than the set)."""
    from fastdfkd_plugin.cli import options

    asked = {}

    def plan(source, batch_size, **settings):
        asked.update(settings, batch_size=batch_size)
        return argparse.Namespace(synthesis_batch=7)

    monkeypatch.setattr(options, "plan_memory", plan)
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    args = argparse.Namespace(no_memory_plan=False, quiet=True, memory_budget=GIB)
    assert options.planned_batch(args, source, 64, 500) == 7
    assert asked == {"batch_size": 64, "budget": GIB, "resident": source.set_bytes(500), "progress": False}
