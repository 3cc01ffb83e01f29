"""Judging a compressed model without data: held-out synthetic inputs, agreement, the estimate and its interval,
``fastdfkd evaluate`` and the closing line of every compressing command."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import MODELS, SHAPE
from conftest import run_cli as run
from digits import DIGITS_SHAPE, trained_digits
from models import make_teacher, segmenter

from fastdfkd_plugin import Teacher, get_source
from fastdfkd_plugin.demo import accuracy
from fastdfkd_plugin.evaluation.fidelity import CEILING, HELD_OUT_SEED, MIN_HALF_WIDTH, fidelity, held_out_set, relative_accuracy

HELD_OUT = dict(steps=2, warmup_tasks=2, latent_dim=32)  # the held-out source's options, cheap for tests
DIGITS_HELD_OUT = dict(steps=5, warmup_tasks=5, latent_dim=32)  # as digits.synthetic_digits: brighter images
TEACHER_ARGS = ["--input-shape", "3,32,32", "--raw-pixels", "--device", "cpu"]


def damaged(model: torch.nn.Module, scale: float, seed: int = 0) -> torch.nn.Module:
    """A copy whose conv and linear weights carry noise of ``scale`` times their own spread: compression-like damage."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in copied.named_parameters():
            if name.endswith("weight") and param.dim() > 1:
                param += scale * param.std() * torch.randn(param.shape, generator=generator)
    return copied


def test_the_teacher_itself_keeps_everything_and_damage_ranks_like_real_accuracy():
    model, digits = trained_digits()
    teacher = Teacher(copy.deepcopy(model), DIGITS_SHAPE, mean=[digits.mean], std=[digits.std])
    held_out = held_out_set(teacher, 128, **DIGITS_HELD_OUT)
    itself = fidelity(teacher, copy.deepcopy(model), held_out=held_out)
    assert itself.agreement == 100.0 and itself.samples == 128 and itself.task == "classification"
    assert itself.estimated_relative_accuracy > 99.9 and itself.interval[0] > 99 and itself.interval[1] <= 100.75
    copies = [damaged(model, scale) for scale in (0.05, 0.4, 1.5)]
    real = [accuracy(copy_, digits.test_x, digits.test_y) for copy_ in copies]
    estimates = [fidelity(teacher, copy_, held_out=held_out).estimated_relative_accuracy for copy_ in copies]
    assert real == sorted(real, reverse=True) and real[0] > real[-1] + 20  # the damage is real
    assert estimates == sorted(estimates, reverse=True) and estimates[0] > estimates[-1] + 20


def test_the_map_from_agreement_is_monotone_and_its_interval_narrows_with_more_inputs():
    estimates = [relative_accuracy(torch.tensor([1.0] * agree + [0.0] * (100 - agree)))[0] for agree in (10, 40, 70, 95)]
    assert estimates == sorted(estimates) and all(agree < estimate for agree, estimate in zip((10, 40, 70, 95), estimates))
    few = relative_accuracy(torch.tensor([1.0, 0.0] * 10))[1]
    many = relative_accuracy(torch.tensor([1.0, 0.0] * 1000))[1]
    assert many[1] - many[0] < few[1] - few[0]


def test_near_full_agreement_the_interval_still_allows_beating_the_teacher():
    """W8A8 models beat their teacher by up to 0.5 points, where the probit spread alone gives an interval of ±0.1."""
    estimate, (low, high) = relative_accuracy(torch.tensor([1.0] * 250 + [0.0] * 6))
    assert estimate > 99.5 and high >= estimate + MIN_HALF_WIDTH and high > 100 and low <= estimate - MIN_HALF_WIDTH
    _, (low, _) = relative_accuracy(torch.zeros(256))
    assert low == 0.0


def test_an_interval_that_reaches_the_ceiling_reaches_past_the_teacher():
    """ResNet-56's W4A8 models agreed on 80-84 % of held-out inputs, were estimated at 97-98 % and kept 99.6-100.8 %."""
    estimate, (_, high) = relative_accuracy(torch.tensor([1.0] * 210 + [0.0] * 46))  # 82 % agreement
    assert 95 < estimate < 99 and high == pytest.approx(100 + MIN_HALF_WIDTH)
    estimate, (_, high) = relative_accuracy(torch.tensor([1.0] * 100 + [0.0] * 156))  # 39 %: far from the ceiling
    assert high < CEILING and high > estimate


