"""The Teacher object, and teachers whose output is a tuple or a dict through every pipeline.

A Teacher is built once; every stage gets logits through it, so ``output_transform``
(``--output-index``/``--output-key`` on the command line) is honoured everywhere.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
from conftest import FAST, MODELS, SHAPE, state_hash
from models import DictOutput, TinyNet, TupleOutput

from fastdfkd_plugin import FastDFKDError, Teacher, agreement, get_source, set_quality
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy, verify_onnx
from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree
from fastdfkd_plugin.adapters.torchao import quantize_pt2e_datafree
from fastdfkd_plugin.cli.main import main
from fastdfkd_plugin.training.distillation import DistillConfig, distill_datafree

KINDS = {
    "tuple": (TupleOutput, operator.itemgetter(0), ["--output-index", "0"], "tuple_output"),
    "dict": (DictOutput, operator.itemgetter("logits"), ["--output-key", "logits"], "dict_output"),
}
CLI_FAST = ["--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]


def structured(kind: str) -> Teacher:
    model_class, transform, _, _ = KINDS[kind]
    return Teacher(model_class(), SHAPE, device="cpu", output_transform=transform)


# -- the object --------------------------------------------------------------------------------

def test_a_teacher_is_probed_once_and_passed_through_unchanged(teacher):
    built = Teacher(teacher, SHAPE, mean=[0.5] * 3, std=[0.25] * 3, device="cpu")
    assert built.model is teacher and built.info.num_classes == 10 and built.info.num_batchnorm == 2
    assert Teacher.of(built) is built and Teacher.of(built, SHAPE, mean=[0.5] * 3) is built
    assert get_source("gaussian", built).teacher is built
    with pytest.raises(FastDFKDError, match="mean is already set on the Teacher"):
        get_source("gaussian", built, mean=[0.1] * 3)
    with pytest.raises(FastDFKDError, match="input_shape is already set on the Teacher"):
        Teacher.of(built, (1, 32, 32))
    with pytest.raises(FastDFKDError, match="input shape is unknown"):
        Teacher.of(teacher)


def test_the_teacher_model_is_frozen_only_while_used_and_never_changed(teacher):
    teacher.train()
    before = state_hash(teacher)
    built = Teacher(teacher, SHAPE, device="cpu")
    logits = built.predict(torch.rand(300, *SHAPE))
    assert logits.shape == (300, 10) and logits.dtype == torch.float32
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert state_hash(teacher) == before


def test_a_compiled_teacher_runs_eager_so_the_prior_hooks_fire(teacher, caplog):
    built = Teacher(torch.compile(teacher), SHAPE, device="cpu")
    assert built.model is teacher and "runs eager" in caplog.text
    x = torch.randn(16, *SHAPE)
    built.predict(x)  # compiled, this would cache a graph without hooks for this shape
    quality = set_quality(built, x)
    assert quality.bn_distance is not None and np.isfinite(quality.bn_distance) and quality.bn_distance > 0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_output_is_generic_until_its_transform_picks_the_logits(kind):
    assert Teacher(KINDS[kind][0](), SHAPE, device="cpu").task.name == "generic"  # compared element-wise, no classes
    with pytest.raises(FastDFKDError, match="task 'classification' needs batch×classes logits.*--output-index/--output-key"):
        Teacher(KINDS[kind][0](), SHAPE, device="cpu", task="classification")
    assert structured(kind).info.num_classes == 10 and structured(kind).task.name == "classification"


# -- every pipeline, through the Python API -----------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_synthesizes_with_its_logits(kind):
    teacher = structured(kind)
    synthetic = get_source("fastdfkd", teacher, with_logits=True, **{k: v for k, v in FAST.items() if k != "device"}
                           ).synthetic_set(16, batch_size=8)
    with torch.no_grad():
        expected = teacher.model.net(synthetic.inputs)
    assert torch.allclose(synthetic.logits, expected, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_distills_a_plain_student(kind):
    teacher = structured(kind)
    before = state_hash(teacher.model)
    source = get_source("fastdfkd", teacher, steps=2, warmup_tasks=1, latent_dim=32)
    torch.manual_seed(0)
    student = TinyNet(width=4)
    config = DistillConfig(steps=6, batch_size=16, steps_per_batch=3, bank_size=64, lr=0.05, temperature=4)
    distiller = distill_datafree(teacher, student, source, config, eval_samples=16, eval_every=3)
    assert [e["step"] for e in distiller.log.evaluations] == [0, 3, 6]
    assert all(0 <= e["agreement"] <= 100 for e in distiller.log.evaluations)
    assert state_hash(teacher.model) == before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_prunes_and_recovers_keeping_its_outputs(kind):
    teacher = structured(kind)
    source = get_source("fastdfkd", teacher, steps=2, warmup_tasks=1, latent_dim=32)
    pruned, report = prune_datafree(teacher, source, 1.3, "taylor", recovery=DistillConfig(steps=4, batch_size=16, steps_per_batch=2,
                                    bank_size=64, lr=0.01, temperature=4), bn_samples=16, batch_size=8, eval_samples=16)
    assert report.speed_up >= 1.3 and set(report.agreement) == {"pruned", "recovered"}
    output = pruned(torch.rand(2, *SHAPE))
    assert type(output) is type(teacher.model(torch.rand(2, *SHAPE)))  # same output structure as the teacher
    assert teacher.outputs_from(output).shape == (2, 10)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_quantizes_with_onnx_runtime(kind, tmp_path):
    teacher = structured(kind)
    report = quantize_datafree(teacher, tmp_path / "q.onnx", num_samples=16, batch_size=8,
                               source_options=dict(steps=2, warmup_tasks=1, latent_dim=32))
    assert report.agreement.top1_agreement == 100.0 and report.agreement.max_abs_error < 1e-4
    inputs = torch.rand(8, *SHAPE)
    verification = verify_onnx(teacher, tmp_path / "q.onnx", [inputs])  # the quantized model's outputs, unflattened
    assert verification.samples == 8 and verification.max_rel_error < 0.5
    labels = teacher.predict(inputs).argmax(1).numpy()
    assert onnx_accuracy(tmp_path / "q.onnx", inputs.numpy(), labels) >= 0  # the graph runs as saved


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_quantizes_with_torchao(kind):
    teacher = structured(kind)
    calibration = get_source("gaussian", teacher).synthetic_set(16, batch_size=8)
    quantized = quantize_pt2e_datafree(teacher, calibration)
    inputs = torch.rand(32, *SHAPE)
    assert agreement(teacher, quantized, inputs, model_output_transform=teacher.output_transform) >= 0.9


# -- and through the command line -----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_structured_teacher_through_every_command(kind, tmp_path, capsys):
    _, _, flags, factory = KINDS[kind]
    model = ["--model", f"{MODELS}:{factory}", "--input-shape", "3,32,32", *flags]
    assert main(["synthesize", *model, "--num-samples", "8", "--out", str(tmp_path / "set.npz"), *CLI_FAST]) == 0
    assert main(["quantize-onnx", *model, "--num-samples", "16", "--out", str(tmp_path / "q.onnx"), *CLI_FAST]) == 0
    assert main(["quantize-torch", *model, "--num-samples", "16", "--out", str(tmp_path / "q.pt2"), *CLI_FAST]) == 0
    assert main(["prune", *model, "--speed-up", "1.3", "--recovery-steps", "2", "--bn-samples", "8", "--kd-batch-size", "8",
                 "--out", str(tmp_path / "p.pt"), *CLI_FAST]) == 0
    assert main(["distill", "--teacher", f"{MODELS}:{factory}", "--input-shape", "3,32,32", *flags,
                 "--student", f"{MODELS}:student", "--kd-steps", "4", "--kd-steps-per-batch", "2", "--kd-batch-size", "8",
                 "--eval-samples", "8", "--bank-size", "32", "--no-plot", "--out", str(tmp_path / "s.pt"), *CLI_FAST]) == 0
    out = capsys.readouterr().out
    assert "4 KD steps on 1 process(es)" in out and "(top-1 agreement 100.0 %)" in out
    with np.load(tmp_path / "set.npz") as data:
        assert data["inputs"].shape == (8, *SHAPE)


def test_structured_teacher_as_a_classifier_without_a_choice_is_refused_in_one_sentence(tmp_path, capsys):
    code = main(["synthesize", "--model", f"{MODELS}:dict_output", "--input-shape", "3,32,32", "--num-samples", "8",
                 "--task", "classification", "--out", str(tmp_path / "set.npz"), *CLI_FAST])
    err = capsys.readouterr().err
    assert code == 2 and "--output-key" in err and "Traceback" not in err
    assert not (tmp_path / "set.npz").exists()
