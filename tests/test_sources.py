"""The DataSource contract, for every built-in source."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, SHAPE, state_hash

from fastdfkd_plugin import FastDFKDError, Teacher, get_source
from fastdfkd_plugin.sources.fastdfkd import FastDFKDSource

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPTIONS = {
    "fastdfkd": FAST,
    "deepinversion": dict(steps=3, device="cpu"),
    "gaussian": dict(device="cpu"),
    "uniform": dict(device="cpu"),
}


def make(name, teacher, **extra):
    return get_source(name, teacher, SHAPE, **{"mean": MEAN, "std": STD, **OPTIONS[name], **extra})


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_same_seed_gives_a_bit_identical_set(name, teacher):
    first = make(name, teacher, seed=7).synthetic_set(24, batch_size=8)
    second = make(name, teacher, seed=7).synthetic_set(24, batch_size=8)
    other = make(name, teacher, seed=8).synthetic_set(24, batch_size=8)
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.labels, second.labels)
    assert not torch.equal(first.inputs, other.inputs)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_set_is_normalised_in_range_balanced_and_replayable(name, teacher):
    synthetic = make(name, teacher).synthetic_set(40, batch_size=16)
    assert synthetic.inputs.shape == (40, *SHAPE) and synthetic.inputs.dtype == torch.float32
    assert synthetic.targets.dtype == torch.int64
    assert torch.bincount(synthetic.targets, minlength=10).tolist() == [4] * 10
    pixels = synthetic.inputs * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # inside the valid pixel range
    assert torch.allclose(synthetic.logits, teacher(synthetic.inputs), atol=1e-5)
    assert torch.equal(synthetic.labels, synthetic.logits.argmax(1))  # a sample's label is the teacher's class
    first_pass, second_pass = list(synthetic.batches()), list(synthetic.batches())
    assert [len(b.labels) for b in first_pass] == [16, 16, 8]
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first_pass, second_pass))


def test_gaussian_without_clip_is_plain_randn(teacher):
    batch = make("gaussian", teacher, clip=False).next_batch(256)
    assert batch.inputs.min() < -2.5 and batch.inputs.max() > 2.5  # unclipped N(0, 1), as toolkits feed
    assert batch.inputs.std().item() == pytest.approx(1.0, abs=0.05)


def test_stream_keeps_producing_fresh_batches(teacher):
    stream = make("fastdfkd", teacher).stream(8)
    batches = [next(stream) for _ in range(3)]
    assert not torch.equal(batches[1].inputs, batches[2].inputs)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_teacher_is_never_modified(name, teacher):
    teacher.train()
    teacher.head.weight.requires_grad_(False)
    before = state_hash(teacher)
    modes = [m.training for m in teacher.modules()]
    flags = [p.requires_grad for p in teacher.parameters()]
    make(name, teacher).synthetic_set(16, batch_size=8)
    assert state_hash(teacher) == before
    assert [m.training for m in teacher.modules()] == modes
    assert [p.requires_grad for p in teacher.parameters()] == flags
    assert not any(m._forward_hooks for m in teacher.modules())


def test_teacher_is_restored_after_an_interrupt(teacher, monkeypatch):
    teacher.train()
    before = state_hash(teacher)
    source = make("fastdfkd", teacher)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(source.synthesizer, "task", interrupt)
    with pytest.raises(KeyboardInterrupt):
        source.next_batch(8)
    assert state_hash(teacher) == before
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert not any(m._forward_hooks for m in teacher.modules())


def test_student_is_frozen_during_synthesis_and_restored(teacher):
    from models import make_teacher

    student = make_teacher(seed=1).train()
    source = make("fastdfkd", teacher)
    source.set_student(student)
    before = state_hash(student)
    source.synthetic_set(16, 8)
    assert state_hash(student) == before and student.training
    assert all(p.grad is None for p in student.parameters())


def test_teacher_as_student_is_refused(teacher):
    with pytest.raises(FastDFKDError, match="student is the teacher"):
        make("fastdfkd", teacher).set_student(teacher)


def test_non_finite_attempt_is_redone_from_fresh_latents(teacher, monkeypatch):
    source = make("fastdfkd", teacher, warmup_tasks=0)
    real_task = source.synthesizer.task
    calls = []

    def flaky(labels, adversarial=True, steps=None):
        calls.append(1)
        result = real_task(labels, adversarial, steps)
        if len(calls) == 1:
            result.pixels[0, 0, 0, 0] = float("nan")
        return result

    monkeypatch.setattr(source.synthesizer, "task", flaky)
    batch = source.next_batch(8)
    assert len(calls) == 2 and torch.isfinite(batch.inputs).all()


class PoisonedObjective:
    """The real objective, but every loss becomes NaN."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs) * float("nan")

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_persistently_non_finite_synthesis_fails_clearly_and_keeps_the_generator(teacher):
    source = make("fastdfkd", teacher, warmup_tasks=0)
    source.synthesizer.objective = PoisonedObjective(source.objective)
    before = [p.clone() for p in source.synthesizer.generator.parameters()]
    with pytest.raises(FastDFKDError, match="NaN/Inf 3 times"):
        source.next_batch(8)
    assert all(torch.equal(a, b) for a, b in zip(before, source.synthesizer.generator.parameters()))


def test_warm_state_is_reused_for_the_same_teacher(teacher, tmp_path):
    warm = make("fastdfkd", teacher)
    warm.next_batch(8)
    warm.save_state(tmp_path / "gen.pt")
    reused = make("fastdfkd", teacher, state_path=tmp_path / "gen.pt")
    assert reused.warmed_up and reused.synthesizer.tasks_done == warm.synthesizer.tasks_done
    for mine, theirs in zip(reused.synthesizer.generator.parameters(), warm.synthesizer.generator.parameters()):
        assert torch.equal(mine, theirs)
    assert all(
        torch.equal(a[0], b[0]) for a, b in zip(reused.objective.momentum_state(), warm.objective.momentum_state())
    )
    reused.next_batch(8)
    assert reused.synthesizer.tasks_done == warm.synthesizer.tasks_done + 1  # no second warm-up


