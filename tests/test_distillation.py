"""The distillation loop and its memory bank."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, SHAPE, state_hash
from models import TinyNet, make_teacher

from fastdfkd_plugin import FastDFKDError, get_source
from fastdfkd_plugin.distillation import (
    DistillConfig,
    Distiller,
    MemoryBank,
    agreement,
    distill,
    kd_loss,
)


def test_kd_loss_is_zero_for_equal_logits_and_scaled_by_tau_squared():
    logits = torch.randn(4, 10)
    assert kd_loss(logits, logits, 4.0).abs() < 1e-6
    other = torch.randn(4, 10)
    t = 3.0
    expected = (torch.softmax(other / t, 1) * (torch.log_softmax(other / t, 1) - torch.log_softmax(logits / t, 1))).sum(1).mean() * t * t
    assert torch.allclose(kd_loss(logits, other, t), expected, atol=1e-6)


def test_memory_bank_evicts_the_oldest_images():
    bank = MemoryBank(capacity=5)
    bank.add(torch.arange(4.0).view(4, 1))
    bank.add(torch.arange(4.0, 7.0).view(3, 1))
    assert bank.images.flatten().tolist() == [2, 3, 4, 5, 6]
    assert set(bank.sample(20, torch.Generator().manual_seed(0)).flatten().tolist()) <= {2, 3, 4, 5, 6}


def test_distillation_from_synthetic_batches_raises_agreement_and_leaves_the_teacher(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, seed=0, **FAST)
    held_out = get_source("fastdfkd", teacher, SHAPE, seed=99, **FAST).synthetic_set(128, 64).inputs
    torch.manual_seed(0)
    student = TinyNet(width=4)
    before_teacher = state_hash(teacher)
    before = agreement(teacher, student, held_out)
    log = distill(teacher, student, source,
                  DistillConfig(steps=150, batch_size=32, steps_per_batch=10, bank_size=512, lr=0.05, temperature=4))
    after = agreement(teacher, student, held_out)
    assert after > before + 0.2, (before, after)
    assert sum(log.losses[-20:]) < sum(log.losses[:20])
    assert state_hash(teacher) == before_teacher
    assert source.objective.student is None, "the adversarial term is released after the run"


SMALL = DistillConfig(steps=12, batch_size=16, steps_per_batch=4, bank_size=64, lr=0.05, temperature=4)


def make_run(teacher, seed=0):
    torch.manual_seed(seed)
    return Distiller(teacher, TinyNet(width=4), get_source("fastdfkd", teacher, SHAPE, seed=0, **FAST), SMALL)


def test_the_adversarial_term_is_aimed_at_the_student_during_the_run(teacher):
    run = make_run(teacher)
    seen = []
    run.run(evaluate=lambda student: seen.append(run.batches.objective.student is run.student) or {})
    assert seen == [True, True]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(teacher, tmp_path):
    whole = make_run(teacher)
    whole.run()
    checkpoint = tmp_path / "run.ckpt"
    first = make_run(teacher)

    def stop_after_six(student):
        if first.step == 6:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        first.run(evaluate=stop_after_six, eval_every=6, checkpoint=checkpoint)
    resumed = make_run(teacher, seed=123)  # different init: everything must come from the checkpoint
    resumed.resume(checkpoint)
    assert resumed.step == 6
    resumed.run()
    assert state_hash(resumed.student) == state_hash(whole.student)
    assert resumed.log.losses == whole.log.losses


def test_resume_refuses_a_checkpoint_from_another_teacher(teacher, tmp_path):
    run = make_run(teacher)
    run.save_checkpoint(tmp_path / "run.ckpt")
    other = make_run(make_teacher(seed=1))
    with pytest.raises(FastDFKDError, match="another teacher"):
        other.resume(tmp_path / "run.ckpt")
    with pytest.raises(FastDFKDError, match="does not exist"):
        other.resume(tmp_path / "missing.ckpt")


def test_mismatched_outputs_and_devices_are_refused(teacher):
    run = Distiller(teacher, TinyNet(width=4, classes=7), iter([torch.randn(16, *SHAPE)] * 10), SMALL)
    with pytest.raises(FastDFKDError, match="number of classes"):
        run.run()
    with pytest.raises(FastDFKDError, match="move both to one device"):
        Distiller(teacher, TinyNet(width=4).to("meta"), iter([]), SMALL)
    with pytest.raises(FastDFKDError, match="ran out"):
        Distiller(teacher, TinyNet(width=4), iter([]), SMALL).run()
