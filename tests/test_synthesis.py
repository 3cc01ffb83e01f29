"""The synthesis machinery: generator, augmentation, loss terms, BN momentum, meta updates."""

from __future__ import annotations

import contextlib
import copy
import functools
import math

import pytest
import torch
from conftest import FAST, SHAPE
from torch import nn

from fastdfkd_plugin import FastDFKDError, get_source
from fastdfkd_plugin.synthesis.augment import CropFlip, crop_flip
from fastdfkd_plugin.synthesis.generator import (
    COMPACT_COST_SHARE,
    COMPACT_MIN_CHANNELS,
    COMPACT_WIDTHS,
    LATENT_DIM,
    Generator,
    compact_generator,
)
from fastdfkd_plugin.synthesis.meta import BestStep, MetaSynthesizer, NonFiniteLoss
from fastdfkd_plugin.synthesis.objective import InversionObjective, LossWeights
from fastdfkd_plugin.synthesis.priors import BatchNormMatcher, ChannelStatistics
from fastdfkd_plugin.synthesis.registry import make_generator, make_prior
from fastdfkd_plugin.teacher.teacher import Teacher, forward_macs


@pytest.mark.parametrize("name", ["paper", "compact", "compact-subpixel"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (4, 40, 48), (3, 64, 64), (3, 224, 224), (3, 12, 12)])
def test_generators_match_input_shape_and_range(name, shape):
    generator = make_generator(name, shape, teacher_macs=10**7, latent_dim=16)
    pixels = generator(torch.randn(2, 16))
    assert pixels.shape == (2, *shape)
    assert 0 <= pixels.min() and pixels.max() <= 1


def test_paper_generator_is_the_papers_network_at_cifar_scale():
    generator = make_generator("paper", (3, 32, 32), teacher_macs=1, latent_dim=256)
    assert generator.init_hw == (8, 8) and generator.channels == [128, 128, 64]
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(2.3e6, rel=0.05)


@pytest.mark.parametrize("shape, small_teacher, large_teacher", [((3, 32, 32), 4e7, 2e9), ((3, 96, 96), 1e8, 2e9),
                                                                  ((3, 224, 224), 3e8, 4e9)])
def test_compact_generator_costs_a_quarter_of_the_teacher_and_widens_with_it(shape, small_teacher, large_teacher):
    small, large = (make_generator("compact", shape, int(macs), 256) for macs in (small_teacher, large_teacher))
    for generator, macs in ((small, small_teacher), (large, large_teacher)):
        assert forward_macs(generator.eval(), torch.zeros(1, 256)) <= COMPACT_COST_SHARE * macs
        assert all(a >= b for a, b in zip(generator.channels, generator.channels[1:]))  # halving, never widening
    assert large.channels[0] > small.channels[0]


def test_compact_generator_at_a_smaller_cost_share_is_narrower_and_within_it():
    shape, teacher_macs = (3, 32, 32), 4 * 10**7
    default = compact_generator(shape, teacher_macs)
    smaller = compact_generator(shape, teacher_macs, cost_share=COMPACT_COST_SHARE / 4)
    assert forward_macs(smaller.eval(), torch.zeros(1, LATENT_DIM)) <= COMPACT_COST_SHARE / 4 * teacher_macs
    assert smaller.channels[0] < default.channels[0]


def test_compact_generator_for_a_teacher_cheaper_than_any_width_is_the_narrowest():
    generator = make_generator("compact", (3, 96, 96), 10**6, 256)
    assert generator.channels == [COMPACT_WIDTHS[-1], COMPACT_MIN_CHANNELS, COMPACT_MIN_CHANNELS, COMPACT_MIN_CHANNELS]


