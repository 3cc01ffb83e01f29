"""Inversion priors: chosen from the teacher's layers, overridable by name, pluggable; BN-free teachers accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST, MODELS, SHAPE, priors_built_by, registered
from conftest import run_cli as run
from models import make_teacher, no_batchnorm, tiny_vit

from fastdfkd_plugin import FastDFKDError, LossWeights, Teacher, get_source, hookimpl
from fastdfkd_plugin.adapters.generic import calibration_from_args
from fastdfkd_plugin.cli import options as options_module
from fastdfkd_plugin.cli.main import build_parser
from fastdfkd_plugin.cli.options import load_teacher
from fastdfkd_plugin.sources.calibration import WIDE_GRID_GENERIC_WEIGHT, calibration_source_options, synthetic_set
from fastdfkd_plugin.evaluation.quality import set_quality
from fastdfkd_plugin.runtime.io import load_npz
from fastdfkd_plugin.synthesis.priors import GenericPrior, input_statistics_loss, patch_similarity_entropy, total_variation
from fastdfkd_plugin.synthesis.registry import prior_registry
from fastdfkd_plugin.teacher.attention import attention_modules
from fastdfkd_plugin.training.reestimate import reestimate_batchnorm

CLI_ARGS = ["--input-shape", "3,32,32", "--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8",
            "--device", "cpu", "-q", "--no-cache"]


@pytest.mark.parametrize("model, prior", [(make_teacher, "batchnorm"), (tiny_vit, "transformer"), (no_batchnorm, "generic")])
@pytest.mark.parametrize("source", ["fastdfkd", "deepinversion"])
def test_auto_picks_the_prior_from_the_layers_and_synthesises(model, prior, source):
    options = FAST if source == "fastdfkd" else dict(steps=3, device="cpu")
    synthesiser = get_source(source, model(), SHAPE, **options)
    batch = synthesiser.next_batch(4).inputs
    assert synthesiser.settings()["prior"] == prior
    assert batch.shape == (4, *SHAPE) and torch.isfinite(batch).all()


def test_a_named_prior_overrides_auto_and_a_wrong_one_is_refused():
    source = get_source("fastdfkd", make_teacher(), SHAPE, prior="generic", **FAST)
    assert source.settings()["prior"] == "generic"
    with pytest.raises(FastDFKDError, match="prior 'batchnorm' does not apply"):
        get_source("fastdfkd", no_batchnorm(), SHAPE, prior="batchnorm", **FAST)
    with pytest.raises(FastDFKDError, match="unknown prior 'nope'"):
        get_source("fastdfkd", make_teacher(), SHAPE, prior="nope", **FAST)


@pytest.mark.parametrize("model, prior", [(make_teacher, "generic"), (tiny_vit, "transformer"), (no_batchnorm, "generic")])
def test_auto_calibration_picks_like_auto_but_never_the_batchnorm_prior(model, prior):
    source = get_source("fastdfkd", model(), SHAPE, prior="auto-calibration", **FAST)
    assert source.settings()["prior"] == prior


@pytest.mark.parametrize("bits, prior", [(4, "auto-calibration"), (2, "auto-calibration"), (8, None)])
def test_calibration_sets_for_low_bit_activations_default_to_auto_calibration(bits, prior):
    teacher = Teacher(make_teacher(), SHAPE)
    assert calibration_source_options("fastdfkd", bits, teacher).get("prior") == prior
    assert calibration_source_options("fastdfkd", bits, teacher, {"prior": "batchnorm"}) == {"prior": "batchnorm"}  # the user's wins
    assert calibration_source_options("gaussian", bits, teacher) == {}  # noise takes no prior


def test_a_script_gets_the_set_quantize_onnx_calibrates_its_activation_bits_on(monkeypatch, tmp_path):
    from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree
    from fastdfkd_plugin.sources.base import DataSource

    teacher = Teacher(make_teacher(), SHAPE)
    options = dict(steps=2, warmup_tasks=2, latent_dim=32, cache=False)
    four_bit = synthetic_set(teacher, 8, 4, activation_bits=4, **options)
    assert four_bit.metadata["settings"]["prior"] == "generic"  # auto-calibration on a BatchNorm teacher
    synthesised = []
    original = DataSource.synthetic_set
    monkeypatch.setattr(DataSource, "synthetic_set", lambda self, *a, **k: synthesised.append(original(self, *a, **k)) or synthesised[-1])
    quantize_datafree(teacher, tmp_path / "q.onnx", num_samples=8, batch_size=4, source_options=options,
                      weight_type="int4", activation_type="uint4", min_agreement=0)
    untimed = [{key: value for key, value in made.metadata["settings"].items() if not key.endswith("_seconds")}
               for made in (synthesised[0], four_bit)]
    assert untimed[0] == untimed[1]
    assert torch.equal(synthesised[0].inputs, four_bit.inputs)  # bit for bit the set quantize-onnx used
    default = synthetic_set(teacher, 8, 4, **options)  # no bits: the source's own prior, as get_source gives it
    assert default.metadata["settings"]["prior"] == "batchnorm"
    assert torch.equal(default.inputs, get_source("fastdfkd", teacher, **options).synthetic_set(8, 4).inputs)
    assert synthetic_set(teacher, 8, 4, activation_bits=4, prior="batchnorm", **options).metadata["settings"]["prior"] == "batchnorm"


@pytest.mark.parametrize("extra, prior", [((), "batchnorm"), (("--activation-bits", "4"), "generic"),
                                          (("--activation-bits", "8"), "batchnorm"),
                                          (("--activation-bits", "4", "--prior", "batchnorm"), "batchnorm")])
def test_synthesize_activation_bits_picks_the_calibration_prior(capsys, tmp_path, extra, prior):
    out = tmp_path / "set.npz"
    code, _, err = run(capsys, "synthesize", "--model", f"{MODELS}:tiny", "--num-samples", "4", "--out", str(out), *CLI_ARGS, *extra)
    assert code == 0, err
    assert load_npz(out)[2]["settings"]["prior"] == prior


@pytest.mark.parametrize("bits, weights", [(8, LossWeights(prior=WIDE_GRID_GENERIC_WEIGHT)), (16, LossWeights(prior=WIDE_GRID_GENERIC_WEIGHT)),
                                           (4, None)])
def test_wide_activation_grids_weaken_the_generic_prior_and_nothing_else(bits, weights):
    bn_free, with_batchnorm = Teacher(no_batchnorm(), SHAPE), Teacher(make_teacher(), SHAPE)
    assert calibration_source_options("fastdfkd", bits, bn_free).get("loss_weights") == weights
    assert "loss_weights" not in calibration_source_options("fastdfkd", bits, with_batchnorm)  # the BatchNorm prior keeps its weight
    assert "loss_weights" not in calibration_source_options("fastdfkd", bits, Teacher(tiny_vit(), SHAPE))  # so does the transformer's
    given = LossWeights(prior=5.0, oh=1.0)
    assert calibration_source_options("fastdfkd", bits, bn_free, {"loss_weights": given})["loss_weights"] == given  # the user's wins
    if bits > 4:  # a partial LossWeights keeps what the user set
        assert calibration_source_options("fastdfkd", bits, bn_free, {"loss_weights": LossWeights(oh=1.0)})["loss_weights"] == \
            LossWeights(prior=WIDE_GRID_GENERIC_WEIGHT, oh=1.0)


@pytest.mark.parametrize("model, bits, prior", [("tiny", "4", "generic ×3"), ("tiny", "8", "batchnorm ×10"),
                                                ("no_batchnorm", "4", "generic ×3"), ("no_batchnorm", "8", "generic ×0.3")])
def test_quantize_brevitas_synthesises_with_the_prior_its_activation_bits_call_for(model, bits, prior, monkeypatch):
    priors = priors_built_by(monkeypatch, options_module)
    args = build_parser().parse_args(["quantize-brevitas", "--model", f"{MODELS}:{model}", "--out", "q.onnx", "--activation-bits", bits,
                                      "--num-samples", "4", *CLI_ARGS])
    calibration_from_args(args, load_teacher(args), int(bits))
    assert priors == [prior]


class Brightness(GenericPrior):
    """Mean pixel brightness (a test plugin)."""

    name = "brightness"
    rank = 100

    def loss(self, inputs):
        return -inputs.mean()


class PriorPlugin:
    @hookimpl
    def fastdfkd_register_priors(self, register):
        register(Brightness)


@pytest.fixture
def prior_plugin():
    with registered(PriorPlugin(), "prior-plugin") as plugin:
        yield plugin


def test_a_plugin_prior_is_registered_like_the_builtins_and_auto_respects_its_rank(prior_plugin):
    assert {"batchnorm", "transformer", "generic", "brightness"} <= set(prior_registry())
    source = get_source("fastdfkd", make_teacher(), SHAPE, **FAST)
    assert source.settings()["prior"] == "brightness"


def test_a_plugin_prior_that_does_not_suit_calibration_is_skipped_by_auto_calibration(prior_plugin, monkeypatch):
    monkeypatch.setattr(Brightness, "suits_calibration", False)
    assert get_source("fastdfkd", no_batchnorm(), SHAPE, **FAST).settings()["prior"] == "brightness"
    assert get_source("fastdfkd", no_batchnorm(), SHAPE, prior="auto-calibration", **FAST).settings()["prior"] == "generic"


def test_two_priors_with_one_name_are_refused(prior_plugin):
    class Twin:
        @hookimpl
        def fastdfkd_register_priors(self, register):
            register(Brightness)

    with registered(Twin(), "twin"), pytest.raises(FastDFKDError, match="prior name 'brightness' is registered by both"):
        prior_registry()


def test_patch_similarity_entropy_is_low_for_identical_patches_and_differentiable():
    same = torch.ones(2, 16, 8).requires_grad_()
    varied = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0)).requires_grad_()
    assert patch_similarity_entropy(same).item() < 0.1 < 2.5 < patch_similarity_entropy(varied).item()  # log 32 = 3.47 at most
    patch_similarity_entropy(varied).backward()
    assert varied.grad.abs().sum() > 0


def test_image_priors_are_zero_exactly_where_they_should_be():
    flat = torch.zeros(2, 3, 8, 8)
    assert total_variation(flat).item() == 0 and total_variation(torch.randn(2, 3, 8, 8)).item() > 0
    standard = torch.randn(4096, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert input_statistics_loss(standard).item() < 0.02
    assert input_statistics_loss(standard + 1).item() == pytest.approx(3**0.5, rel=0.02)


def test_the_transformer_prior_pushes_patch_diversity_up():
    """Few DeepInversion steps with the prior raise the attention outputs' patch-similarity entropy more than without it."""
    teacher = Teacher(tiny_vit(), SHAPE, device="cpu")
    with_prior = get_source("deepinversion", teacher, steps=30, lr=0.05, seed=1).next_batch(8).inputs
    without = get_source("deepinversion", teacher, steps=30, lr=0.05, seed=1, prior="generic").next_batch(8).inputs
    outputs = []
    handle = attention_modules(teacher.model)[0].register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        teacher.model(with_prior), teacher.model(without)
    handle.remove()
    assert patch_similarity_entropy(outputs[0]) > patch_similarity_entropy(outputs[1])