def test_held_out_inputs_are_never_the_calibration_inputs_of_the_same_seed():
    teacher = Teacher(make_teacher(), SHAPE)
    calibration = get_source("fastdfkd", teacher, seed=0, **HELD_OUT).synthetic_set(16, 8)
    held_out = held_out_set(teacher, 16, seed=0, **HELD_OUT)
    assert not torch.equal(calibration.inputs, held_out.inputs)
    again = get_source("fastdfkd", teacher, seed=0, **HELD_OUT)
    again.reseed(HELD_OUT_SEED)
    assert torch.equal(again.synthetic_set(16).inputs, held_out.inputs)  # a stream of its own, reproducible


def test_a_segmenter_counts_each_image_by_its_share_of_agreeing_pixels():
    teacher = Teacher(segmenter(), SHAPE)

    def top_half_wrong(inputs: torch.Tensor) -> torch.Tensor:
        maps = teacher.model(inputs)
        rows = maps.shape[2] // 2
        return torch.cat([maps[:, :, :rows].roll(1, 1), maps[:, :, rows:]], 2)  # other classes in the top half

    result = fidelity(teacher, top_half_wrong, num_samples=16, source_options=HELD_OUT)
    assert result.task == "segmentation" and result.samples == 16 and result.agreement == pytest.approx(50.0)


def test_a_low_estimate_warns_in_one_sentence_naming_the_fix():
    model, digits = trained_digits()
    teacher = Teacher(copy.deepcopy(model), DIGITS_SHAPE, mean=[digits.mean], std=[digits.std])
    held_out = held_out_set(teacher, 64, **DIGITS_HELD_OUT)
    broken = fidelity(teacher, damaged(model, 3.0), held_out=held_out)
    assert broken.warning("try 8-bit activations").endswith("try 8-bit activations")
    assert fidelity(teacher, copy.deepcopy(model), held_out=held_out).warning("x") is None


def test_evaluate_prints_one_json_object_for_an_onnx_model_and_writes_nothing_unasked(capsys, tmp_path, onnx_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, "evaluate", "--teacher", f"{MODELS}:tiny", *TEACHER_ARGS, "--model", str(onnx_file),
                         "--num-samples", "32", "--json", "--teacher-accuracy", "80", "-q")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["agreement"] == 100.0 and report["samples"] == 32
    assert report["estimated_relative_accuracy"] > 99 and len(report["interval"]) == 2
    assert report["estimated_accuracy"] == pytest.approx(0.8 * report["estimated_relative_accuracy"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    code, out, err = run(capsys, "evaluate", "--teacher", f"{MODELS}:tiny", *TEACHER_ARGS, "--model", f"{MODELS}:student",
                         "--num-samples", "32", "--out", str(tmp_path / "report.json"), "-q")
    assert code == 0, err and "estimated to keep" in out
    assert json.loads((tmp_path / "report.json").read_text())["samples"] == 32


@pytest.mark.parametrize("compressed, problem", [
    (f"{MODELS}:seven_classes", "returns outputs of shape (2, 7) but the teacher's are (2, 10)"),
    ("garbage.onnx", "ONNX Runtime cannot load"),
])
def test_evaluate_refuses_a_model_that_does_not_fit_the_teacher_in_one_sentence(capsys, tmp_path, compressed, problem):
    if compressed.endswith(".onnx"):
        (tmp_path / compressed).write_bytes(b"not a graph")
        compressed = str(tmp_path / compressed)
    code, _, err = run(capsys, "evaluate", "--teacher", f"{MODELS}:tiny", *TEACHER_ARGS, "--model", compressed, "-q")
    assert code == 2 and problem in err and len(err.strip().splitlines()) == 1


def test_a_compressing_command_ends_with_the_estimate_unless_told_not_to(capsys, tmp_path):
    common = ["quantize-torch", "--model", f"{MODELS}:tiny", *TEACHER_ARGS, "--num-samples", "16", "--batch-size", "8",
              "--steps", "2", "--warmup-tasks", "2", "-q"]
    code, out, err = run(capsys, *common, "--out", str(tmp_path / "q.pt2"))
    assert code == 0, err
    assert "estimated to keep" in out
    code, out, err = run(capsys, *common, "--out", str(tmp_path / "q2.pt2"), "--no-evaluate")
    assert code == 0, err
    assert "estimated to keep" not in out
    code, out, err = run(capsys, "evaluate", "--teacher", f"{MODELS}:tiny", *TEACHER_ARGS, "--model", str(tmp_path / "q.pt2"),
                         "--num-samples", "32", "--json", "-q")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["agreement"] > 50  # int8 PT2E of the tiny teacher mostly agrees
