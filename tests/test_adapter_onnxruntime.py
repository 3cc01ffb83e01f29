"""ONNX Runtime adapter: calibration reader, one-call quantization, the quantize-onnx command.

Everything runs the real onnx / onnxruntime packages on the CPU execution provider.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import (
    FAST,
    MODELS,
    SHAPE,
    onnx_runtime_missing,
    priors_built_by,
    quantized_weights,
    run_cli,
    run_session,
    state_hash,
)
from models import make_teacher, no_batchnorm, tiny_vit
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from torch import nn
from torch.utils.data import DataLoader

from fastdfkd_plugin import FastDFKDError, get_source
from fastdfkd_plugin.adapters import onnxruntime as ort_adapter
from fastdfkd_plugin.adapters.generic import calibration_data
from fastdfkd_plugin.adapters.onnx_export import export_onnx, load_onnx_test_data
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader, quantize_datafree, synthesize_to_disk
from fastdfkd_plugin.adapters.range_groups import group_batch, group_bounds
from fastdfkd_plugin.cli.main import main
from fastdfkd_plugin.sources.base import DataSource
from fastdfkd_plugin.teacher.onnx.graph import onnx_input

# -- reader ----------------------------------------------------------------------------------------

def test_reader_uses_the_graph_input_name_and_supports_rewind_len_and_range(onnx_file):
    data = np.broadcast_to(np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1), (5, *SHAPE))  # sample i is all i
    reader = calibration_reader(onnx_file, data, batch_size=2)
    assert onnx_input(onnx_file).name == "input" and len(reader) == 3
    assert [reader.get_next()["input"].shape[0] for _ in range(3)] == [2, 2, 1] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["input"][0, 0, 0, 0] == 0
    reader.set_range(1, 2)
    assert reader.get_next()["input"][0, 0, 0, 0] == 2 and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["input"][0, 0, 0, 0] == 2


def test_reader_takes_every_kind_of_data_and_rebatches_for_a_fixed_batch_graph(teacher, synthetic, tmp_path):
    fixed = tmp_path / "batch3.onnx"
    torch.onnx.export(teacher, (torch.zeros(3, *SHAPE),), str(fixed), input_names=["x"], dynamo=False)  # batch fixed at 3
    synthetic.save(str(tmp_path / "set.npz"))
    source = get_source("gaussian", teacher, SHAPE, device="cpu")
    kinds = {"set": synthetic, "npz path": tmp_path / "set.npz", "tensor": synthetic.inputs,
             "calibration data": calibration_data(synthetic), "loader": DataLoader(synthetic, batch_size=5),
             "batches": list(synthetic.batches())}
    for name, data in kinds.items():
        reader = calibration_reader(fixed, data)
        sizes = [len(batch["x"]) for batch in iter(reader.get_next, None)]
        assert sizes == [3] * 10, name  # 32 samples: ten whole batches of 3, the last 2 left out
    assert len(calibration_reader(fixed, source, num_samples=6)) == 2
    with pytest.raises(FastDFKDError, match="endless; pass num_samples"):
        calibration_reader(fixed, source)
    with pytest.raises(FastDFKDError, match=r"takes input 'x' of shape \[3,3,32,32\], which does not fit"):
        calibration_reader(fixed, torch.zeros(4, 3, 16, 16))


def test_strided_calibration_gives_the_same_ranges_as_plain_calibration(onnx_file, synthetic, tmp_path):
    def quantize(out, extra):
        quantize_static(str(onnx_file), str(out), calibration_reader(onnx_file, synthetic), quant_format=QuantFormat.QDQ,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
        return run_session(out, synthetic.inputs.numpy())

    plain = quantize(tmp_path / "plain.onnx", {})
    strided = quantize(tmp_path / "strided.onnx", {"CalibStridedMinMax": 2})
    assert np.allclose(plain, strided, atol=1e-5)  # MinMax over all batches, in two strides


def test_readers_share_one_class(onnx_file, synthetic):
    assert type(calibration_reader(onnx_file, synthetic)) is type(calibration_reader(onnx_file, synthetic))


def test_large_sets_stream_from_disk(teacher, onnx_file, tmp_path):
    source = get_source("gaussian", teacher, SHAPE, device="cpu")
    inputs = synthesize_to_disk(source, 20, 8, tmp_path / "calib.npy")
    assert isinstance(inputs, np.memmap) and inputs.shape == (20, *SHAPE)
    reader = calibration_reader(onnx_file, tmp_path / "calib.npy", batch_size=8)
    assert sum(1 for _ in iter(reader.get_next, None)) == 3


def test_quantize_datafree_spills_large_sets_to_disk(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(ort_adapter, "IN_MEMORY_LIMIT_BYTES", 1024)  # every set counts as large
    spilled = []
    real = ort_adapter.synthesize_to_disk
    monkeypatch.setattr(ort_adapter, "synthesize_to_disk", lambda *a: spilled.append(a[-1]) or real(*a))
    report = quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, source="gaussian", num_samples=16,
                               batch_size=8, device="cpu")
    assert spilled and spilled[0].suffix == ".npy" and report.calibration_samples == 16
    assert (tmp_path / "q.onnx").exists()


# -- one call -------------------------------------------------------------------------------------

def test_too_few_samples_for_a_fixed_batch_graph_are_refused_before_any_synthesis(teacher, tmp_path, monkeypatch):
    fixed = tmp_path / "batch8.onnx"
    torch.onnx.export(teacher, (torch.zeros(8, *SHAPE),), str(fixed), input_names=["x"], dynamo=False)
    asked = []
    monkeypatch.setattr(DataSource, "next_batch", lambda self, size: asked.append(size))
    with pytest.raises(FastDFKDError, match="takes batches of exactly 8 inputs, but only 4 were given"):
        quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, onnx_model=fixed, num_samples=4, device="cpu",
                          source_options={"steps": 1, "warmup_tasks": 1, "latent_dim": 32})
    assert asked == [] and not (tmp_path / "q.onnx").exists()


def test_the_memory_plan_sizes_synthesis_and_calibration_and_a_fitting_batch_changes_nothing(teacher, tmp_path):
    """With room to spare the plan keeps the batch asked for, so the quantized graph is byte for byte the unplanned one."""
    common = dict(input_shape=SHAPE, num_samples=16, batch_size=8, device="cpu", evaluate=False,
                  source_options={"steps": 1, "warmup_tasks": 1, "latent_dim": 32})
    quantize_datafree(teacher, tmp_path / "planned.onnx", memory_budget=8 * 2**30, **common)
    quantize_datafree(teacher, tmp_path / "unplanned.onnx", memory_plan=False, **common)
    assert (tmp_path / "planned.onnx").read_bytes() == (tmp_path / "unplanned.onnx").read_bytes()


def test_the_closing_estimate_is_made_on_the_default_held_out_set_whatever_the_synthesis_batch(teacher, tmp_path, monkeypatch):
    """A small --batch-size (or a plan that lowers it) must not change which held-out set the estimate is made on."""
    from fastdfkd_plugin.evaluation import fidelity as fidelity_module

    made = []
    real = fidelity_module.held_out_set
    monkeypatch.setattr(fidelity_module, "held_out_set", lambda *a, **kw: made.append(kw["batch_size"]) or real(*a, **kw))
    report = quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, num_samples=16, batch_size=4, device="cpu",
                               held_out_samples=16, source_options={"steps": 1, "warmup_tasks": 1, "latent_dim": 32})
    assert made == [fidelity_module.HELD_OUT_BATCH] and report.fidelity.samples == 16


def test_quantize_datafree_end_to_end_keeps_outputs_close_and_the_teacher_intact(teacher, tmp_path):
    before = state_hash(teacher)
    report = quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, num_samples=32, batch_size=8,
                               source_options={"steps": 2, "warmup_tasks": 2, "latent_dim": 32}, device="cpu",
                               per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    assert report.calibration_samples == 32 and report.agreement.top1_agreement == 100.0
    assert report.options["calibration_providers"] == "['CPUExecutionProvider']"
    probe = get_source("fastdfkd", teacher, SHAPE, seed=5, **FAST).synthetic_set(64, 64).inputs
    quantized = run_session(tmp_path / "q.onnx", probe.numpy())
    with torch.no_grad():
        reference = teacher(probe).numpy()
    assert (quantized.argmax(1) == reference.argmax(1)).mean() > 0.8
    assert state_hash(teacher) == before


def test_quantize_datafree_synthesises_each_activation_width_with_its_calibration_prior(teacher, tmp_path, monkeypatch):
    priors = priors_built_by(monkeypatch, ort_adapter)
    for model, activation_type, options in ((teacher, "uint4", {}), (teacher, "uint8", {}), (teacher, "uint4", {"prior": "batchnorm"}),
                                            (no_batchnorm(), "uint8", {}), (no_batchnorm(), "uint4", {})):
        quantize_datafree(model, tmp_path / "q.onnx", input_shape=SHAPE, num_samples=8, batch_size=8, preprocess=False,
                          source_options={"steps": 2, "warmup_tasks": 2, "latent_dim": 32, **options}, device="cpu",
                          weight_type="int4" if activation_type == "uint4" else "int8", activation_type=activation_type,
                          evaluate=False)  # the estimate's held-out source would add its own prior to the list
    assert priors == ["generic ×3", "batchnorm ×10", "batchnorm ×10", "generic ×0.3", "generic ×3"]


def test_options_pass_through_to_quantize_static(teacher, synthetic, tmp_path, monkeypatch):
    import onnxruntime.quantization as q

    seen = {}
    real = q.quantize_static

    def spy(model_in, model_out, reader, **kwargs):
        seen.update(kwargs)
        return real(model_in, model_out, reader, **kwargs)

    monkeypatch.setattr(q, "quantize_static", spy)
    quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, calibration=synthetic, preprocess=False,
                      quant_format=QuantFormat.QOperator, per_channel=False, weight_type=QuantType.QUInt8,
                      activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.Percentile,
                      nodes_to_exclude=["/head/Gemm"], extra_options={"CalibPercentile": 99.9})
    assert seen["quant_format"] == QuantFormat.QOperator and seen["calibrate_method"] == CalibrationMethod.Percentile
    assert seen["nodes_to_exclude"] == ["/head/Gemm"] and seen["extra_options"] == {"CalibPercentile": 99.9}
    assert (tmp_path / "q.onnx").exists()


def test_minmax_ranges_are_the_mean_of_each_groups_extremes_whatever_the_batch(onnx_file, tmp_path):
    """A synthetic set's extremes grow with its size, the mean of fixed-size groups' extremes does not (docs/onnxruntime.md)."""
    inputs = np.random.default_rng(0).normal(size=(32, *SHAPE)).astype(np.float32)
    inputs[3] *= 10  # one outlier, in the first of four groups of 8
    groups = inputs.reshape(4, -1)
    name = onnx_input(onnx_file).name

    def input_scale(path):
        model = onnx.load(str(path))
        initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
        node = next(node for node in model.graph.node if node.op_type == "QuantizeLinear" and node.input[0] == name)
        return float(initializers[node.input[1]])

    options = dict(input_shape=SHAPE, calibration=inputs, preprocess=False, evaluate=False, range_group=8)
    for batch_size in (8, 4, 6):  # 6 does not divide the group: it is calibrated in batches of 4
        quantize_datafree(onnx_file, tmp_path / f"grouped-{batch_size}.onnx", batch_size=batch_size, **options)
        assert input_scale(tmp_path / f"grouped-{batch_size}.onnx") == pytest.approx(
            (groups.max(1).mean() - groups.min(1).mean()) / 255, rel=1e-5)
    whole_set = (inputs.max() - inputs.min()) / 255
    quantize_datafree(onnx_file, tmp_path / "whole.onnx", batch_size=8, **{**options, "range_group": 0})
    assert input_scale(tmp_path / "whole.onnx") == pytest.approx(whole_set, rel=1e-5)
    quantize_datafree(onnx_file, tmp_path / "ort.onnx", batch_size=8, extra_options={"CalibMovingAverage": False}, **options)
    assert input_scale(tmp_path / "ort.onnx") == pytest.approx(whole_set, rel=1e-5)  # ONNX Runtime's own option wins
    with pytest.raises(FastDFKDError, match="range_group"):
        quantize_datafree(onnx_file, tmp_path / "bad.onnx", batch_size=8, **{**options, "range_group": -1})


def test_range_groups_are_whole_batches_and_a_short_last_group_joins_the_one_before():
    assert [group_batch(batch, 64) for batch in (64, 45, 19, 1)] == [64, 32, 16, 1]
    assert group_bounds(10, 4) == [(0, 4), (4, 10)] and group_bounds(12, 4) == [(0, 4), (4, 8), (8, 12)]
    assert group_bounds(3, 4) == [(0, 3)]


def test_int4_weights_use_the_symmetric_grid_not_onnx_runtimes_clipping_one(onnx_file, synthetic, tmp_path):
    """Every channel's largest weight lands on ±7 exactly: ONNX Runtime's own grid ([-8, 7], scale absmax / 7.5) clips it."""
    options = dict(calibration=synthetic, preprocess=False, weight_type="int4", activation_type="uint8")
    for per_channel in (True, False):
        quantize_datafree(onnx_file, tmp_path / "ours.onnx", input_shape=SHAPE, per_channel=per_channel, **options)
        ours = quantized_weights(tmp_path / "ours.onnx")
        assert len(ours) == 3  # the two convolutions and the head
        for values in ours.values():
            rows = values.reshape(len(values), -1) if per_channel else values.reshape(1, -1)
            assert values.min() >= -7 and (np.abs(rows).max(1) == 7).all()
    quantize_static(str(onnx_file), str(tmp_path / "ort.onnx"), calibration_reader(onnx_file, synthetic), per_channel=True,
                    weight_type=QuantType.QInt4, activation_type=QuantType.QUInt8)
    assert min(values.min() for values in quantized_weights(tmp_path / "ort.onnx").values()) == -8  # what the test tells apart
    asymmetric = quantize_datafree(onnx_file, tmp_path / "asym.onnx", input_shape=SHAPE, per_channel=True,
                                   extra_options={"WeightSymmetric": False}, **options)
    assert asymmetric.options["extra_options"] == "{'WeightSymmetric': False}"
    assert any(values.min() == -8 for values in quantized_weights(tmp_path / "asym.onnx").values())  # the caller's choice is kept


def test_int4_grid_follows_each_operators_output_channel_axis_in_a_transformer(tmp_path):
    import onnx

    export_onnx(tiny_vit(), torch.zeros(1, *SHAPE), tmp_path / "vit.onnx")
    quantize_datafree(tmp_path / "vit.onnx", tmp_path / "q.onnx", input_shape=SHAPE, calibration=torch.randn(16, *SHAPE),
                      preprocess=False, min_agreement=0, weight_type="int4", activation_type="uint8", per_channel=True)
    consumer = {node.input[1]: node.op_type for node in onnx.load(str(tmp_path / "vit.onnx")).graph.node if len(node.input) > 1}
    weights = {(consumer[name.removesuffix("_quantized")], name): values for name, values in quantized_weights(tmp_path / "q.onnx").items()}
    assert sum(op == "MatMul" for op, _ in weights) == 4  # (K, N) matrices: output channels on axis 1, unlike Conv and Gemm
    for (op, name), values in weights.items():
        channels = np.moveaxis(values, 1 if op == "MatMul" else 0, 0)
        assert (np.abs(channels.reshape(len(channels), -1)).max(1) == 7).all(), (op, name)


def test_a_weight_override_the_caller_gives_wins_over_the_int4_grid(onnx_file):
    ours = ort_adapter.symmetric_int4_weights(onnx_file, per_channel=True)
    name = next(iter(ours))
    theirs = {name: [{"axis": 0, "scale": np.float32(1.0), "zero_point": np.int8(0)}] * len(ours[name])}
    options = ort_adapter.with_symmetric_int4_weights(onnx_file, {"weight_type": QuantType.QInt4, "per_channel": True,
                                                                  "extra_options": {"TensorQuantOverrides": theirs}})
    overrides = options["extra_options"]["TensorQuantOverrides"]
    assert overrides[name] == theirs[name] and set(overrides) == set(ours)
    int8 = {"weight_type": QuantType.QInt8, "per_channel": True}
    assert ort_adapter.with_symmetric_int4_weights(onnx_file, int8) == int8


@pytest.fixture
def batches_asked(monkeypatch) -> list[int]:
    """The batch sizes every data source is asked for from here on."""
    asked: list[int] = []
    original = DataSource.next_batch
    monkeypatch.setattr(DataSource, "next_batch", lambda self, size: asked.append(size) or original(self, size))
    return asked


def test_a_wrong_onnx_file_is_refused_before_any_synthesis(onnx_file, tmp_path, batches_asked):
    """A file with other weights, or one that does not fit the input shape, stops the work before the source makes a batch."""
    with pytest.raises(FastDFKDError, match=r"disagree on 32 random inputs \(top-1 agreement .* %, below 99 %\); they probably"):
        quantize_datafree(make_teacher(seed=42), tmp_path / "q.onnx", input_shape=SHAPE, onnx_model=onnx_file, num_samples=8,
                          batch_size=8, source_options={"steps": 2, "warmup_tasks": 2, "latent_dim": 32}, device="cpu")
    with pytest.raises(FastDFKDError, match="does not fit the teacher's input shape 3,16,16"):
        quantize_datafree(make_teacher(), tmp_path / "q.onnx", input_shape=(3, 16, 16), onnx_model=onnx_file, num_samples=8,
                          batch_size=8, source_options={"steps": 2, "warmup_tasks": 2, "latent_dim": 32}, device="cpu")
    assert batches_asked == [] and not (tmp_path / "q.onnx").exists()


class TextMap(nn.Module):
    """A text detector's output: a 1-channel probability map, bright in one corner and nearly empty elsewhere.

    ``offset`` is added to every pixel: an ONNX file of ``TextMap(offset=5e-5)`` is the teacher's
    graph up to float noise, yet on nearly empty maps that noise is over 5 % of the map's L1
    norm, which PP-OCRv4's detector was refused for (93 % "agreement" with itself).
    """

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        mask = torch.full((1, 1, *SHAPE[1:]), 1e-4)
        mask[..., :1, :1] = 1.0
        self.register_buffer("mask", mask)
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x)) * self.mask + self.offset


def test_a_probability_map_is_checked_on_its_values_not_on_a_top1(tmp_path, batches_asked):
    torch.manual_seed(0)
    teacher = TextMap().eval()
    noisy = TextMap(offset=5e-5).eval()
    noisy.load_state_dict(teacher.state_dict())
    export_onnx(noisy, torch.zeros(1, *SHAPE), tmp_path / "same.onnx")
    report = quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, onnx_model=tmp_path / "same.onnx",
                               num_samples=8, batch_size=8, source_options={"steps": 2, "warmup_tasks": 1, "latent_dim": 32},
                               device="cpu", per_channel=True, weight_type="int8", activation_type="int8")
    assert report.agreement.top1_agreement is None and 4e-5 < report.agreement.max_abs_error < 1e-4
    assert run_session(tmp_path / "q.onnx", np.zeros((2, *SHAPE))).shape == (2, 1, *SHAPE[1:])

    export_onnx(TextMap(), torch.zeros(1, *SHAPE), tmp_path / "other.onnx")  # other weights
    asked = len(batches_asked)
    with pytest.raises(FastDFKDError, match=r"disagree on 32 random inputs \(max relative error .*, above 0\.001\)"):
        quantize_datafree(teacher, tmp_path / "q2.onnx", input_shape=SHAPE, onnx_model=tmp_path / "other.onnx",
                          num_samples=8, batch_size=8, source_options={"steps": 2, "warmup_tasks": 1, "latent_dim": 32}, device="cpu")
    assert len(batches_asked) == asked


def test_per_channel_quantization_moves_an_opset_12_graph_to_13_so_onnx_runtime_loads_it(teacher, synthetic, tmp_path):
    """ONNX Runtime writes DequantizeLinear with an axis into the graph's own opset: below 13 that is an invalid model."""
    import onnx

    path = tmp_path / "opset12.onnx"
    torch.onnx.export(teacher, (torch.zeros(1, *SHAPE),), str(path), opset_version=12, input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    before = path.read_bytes()
    report = quantize_datafree(teacher, tmp_path / "q.onnx", onnx_model=path, input_shape=SHAPE, calibration=synthetic,
                               per_channel=True, weight_type="int8", activation_type="int8")
    quantized = onnx.load(str(tmp_path / "q.onnx"))
    assert {o.version for o in quantized.opset_import if o.domain == ""} == {13} and path.read_bytes() == before
    assert any(a.name == "axis" for node in quantized.graph.node if node.op_type == "DequantizeLinear" for a in node.attribute)
    x = synthetic.inputs[:8].numpy()
    with torch.no_grad():
        expected = teacher(torch.from_numpy(x)).argmax(1).numpy()
    assert report.agreement.top1_agreement == 100.0 and (run_session(tmp_path / "q.onnx", x).argmax(1) == expected).mean() >= 0.75


def test_an_opset_the_version_converter_cannot_upgrade_is_one_sentence(teacher, synthetic, tmp_path, monkeypatch):
    from onnx import version_converter

    path = tmp_path / "opset12.onnx"
    torch.onnx.export(teacher, (torch.zeros(1, *SHAPE),), str(path), opset_version=12, input_names=["input"], dynamo=False)

    def fails(model, target):
        raise RuntimeError("No Adapter From Version 12 for Foo")

    monkeypatch.setattr(version_converter, "convert_version", fails)
    with pytest.raises(FastDFKDError, match=r"opset12\.onnx is at opset 12 and per-channel quantization needs opset 13, which "
                                            r"onnx's version converter cannot reach \(RuntimeError: No Adapter From Version 12 for Foo\); "
                                            r"convert the model to opset 13 yourself or quantize per tensor"):
        quantize_datafree(teacher, tmp_path / "q.onnx", onnx_model=path, input_shape=SHAPE, calibration=synthetic, per_channel=True)


def test_options_may_be_given_by_the_command_lines_names():
    options = ort_adapter.quantize_static_options({"weight_type": "int4", "activation_type": "UINT8", "per_channel": True,
                                                   "calibrate_method": "percentile", "quant_format": "qoperator"})
    assert options == {"weight_type": QuantType.QInt4, "activation_type": QuantType.QUInt8, "per_channel": True,
                       "calibrate_method": CalibrationMethod.Percentile, "quant_format": QuantFormat.QOperator}
    with pytest.raises(FastDFKDError, match="unknown calibrate_method 'best'; choose one of minmax, percentile"):
        ort_adapter.quantize_static_options({"calibrate_method": "best"})


def test_unsupported_quantization_type_names_the_onnxruntime_version(monkeypatch):
    class OldQuantType:
        QInt8 = QuantType.QInt8

    import onnxruntime.quantization as q

    monkeypatch.setattr(q, "QuantType", OldQuantType)
    with pytest.raises(FastDFKDError, match=r"int4 quantization needs onnxruntime ≥ 1\.18"):
        ort_adapter.ort_value("weight_type", "int4")


# -- CLI -------------------------------------------------------------------------------------------

CLI_FAST = ["--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]


def test_cli_quantize_onnx_end_to_end(onnx_file, tmp_path, capsys):
    code = main(["quantize-onnx", "--onnx", str(onnx_file), "--model", f"{MODELS}:tiny", "--out", str(tmp_path / "q.onnx"),
                 "--num-samples", "16", "--weight-type", "int4", "--activation-type", "uint8", "--per-channel",
                 "--calibrate-method", "percentile", *CLI_FAST])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert str(tmp_path / "q.onnx") in out and "agrees with the teacher on 32 random inputs (top-1 agreement 100.0 %)" in out
    assert run_session(tmp_path / "q.onnx", np.zeros((2, *SHAPE))).shape == (2, 10)


def test_cli_quantize_onnx_from_a_saved_set_and_export_with_test_data(tmp_path, capsys):
    model = f"{MODELS}:tiny"
    assert main(["synthesize", "--model", model, "--input-shape", "3,32,32", "--num-samples", "16",
                 "--out", str(tmp_path / "set.npz"), *CLI_FAST]) == 0
    assert main(["export-onnx", "--model", model, "--input-shape", "3,32,32", "--out", str(tmp_path / "m.onnx"),
                 "--num-samples", "16", "--test-data", str(tmp_path / "data"), *CLI_FAST]) == 0
    assert main(["quantize-onnx", "--onnx", str(tmp_path / "m.onnx"), "--model", model, "--calibration",
                 str(tmp_path / "set.npz"), "--out", str(tmp_path / "q.onnx"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 100.0 %" in out and "calibrated on 16 samples" in out
    assert len(load_onnx_test_data(tmp_path / "data")) == 2


@pytest.mark.parametrize("onnx_content, message", [(None, "does not exist"), (b"garbage", "not a readable ONNX model")])
def test_cli_missing_or_corrupt_onnx_file(tmp_path, capsys, onnx_content, message):
    onnx_path = tmp_path / "m.onnx"
    if onnx_content is not None:
        onnx_path.write_bytes(onnx_content)
    code = main(["quantize-onnx", "--onnx", str(onnx_path), "--model", f"{MODELS}:tiny", "--out", str(tmp_path / "q.onnx"),
                 "--input-shape", "3,32,32", *CLI_FAST])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_onnx_without_onnxruntime_names_the_extra(onnx_file, tmp_path, capsys, monkeypatch):
    onnx_runtime_missing(monkeypatch)
    code, _, err = run_cli(capsys, "quantize-onnx", "--onnx", str(onnx_file), "--model", f"{MODELS}:tiny",
                           "--out", str(tmp_path / "q.onnx"), "--num-samples", "8", *CLI_FAST)
    assert code == 2 and "ONNX Runtime is not installed; pip install 'fastdfkd-plugin[onnxruntime]'" in err
    assert "Traceback" not in err and "ImportError" not in err and err.count("\n") == 1
    assert not (tmp_path / "q.onnx").exists()