def test_set_quality_of_a_teacher_without_batchnorm_has_no_bn_distance():
    quality = set_quality(Teacher(tiny_vit(), SHAPE, device="cpu"), torch.randn(8, *SHAPE))
    assert quality.bn_distance is None and 0.1 <= quality.confidence <= 1 and sum(quality.class_histogram) == 8


def test_batchnorm_reestimation_leaves_a_model_without_batchnorm_alone():
    model = tiny_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert reestimate_batchnorm(model, [torch.randn(4, *SHAPE)]) is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cli_accepts_a_vision_transformer_in_every_pipeline(capsys, tmp_path):
    vit = f"{MODELS}:tiny_vit"
    calib = tmp_path / "calib.npz"
    code, out, err = run(capsys, "synthesize", "--model", vit, *CLI_ARGS, "--num-samples", "16", "--out", str(calib))
    assert code == 0, err
    with np.load(calib) as data:
        assert data["inputs"].shape == (16, *SHAPE)
    for command, extra in [
        ("export-onnx", ["--out", str(tmp_path / "vit.onnx")]),
        ("quantize-onnx", ["--calibration", str(calib), "--per-channel", "--op-types", "MatMul,Gemm",
                           "--out", str(tmp_path / "vit-int8.onnx")]),
        ("quantize-torch", ["--calibration", str(calib), "--out", str(tmp_path / "vit-int8.pt2")]),
        ("prune", ["--speed-up", "1.1", "--recovery-steps", "2", "--out", str(tmp_path / "vit-pruned.pt")]),
        ("distill", ["--student", f"{MODELS}:student", "--kd-steps", "2", "--kd-batch-size", "8", "--eval-samples", "8",
                     "--bank-size", "16", "--out", str(tmp_path / "student.pt")]),
    ]:
        flag = "--teacher" if command == "distill" else "--model"
        code, out, err = run(capsys, command, flag, vit, *CLI_ARGS, *extra)
        assert code == 0, f"{command}: {err}"
        assert (tmp_path / extra[-1]).exists()
    assert quantized_op_types(tmp_path / "vit-int8.onnx") <= {"MatMul", "Gemm", "Add", "Mul", "Transpose"}  # not Conv, LayerNorm


def quantized_op_types(path) -> set[str]:
    """The op types that read a dequantized tensor in a QDQ model."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {name for node in graph.node if node.op_type == "DequantizeLinear" for name in node.output}
    return {node.op_type for node in graph.node if dequantized.intersection(node.input)}


def test_cli_lists_priors_and_refuses_a_prior_that_does_not_apply(capsys, tmp_path):
    code, out, _ = run(capsys, "priors")
    assert code == 0 and out.index("batchnorm") < out.index("transformer") < out.index("generic")
    code, _, err = run(capsys, "synthesize", "--model", f"{MODELS}:no_batchnorm", *CLI_ARGS, "--prior", "batchnorm",
                       "--num-samples", "4", "--out", str(tmp_path / "s.npz"))
    assert code == 2 and "does not apply" in err and "Traceback" not in err