def test_compact_subpixel_generator_runs_nothing_at_full_resolution_but_the_pixel_shuffle():
    generator = make_generator("compact-subpixel", (3, 64, 64), 10**8, 16)
    sizes = {}
    for module in generator.body:
        module.register_forward_hook(lambda m, i, o: sizes.setdefault(type(m).__name__, []).append(i[0].shape[-1]))
    generator(torch.randn(2, 16))
    assert max(sizes["Conv2d"]) == 32 and max(sizes["BatchNorm2d"]) == 32 and sizes["PixelShuffle"] == [32]


def test_unknown_generator_names_the_choices():
    with pytest.raises(FastDFKDError, match="unknown generator 'tiny'; choose one of compact, compact-subpixel, paper"):
        make_generator("tiny", (3, 32, 32), 10**7, 16)


def test_crop_flip_shifts_by_whole_pixels_and_passes_gradients():
    images = torch.zeros(64, 1, 8, 8)
    images[:, :, 3, 3] = 1
    images.requires_grad_()
    out = crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    rows, cols = torch.nonzero(out.detach()[:, 0] == 1, as_tuple=True)[1:]
    assert rows.min() >= 1 and rows.max() <= 5  # 3 ± 2
    assert len(set(cols.tolist())) > 2  # shifted and flipped positions differ per sample
    out.sum().backward()
    assert images.grad.abs().sum() > 0


def test_crop_flip_without_padding_is_identity_or_mirror():
    images = torch.rand(16, 3, 8, 8)
    out = crop_flip(images, torch.Generator().manual_seed(1), padding=0)
    for original, augmented in zip(images, out):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))


def test_crop_flip_without_flip_never_mirrors_and_draws_the_same_shifts():
    images = torch.rand(16, 3, 8, 8)
    assert torch.equal(crop_flip(images, torch.Generator().manual_seed(1), padding=0, flip=False), images)
    shifted = crop_flip(images, torch.Generator().manual_seed(2), padding=2, flip=False)
    mirrored = crop_flip(images, torch.Generator().manual_seed(2), padding=2)
    same = [torch.equal(plain, other) for plain, other in zip(shifted, mirrored)]
    assert all(equal or torch.equal(plain.flip(-1), other) for equal, plain, other in zip(same, shifted, mirrored))
    assert 0 < sum(same) < len(same)  # the same shifts; flip=True mirrors some of the images


# -- loss terms ---------------------------------------------------------------------------

def run_tasks(teacher, weights, labels, student=None, bn_momentum=0.9, tasks=2, adversarial=True):
    """Synthesise ``tasks`` batches with everything seeded; return the last batch's pixels."""
    rng = torch.Generator().manual_seed(0)
    built = Teacher(teacher, SHAPE, device="cpu")
    objective = InversionObjective(built, make_prior("auto", built, bn_momentum), rng, weights, CropFlip())
    objective.student = student
    torch.manual_seed(0)
    synthesizer = MetaSynthesizer(Generator(SHAPE, [16, 16, 8], latent_dim=16), objective, rng, steps=2)
    with objective.attached():
        for _ in range(tasks):
            pixels = synthesizer.task(labels, adversarial=adversarial).pixels
    return pixels


@pytest.fixture
def student(teacher):
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.head.weight.add_(0.05 * torch.randn_like(student.head.weight))
    return student


LABELS = torch.arange(8) % 10
OTHER_LABELS = (torch.arange(8) + 3) % 10


def test_bn_term_moves_the_output_only_when_weighted(teacher):
    with_bn = run_tasks(teacher, LossWeights(prior=10, oh=0.5, adv=0), LABELS)
    without_bn = run_tasks(teacher, LossWeights(prior=0, oh=0.5, adv=0), LABELS)
    assert not torch.equal(with_bn, without_bn)
    # With w_bn = 0, BN-only settings (the momentum) cannot matter.
    assert torch.equal(without_bn, run_tasks(teacher, LossWeights(prior=0, oh=0.5, adv=0), LABELS, bn_momentum=0.0))