def test_warm_state_of_another_teacher_is_refused(teacher, tmp_path):
    from models import make_teacher

    make("fastdfkd", teacher).save_state(tmp_path / "gen.pt")
    with pytest.raises(FastDFKDError, match="another teacher"):
        make("fastdfkd", make_teacher(seed=3), state_path=tmp_path / "gen.pt")


def test_warm_state_of_another_generator_is_refused(teacher, tmp_path):
    make("fastdfkd", teacher, generator="paper").save_state(tmp_path / "gen.pt")
    with pytest.raises(FastDFKDError, match="was made with generator='paper', but this run has generator='compact'; use the same"):
        make("fastdfkd", teacher, generator="compact", state_path=tmp_path / "gen.pt")


def test_corrupt_warm_state_is_refused(teacher, tmp_path):
    (tmp_path / "gen.pt").write_bytes(b"not a state")
    with pytest.raises(FastDFKDError, match="not a readable"):
        make("fastdfkd", teacher, state_path=tmp_path / "gen.pt")


def test_reptile_and_bf16_autocast_run(teacher):
    source = make("fastdfkd", teacher, meta_update="reptile", autocast_dtype=torch.bfloat16)
    batch = source.next_batch(8)
    assert torch.isfinite(batch.inputs).all() and batch.inputs.dtype == torch.float32


def test_warm_up_tasks_take_warmup_steps_and_batches_take_k(teacher):
    source = make("fastdfkd", teacher, steps=3, warmup_tasks=2, warmup_steps=1)
    forwards = []
    teacher.register_forward_hook(lambda *_: forwards.append(1))
    source.warm_up()
    assert len(forwards) == 2 and source.settings()["warmup_steps"] == 1
    source.next_batch(4)
    assert len(forwards) == 2 + 3
    assert make("fastdfkd", teacher, steps=3).settings()["warmup_steps"] == 3  # default: k


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(meta_update="maml"), "fomaml"),
        (dict(steps=0), "steps must be"),
        (dict(warmup_steps=0), "warmup_steps must be"),
        (dict(device="cuda"), "no CUDA GPU") if not torch.cuda.is_available() else (dict(device="tpu"), "unknown device"),
        (dict(device="nonsense"), "unknown device"),
        (dict(mean=(0.5,)), "one per channel"),
        (dict(std=(0, 1, 1)), "positive"),
        (dict(unknown_option=1), r"source 'fastdfkd' does not take 'unknown_option' \(it takes autocast_dtype, bn_momentum, "),
    ],
)
def test_bad_settings_are_explained(teacher, kwargs, message):
    with pytest.raises(FastDFKDError, match=message):
        make("fastdfkd", teacher, **kwargs)


@pytest.mark.parametrize("count", [0, -1])
def test_non_positive_sizes_are_refused(teacher, count):
    source = make("gaussian", teacher)
    with pytest.raises(FastDFKDError, match="positive integer"):
        source.synthetic_set(count)
    with pytest.raises(FastDFKDError, match="positive integer"):
        source.next_batch(count)


def test_teacher_problems_are_explained():
    from models import TupleOutput, make_teacher, nan_weights

    with pytest.raises(FastDFKDError, match="NaN or Inf"):
        get_source("fastdfkd", nan_weights(), SHAPE)
    with pytest.raises(FastDFKDError, match="cannot take inputs of shape"):
        get_source("fastdfkd", make_teacher(), (1, 32, 32))
    with pytest.raises(FastDFKDError, match="output_transform"):
        get_source("fastdfkd", TupleOutput(), SHAPE, task="classification")
    assert get_source("fastdfkd", TupleOutput(), SHAPE, **FAST).teacher.task.name == "generic"
    source = get_source("fastdfkd", TupleOutput(), SHAPE, output_transform=lambda out: out[0], **FAST)
    assert source.next_batch(4).inputs.shape == (4, *SHAPE)


def test_gaussian_needs_no_batchnorm():
    from models import no_batchnorm

    assert get_source("gaussian", no_batchnorm(), SHAPE).next_batch(4).inputs.shape == (4, *SHAPE)


def test_teacher_already_on_the_device_is_used_as_is(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, **FAST)
    assert source.teacher.model is teacher  # already on the CPU: used as is, never moved


def test_a_source_class_takes_a_teacher_and_refuses_a_bare_model(teacher):
    built = Teacher(teacher, SHAPE, device="cpu")
    assert FastDFKDSource(built, steps=2, warmup_tasks=1, latent_dim=32).teacher is built
    with pytest.raises(FastDFKDError, match="a source is built for a Teacher, not a TinyNet; use get_source"):
        FastDFKDSource(teacher)


@pytest.mark.parametrize("name", ["fastdfkd", "deepinversion"])
def test_max_shift_reaches_the_augmentation_and_a_negative_one_is_refused(teacher, name):
    options = FAST if name == "fastdfkd" else dict(steps=2, device="cpu")
    assert get_source(name, teacher, SHAPE, **options).settings()["shift"] == 4  # an eighth of 32 px
    still = get_source(name, teacher, SHAPE, shift=0, flip=False, **options)
    images = torch.rand(8, *SHAPE)
    assert still.settings()["shift"] == 0 and torch.equal(still.objective.augment(images, still.rng), images)
    with pytest.raises(FastDFKDError, match="shift must be 0"):
        get_source(name, teacher, SHAPE, shift=-1, **options)
