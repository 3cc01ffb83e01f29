"""The distillation loop and its memory bank."""

from __future__ import annotations

import torch

from conftest import FAST, SHAPE, state_hash
from fastdfkd_plugin import get_source
from fastdfkd_plugin.distillation import DistillConfig, MemoryBank, distill, kd_loss
from models import TinyNet


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


def agreement(teacher, student, inputs):
    with torch.no_grad():
        return (teacher(inputs).argmax(1) == student(inputs).argmax(1)).float().mean().item()


def test_distillation_from_synthetic_batches_raises_agreement_and_leaves_the_teacher(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, seed=0, **FAST)
    held_out = get_source("fastdfkd", teacher, SHAPE, seed=99, **FAST).synthetic_set(128, 64).inputs
    torch.manual_seed(0)
    student = TinyNet(width=4)
    before_teacher = state_hash(teacher)
    before = agreement(teacher, student, held_out)
    source.set_student(student)
    log = distill(teacher, student, (b.inputs for b in source.stream(32)),
                  DistillConfig(steps=150, batch_size=32, steps_per_batch=10, bank_size=512, lr=0.05, temperature=4))
    after = agreement(teacher, student, held_out)
    assert after > before + 0.2, (before, after)
    assert sum(log.losses[-20:]) < sum(log.losses[:20])
    assert state_hash(teacher) == before_teacher