def test_cross_entropy_term_moves_the_output_only_when_weighted(teacher):
    weighted = LossWeights(prior=10, oh=0.5, adv=0)
    assert not torch.equal(run_tasks(teacher, weighted, LABELS), run_tasks(teacher, weighted, OTHER_LABELS))
    unweighted = LossWeights(prior=10, oh=0, adv=0)
    assert torch.equal(run_tasks(teacher, unweighted, LABELS), run_tasks(teacher, unweighted, OTHER_LABELS))


def test_adversarial_term_moves_the_output_only_when_weighted(teacher, student):
    weighted = LossWeights(prior=10, oh=0.5, adv=1.0)
    assert not torch.equal(run_tasks(teacher, weighted, LABELS, student), run_tasks(teacher, weighted, LABELS))
    unweighted = LossWeights(prior=10, oh=0.5, adv=0)
    assert torch.equal(run_tasks(teacher, unweighted, LABELS, student), run_tasks(teacher, unweighted, LABELS))
    # During warm-up (adversarial=False) the student has no effect either.
    assert torch.equal(run_tasks(teacher, weighted, LABELS, student, adversarial=False), run_tasks(teacher, weighted, LABELS))


def test_adversarial_term_counts_only_samples_where_teacher_and_student_agree(teacher):
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # a student that agrees with the teacher on some inputs only
        student.head.weight.add_(0.2 * torch.randn(student.head.weight.shape, generator=torch.Generator().manual_seed(1)))
    contrast = torch.linspace(0.2, 3, 32).view(32, 1, 1, 1)
    pixels = torch.rand(32, *SHAPE, generator=torch.Generator().manual_seed(0)) * contrast - contrast / 2
    built = Teacher(teacher, SHAPE, device="cpu")
    objective = InversionObjective(built, make_prior("auto", built, 0.9), torch.Generator(), LossWeights(prior=0, oh=0, adv=1))
    objective.student = student
    with objective.attached():
        loss = objective(pixels, LABELS.repeat(4))
    t, s = teacher(pixels), student(pixels)
    agree = t.argmax(1) == s.argmax(1)
    kl = (t.softmax(1) * (t.log_softmax(1) - s.log_softmax(1))).sum(1)
    assert 0 < agree.sum() < 32  # the mask really selects
    assert loss.item() == pytest.approx(-(kl * agree).sum().item() / 32, rel=1e-4)
    assert loss.item() != pytest.approx(-kl.mean().item(), rel=1e-3)


def test_bn_momentum_blends_current_and_average_statistics():
    layer = nn.BatchNorm2d(2).eval()
    layer.running_mean.fill_(0.5)
    matcher = BatchNormMatcher(layer, momentum=0.9)
    x1, x2 = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3) + 1
    stats = lambda x: (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))  # noqa: E731
    distance = lambda m, v: torch.norm(m - 0.5) + torch.norm(v - 1)  # noqa: E731

    matcher(layer, (x1,), None)
    assert matcher.loss.item() == pytest.approx(distance(*stats(x1)).item(), rel=1e-5)
    matcher.update_average(matcher.current)
    matcher(layer, (x2,), None)
    (m1, v1), (m2, v2) = stats(x1), stats(x2)
    assert matcher.loss.item() == pytest.approx(distance(0.1 * m2 + 0.9 * m1, 0.1 * v2 + 0.9 * v1).item(), rel=1e-5)
    matcher.update_average(matcher.current)
    assert torch.allclose(matcher.average[0], 0.9 * m1 + 0.1 * m2)
    assert torch.allclose(matcher.average[1], 0.9 * v1 + 0.1 * v2)


# -- meta updates on a toy problem, against a hand computation ---------------------------------

class ScalarGenerator(nn.Module):
    """x = θ for every sample; z stays in the graph with zero gradient."""

    latent_dim = 1

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta * torch.ones(len(z), 1, dtype=torch.float64) + 0 * z


