"""Synthetic data in torch's own conventions: sets are Datasets, batches unpack, loaders feed training loops."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import FAST, SHAPE, state_hash
from digits import DIGITS_SHAPE, trained_digits
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler

from fastdfkd_plugin import Batch, FastDFKDError, agreement, get_source, kd_loader, kd_loss


@pytest.fixture
def synthetic(teacher):
    return get_source("fastdfkd", teacher, SHAPE, **FAST).synthetic_set(20, batch_size=8)


def test_a_set_is_a_map_style_dataset_of_input_label_pairs(synthetic, teacher):
    assert isinstance(synthetic, Dataset) and len(synthetic) == 20
    image, label = synthetic[3]
    assert image.shape == SHAPE and label.dtype == torch.int64
    assert label == teacher(synthetic.inputs[3:4]).argmax(1)[0]  # the teacher's class, not the synthesis target
    assert synthetic.targets.shape == (20,) and synthetic.logits.shape == (20, 10)
    assert len(list(synthetic)) == 20  # iterating a Dataset yields its samples


def test_a_set_works_with_dataloader_shuffle_and_samplers(synthetic):
    shuffled = [(x, y) for x, y in DataLoader(synthetic, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert [len(x) for x, _ in shuffled] == [6, 6, 6, 2]
    order = torch.cat([x for x, _ in shuffled]).flatten(1)[:, 0]
    assert sorted(order.tolist()) == sorted(synthetic.inputs.flatten(1)[:, 0].tolist())
    sampled = list(DataLoader(synthetic, batch_size=4, sampler=SubsetRandomSampler(range(8))))
    assert sum(len(x) for x, _ in sampled) == 8


def test_batches_unpack_like_a_loaders(synthetic, teacher):
    inputs, labels, logits = next(synthetic.batches())
    assert inputs.shape == (8, *SHAPE) and torch.equal(labels, logits.argmax(1))
    inputs, labels, logits = get_source("gaussian", teacher, SHAPE, device="cpu").next_batch(4)
    assert isinstance(Batch(inputs, labels), tuple) and logits is None and labels.shape == (4,)
    assert [len(b.inputs) for b in synthetic.batches(batch_size=7)] == [7, 7, 6]


def test_saved_set_holds_teacher_labels_and_targets(synthetic, tmp_path):
    synthetic.save(str(tmp_path / "s.npz"))
    with np.load(tmp_path / "s.npz") as saved:
        assert np.array_equal(saved["labels"], synthetic.labels.numpy())
        assert np.array_equal(saved["targets"], synthetic.targets.numpy())


# -- the loader-shaped fine-tune path ---------------------------------------------------------------

def test_kd_loader_feeds_an_existing_training_loop(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    student = copy.deepcopy(teacher)
    loader = kd_loader(source, batch_size=16, steps=5, steps_per_batch=2, synthesis_batch_size=8, student=student)
    assert len(loader) == 5
    seen = []
    for inputs, teacher_logits in loader:
        assert inputs.shape == (16, *SHAPE) and teacher_logits.shape == (16, 10)
        assert torch.allclose(teacher_logits, teacher(inputs), atol=1e-5)  # logits on exactly the augmented inputs
        seen.append(inputs)
    assert len(seen) == 5 and len(loader.data.bank.images) == 3 * 8  # a new batch every 2 draws
    assert len(list(loader)) == 5 and len(loader.data.bank.images) == 5 * 8  # the next pass continues the stream
    assert source.objective.student is None  # the adversarial term is released after each pass


def test_an_endless_kd_loader_has_no_length_and_bad_settings_are_refused(teacher):
    source = get_source("gaussian", teacher, SHAPE, device="cpu")
    with pytest.raises(TypeError, match="endless"):
        len(kd_loader(source))
    with pytest.raises(FastDFKDError, match="batch_size must be a positive integer"):
        kd_loader(source, batch_size=0)
    with pytest.raises(FastDFKDError, match=r"steps \(or None: endless\) must be a positive integer"):
        kd_loader(source, steps=0)


@pytest.mark.slow
def test_kd_loader_and_kd_loss_make_a_real_fine_tuning_loop_data_free():
    """A loop written for (images, labels) repairs a damaged copy of the digits teacher once loader and loss change."""
    model, digits = trained_digits()
    source = get_source("fastdfkd", model, DIGITS_SHAPE, mean=[digits.mean], std=[digits.std], steps=5, warmup_tasks=5,
                        latent_dim=32, device="cpu")
    before = state_hash(model)
    student = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():  # weight noise: the copy now agrees with the teacher on about one digit in ten
        for parameter in student.parameters():
            if parameter.dim() > 1:
                parameter.add_(torch.randn_like(parameter) * parameter.std() * 0.4)
    damaged = 100 * agreement(source.teacher, student, digits.test_x)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    student.train()
    for inputs, teacher_logits in kd_loader(source, batch_size=64, steps=100, student=student):
        loss = kd_loss(student(inputs), teacher_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    repaired = 100 * agreement(source.teacher, student, digits.test_x)
    assert repaired > damaged + 20, (damaged, repaired)  # measured: 11.4 % -> 49.4 %
    assert state_hash(model) == before
