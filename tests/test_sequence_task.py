"""Sequence outputs (N×T×C, CTC recognizers and token classifiers) through detection, agreement and every pipeline.

The teacher is tests/sequence_models.py's tiny recognizer: conv layers pooled to 8 columns, 7 classes per column,
class 0 the CTC blank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from models import tiny
from sequence_models import CLASSES, POSITIONS, recognizer, recognizer_logits, small_recognizer
from test_fidelity import damaged

from fastdfkd_plugin import FastDFKDError, Sequence, Teacher, get_source, kd_loss
from fastdfkd_plugin.evaluation.fidelity import fidelity, held_out_set

SPEC = Path(__file__).with_name("sequence_models.py")
SHAPE = (3, 16, 48)  # a text line: wider than tall
FAST = {"steps": 1, "warmup_tasks": 1, "latent_dim": 16, "cache": False}
CLI_FAST = ["--input-shape", "3,16,48", "--steps", "1", "--warmup-tasks", "1", "--batch-size", "4", "--device", "cpu",
            "-q", "--raw-pixels"]


def one_hot_sequences(rows: list[list[int]]) -> torch.Tensor:
    """Probabilities N×T×CLASSES that put all their mass on the given classes."""
    return torch.nn.functional.one_hot(torch.tensor(rows), CLASSES).float()


def test_probabilities_per_position_are_recognised_and_logits_must_be_named():
    assert Teacher(recognizer(), SHAPE, device="cpu").task.name == "sequence"
    assert Teacher(recognizer_logits(), SHAPE, device="cpu").task.name == "generic"  # N×T×D could be embeddings
    named = Teacher(recognizer_logits(), SHAPE, device="cpu", task="sequence")
    assert named.task.name == "sequence" and named.info.num_classes == CLASSES
    with pytest.raises(FastDFKDError, match=r"task 'sequence' needs N×positions×classes scores, but the teacher returns \(2, 10\)"):
        Teacher(tiny(), SHAPE, device="cpu", task="sequence")


def test_agreement_compares_sequences_as_ctc_decodes_them():
    task = Sequence(one_hot_sequences([[0] * 4]))
    a, b = 3, 5
    teacher = one_hot_sequences([[a, a, 0, a], [a, b, 0, 0], [a, 0, b, 0], [a, a, a, 0]])
    other = one_hot_sequences([[a, 0, a, a], [a, a, b, b], [a, b, 0, 0], [0, a, 0, 0]])
    # [a,a,_,a] reads "aa" like [a,_,a,a]; "ab" both; "ab" vs "ab"; "a" vs "a": collapse first, then drop blanks
    assert task.sample_agreement(teacher, other).tolist() == [1.0, 1.0, 1.0, 1.0]
    different = one_hot_sequences([[a, 0, 0, a], [a, b, b, a], [b, 0, a, 0], [a, 0, 0, 0]])
    # "aa" vs "aa", "ab" vs "aba", "ab" vs "ba", "a" vs "a"
    assert task.sample_agreement(teacher, different).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert task.decode(teacher).tolist()[0] == [a, a, -1, -1]


def test_a_token_classifier_compares_every_position_through_a_subclass():
    class Tokens(Sequence):
        name = "tokens"
        blank = None
        collapse_repeats = False

    teacher = Teacher(recognizer(), SHAPE, device="cpu", task=Tokens)
    repeated, once = one_hot_sequences([[1, 1, 0, 2]]), one_hot_sequences([[1, 0, 2, 2]])
    assert teacher.task.sample_agreement(repeated, once).tolist() == [0.0]
    assert Sequence(repeated).sample_agreement(repeated, once).tolist() == [1.0]


def test_losses_take_probabilities_and_logits_alike():
    logits = torch.randn(2, POSITIONS, CLASSES)
    task = Sequence(logits.softmax(-1))
    assert kd_loss(logits.softmax(-1), logits.softmax(-1), task=task).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, POSITIONS, CLASSES)
    from_logits = kd_loss(other, logits, task=task).item()
    assert from_logits > 0 and kd_loss(other.softmax(-1), logits.softmax(-1), task=task).item() == pytest.approx(from_logits, rel=1e-4)
    expected = torch.nn.functional.kl_div(other.div(4).log_softmax(-1), logits.div(4).log_softmax(-1),
                                          reduction="none", log_target=True).sum(-1).mean() * 16
    assert from_logits == pytest.approx(expected.item(), rel=1e-5)  # per position, averaged
    assert task.divergence(logits / 2, logits).item() > 0  # the same classes, other probabilities
    assert task.divergence(-logits, logits).item() == 0  # no position picks the same class: nothing to push apart
    assert task.labels(logits).shape == (2, POSITIONS) and sum(task.class_histogram(logits)) == 2 * POSITIONS
    assert task.importance_loss(other, logits, reduction="none").shape == (2,)
    reads_three = one_hot_sequences([[0, 3, 3, 0]])
    assert task.target_loss(reads_three, torch.tensor([3])) < task.target_loss(reads_three, torch.tensor([5]))


def test_labelled_sequences_score_exact_matches_with_padding_left_out():
    task = Sequence(one_hot_sequences([[0] * 4]))
    outputs = one_hot_sequences([[3, 3, 0, 5], [3, 0, 0, 0]])
    labels = torch.tensor([[3, 5, 255], [3, 3, 255]])  # "35" read right; "33" read as "3"
    assert task.scores([(outputs, labels)], ignore_index=255) == {"sequence_accuracy": 50.0}


def test_a_recognizer_synthesises_with_position_labels_and_fidelity_sees_damage():
    teacher = Teacher(recognizer(), SHAPE, device="cpu")
    source = get_source("fastdfkd", teacher, **FAST)
    assert source.objective.weights.oh == 0.0
    data = source.synthetic_set(4, 2)
    assert data.inputs.shape == (4, *SHAPE) and data.logits.shape == (4, POSITIONS, CLASSES) and data.labels.shape == (4, POSITIONS)
    held_out = held_out_set(teacher, 16, **FAST)
    itself = fidelity(teacher, recognizer(), held_out=held_out)
    broken = fidelity(teacher, damaged(recognizer(), 0.3), held_out=held_out)
    assert itself.task == "sequence" and itself.agreement == 100.0 and broken.agreement < itself.agreement
    # PP-OCRv4: every W8A8 variant agreed on 12.5 % of sequences while reading 65–94 % of words, so no estimate is claimed
    assert not broken.calibrated and broken.warning("fix") is None and "no estimate of the accuracy kept" in broken.summary()


def test_the_adversarial_term_reaches_a_student_with_logits():
    teacher = Teacher(recognizer(), SHAPE, device="cpu")
    source = get_source("fastdfkd", teacher, **FAST)
    source.set_student(small_recognizer())
    assert torch.isfinite(source.synthetic_set(2, 2).inputs).all()


def test_cli_synthesize_export_and_evaluate_a_recognizer(tmp_path, capsys):
    code, _, err = run_cli(capsys, "synthesize", "--model", f"{SPEC}:recognizer", "--num-samples", "4",
                           "--out", str(tmp_path / "s.npz"), *CLI_FAST)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as data:
        assert data["labels"].shape == (4, POSITIONS)
    code, out, err = run_cli(capsys, "export-onnx", "--model", f"{SPEC}:recognizer", "--num-samples", "4",
                             "--out", str(tmp_path / "r.onnx"), *CLI_FAST)
    assert code == 0, err
    assert "top-1 agreement 100.0 %" in out  # exact sequences, the sequence task's agreement
    code, out, err = run_cli(capsys, "evaluate", "--teacher", f"{SPEC}:recognizer", "--input-shape", "3,16,48", "--raw-pixels",
                             "--device", "cpu", "--model", str(tmp_path / "r.onnx"), "--num-samples", "8", "--json", "-q")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["task"] == "sequence" and report["agreement"] == 100.0 and report["calibrated"] is False


def test_the_float_fallback_is_refused_where_no_accuracy_estimate_is_calibrated(tmp_path):
    from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree

    with pytest.raises(FastDFKDError, match="calibrated for classifiers only, and this teacher's outputs are 'sequence'"):
        quantize_datafree(Teacher(recognizer(), SHAPE, device="cpu"), tmp_path / "q.onnx", accuracy_target=97)
    assert not (tmp_path / "q.onnx").exists()


def test_cli_distills_a_recognizer_into_a_logits_student_and_scores_labelled_sequences(tmp_path, capsys):
    generator = np.random.default_rng(0)
    labels = generator.integers(1, CLASSES, (4, 3))
    labels[:, 2] = 255  # two-class words, padded
    np.savez(tmp_path / "eval.npz", x=generator.integers(0, 256, (4, 16, 48, 3)).astype(np.uint8), y=labels)
    code, _, err = run_cli(capsys, "distill", "--teacher", f"{SPEC}:recognizer", "--student", f"{SPEC}:small_recognizer",
                             "--eval-data", str(tmp_path / "eval.npz"), "--out", str(tmp_path / "student.pt"), "--kd-steps", "2",
                             "--kd-steps-per-batch", "1", "--kd-batch-size", "4", "--eval-every", "2", "--bank-size", "8",
                             "--no-plot", *CLI_FAST)
    assert code == 0, err
    records = (tmp_path / "student.pt.metrics.jsonl").read_text().splitlines()
    assert all('"sequence_accuracy"' in record for record in records)