class QuadraticObjective:
    """L(x) = (mean(x) − c)², with the statistics interface the synthesizer calls."""

    def __init__(self, target: float) -> None:
        self.target = target

    def __call__(self, pixels, labels, adversarial=True):
        return (pixels.mean() - self.target) ** 2

    def batch_statistics(self):
        return []

    def update_momentum(self, stats):
        pass

    def autocast(self, device):
        return contextlib.nullcontext()


def hand_adam(theta: float, target: float, lr: float, steps: int):
    """k Adam steps (betas 0.5, 0.999) on (θ − c)², written out: returns gradients, losses, θ_k."""
    m = v = 0.0
    grads, losses = [], []
    for t in range(1, steps + 1):
        losses.append((theta - target) ** 2)
        g = 2 * (theta - target)
        grads.append(g)
        m = 0.5 * m + 0.5 * g
        v = 0.999 * v + 0.001 * g * g
        theta -= lr * (m / (1 - 0.5**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return grads, losses, theta


@pytest.mark.parametrize("meta_update", ["fomaml", "reptile"])
def test_meta_update_matches_hand_computation(meta_update):
    theta0, target, lr, k = 0.3, 1.7, 0.1, 4
    generator = ScalarGenerator(theta0)
    meta_sgd = torch.optim.SGD(generator.parameters(), lr=1.0)  # θ ← θ − meta gradient
    rng = torch.Generator().manual_seed(0)
    synthesizer = MetaSynthesizer(
        generator, QuadraticObjective(target), rng, steps=k, lr_g=lr, lr_z=lr, meta_update=meta_update, meta_optimizer=meta_sgd
    )
    result = synthesizer.task(torch.zeros(4, dtype=torch.long))

    grads, losses, theta_k = hand_adam(theta0, target, lr, k)
    expected = theta0 - sum(grads) if meta_update == "fomaml" else theta0 - (theta0 - theta_k)
    assert generator.theta.item() == pytest.approx(expected, abs=1e-9)
    assert result.loss == pytest.approx(min(losses), abs=1e-12)  # best of k
    assert synthesizer.tasks_done == 1


def test_default_learning_rates_follow_the_paper():
    from fastdfkd_plugin.synthesis.meta import paper_learning_rates

    assert paper_learning_rates(2) == (5e-3, 0.015)
    assert paper_learning_rates(5) == (3e-3, 0.01)
    assert paper_learning_rates(10) == (2e-3, 0.01)


def test_channel_statistics_match_torch_and_their_gradient_is_exact():
    x = torch.randn(6, 3, 5, 7) * 3 + 2
    mean, var = ChannelStatistics.apply(x)
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(var, x.var((0, 2, 3), unbiased=False))
    assert torch.autograd.gradcheck(ChannelStatistics.apply, (torch.randn(4, 3, 5, 5, dtype=torch.double, requires_grad=True),))
    assert ChannelStatistics.apply(torch.randn(4, 3, 5, dtype=torch.bfloat16))[1].dtype == torch.float32
    for other in (torch.randn(8, 3), x.contiguous(memory_format=torch.channels_last)):  # BatchNorm1d input, NHWC layout
        mean, var = ChannelStatistics.apply(other)
        dims = [0, *range(2, other.dim())]
        torch.testing.assert_close(mean, other.mean(dims))
        torch.testing.assert_close(var, other.var(dims, unbiased=False))


# -- the best batch and finiteness, kept on the device -----------------------------------------

class RecordingObjective:
    """The real objective, recording each step's loss, pixels and prior statistics as a host loop would see them."""

    def __init__(self, inner: InversionObjective) -> None:
        self.inner = inner
        self.steps: list[tuple[float, torch.Tensor, list]] = []

    def __call__(self, pixels, labels, adversarial=True):
        loss = self.inner(pixels, labels, adversarial)
        self.steps.append((loss.item(), pixels.detach().clone(), self.inner.batch_statistics()))
        return loss

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_task_hands_out_the_first_lowest_loss_batch_and_its_statistics(teacher):
    built = Teacher(teacher, SHAPE, device="cpu")
    rng = torch.Generator().manual_seed(0)
    objective = InversionObjective(built, make_prior("batchnorm", built, 0.9), rng, None, CropFlip())
    recording = RecordingObjective(objective)
    torch.manual_seed(0)
    synthesizer = MetaSynthesizer(Generator(SHAPE, [16, 16, 8], latent_dim=16), recording, rng, steps=6, lr_g=3.0, lr_z=3.0)
    statistics = []
    objective.prior.update_momentum = statistics.append  # what the task folds into the momentum average
    with objective.attached():
        result = synthesizer.task(LABELS)
    losses = [loss for loss, _, _ in recording.steps]
    best = min(range(len(losses)), key=lambda i: (losses[i], i))  # the first of the lowest, as `value < best` kept it
    assert 0 < best < len(losses) - 1  # neither the first nor the last step (the large steps overshoot): a real choice
    loss, pixels, layers = recording.steps[best]
    assert result.loss == loss and torch.equal(result.pixels, pixels)
    assert len(statistics) == 1 and all(torch.equal(a, b) for got, want in zip(statistics[0], layers) for a, b in zip(got, want))


def test_best_step_keeps_the_first_of_equal_losses_and_never_a_nan():
    def step(loss, tag):
        return BestStep.of(torch.tensor(loss), torch.full((2, 3), float(tag)), [(torch.full((4,), float(tag)), None), None])

    best = step(3.0, 0)
    for loss, tag in ((1.0, 1), (1.0, 2), (2.0, 3)):
        best = best.keep_better(step(loss, tag))
    loss, statistics = best.read()
    assert loss == 1.0 and torch.equal(best.pixels, torch.full((2, 3), 1.0))
    assert torch.equal(statistics[0][0], torch.full((4,), 1.0)) and statistics[0][1] is None and statistics[1] is None
    with pytest.raises(NonFiniteLoss, match="inversion loss became nan"):
        best.keep_better(step(float("nan"), 4)).keep_better(step(0.5, 5)).read()


class FailingObjective(QuadraticObjective):
    """The quadratic loss, infinite from the second step on."""

    def __init__(self, target: float) -> None:
        super().__init__(target)
        self.calls = 0

    def __call__(self, pixels, labels, adversarial=True):
        self.calls += 1
        loss = super().__call__(pixels, labels, adversarial)
        return loss if self.calls < 2 else loss * float("inf")


def test_a_non_finite_loss_raises_once_per_task_and_leaves_the_meta_generator_alone():
    generator = ScalarGenerator(0.3)
    synthesizer = MetaSynthesizer(generator, FailingObjective(1.7), torch.Generator().manual_seed(0), steps=4, lr_g=0.1, lr_z=0.1)
    with pytest.raises(NonFiniteLoss, match="inversion loss became inf"):
        synthesizer.task(torch.zeros(4, dtype=torch.long))
    assert generator.theta.item() == 0.3 and synthesizer.tasks_done == 0


def test_compiled_step_captures_the_priors_without_graph_breaks_and_makes_finite_batches(teacher, monkeypatch):
    import torch._dynamo  # imported here: it takes seconds

    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this Python/platform")
    # aot_eager: Dynamo's capture and AOTAutograd's backward as compile=True runs them, without inductor's minutes of C++.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    source = get_source("fastdfkd", teacher, SHAPE, **{**FAST, "compile": True})
    batch = source.next_batch(8)
    assert batch.inputs.shape == (8, *SHAPE) and torch.isfinite(batch.inputs).all()
    assert 0 <= batch.inputs.min() and batch.inputs.max() <= 1
    assert not torch._dynamo.utils.counters["graph_break"]
    assert all(average is not None for average in source.objective.momentum_state())  # statistics came out of the graph
