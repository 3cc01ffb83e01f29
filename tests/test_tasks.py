"""Teachers that are not classifiers: what the output means is learnt once, and every pipeline takes it.

The models (tests/models.py): a segmenter with a skip connection (N×5×H×W maps), a
detector-like model returning a tuple of maps at two scales, a model returning a dict
with a depth map and an embedding, and a classifier whose N×C×1×1 output is ambiguous.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import MODELS, registered, run_cli
from models import conv_logits, dict_heads, segmenter, small_segmenter, tiny, two_heads

from fastdfkd_plugin import DistillConfig, FastDFKDError, Teacher, agreement, get_source, hookimpl, kd_loader, kd_loss
from fastdfkd_plugin.teacher.tasks import GenericOutputs, Segmentation, palette

FAST = dict(steps=1, warmup_tasks=1, latent_dim=16, cache=False)
WIDE = (3, 24, 40)  # non-square, neither side a power of two
SOURCE_FAST = ["--steps", "1", "--warmup-tasks", "1", "--batch-size", "4", "--device", "cpu", "-q", "--raw-pixels"]


@pytest.mark.parametrize("build, task, classes", [
    (tiny, "classification", 10), (segmenter, "segmentation", 5), (two_heads, "generic", None), (dict_heads, "generic", None),
])
def test_one_probe_forward_tells_what_the_outputs_are(build, task, classes):
    teacher = Teacher(build(), WIDE, device="cpu")
    assert teacher.task.name == task and teacher.info.task == task and teacher.info.num_classes == classes


def test_an_ambiguous_output_asks_for_the_task_in_one_sentence():
    with pytest.raises(FastDFKDError, match=r"\(2, 10, 1, 1\): class logits or 1×1 class maps\? .*--task"):
        Teacher(conv_logits(), (3, 32, 32), device="cpu")
    teacher = Teacher(conv_logits(), (3, 32, 32), device="cpu", task="classification")
    batch = get_source("fastdfkd", teacher, **FAST).synthetic_set(4, 4)
    assert batch.labels.shape == (4,) and teacher.info.num_classes == 10


def test_a_task_that_cannot_read_the_outputs_is_refused_by_name():
    with pytest.raises(FastDFKDError, match="task 'segmentation' needs N×classes×H×W class maps, but the teacher returns"):
        Teacher(tiny(), (3, 32, 32), device="cpu", task="segmentation")
    with pytest.raises(FastDFKDError, match="task 'classification' needs batch×classes logits, but the teacher returns tuple"):
        Teacher(two_heads(), (3, 32, 32), device="cpu", task="classification")
    with pytest.raises(FastDFKDError, match="unknown task 'detection'; choose auto or one of classification, generic, segmentation"):
        Teacher(tiny(), (3, 32, 32), device="cpu", task="detection")


class Heatmaps(GenericOutputs):
    """Keypoint heatmaps (a plugin's task): per-pixel softmax over locations."""

    name = "heatmaps"
    rank = 30

    @classmethod
    def recognises(cls, outputs):
        return isinstance(outputs, torch.Tensor) and outputs.dim() == 4 and outputs.shape[1] == 5


class HeatmapsPlugin:
    @hookimpl
    def fastdfkd_register_tasks(self, register):
        register(Heatmaps)


def test_a_plugin_registers_a_task_that_auto_detection_and_names_reach():
    with registered(HeatmapsPlugin(), "heatmaps-plugin"):
        assert Teacher(segmenter(), WIDE, device="cpu").task.name == "heatmaps"  # ranks above segmentation
        assert Teacher(segmenter(), WIDE, device="cpu", task="segmentation").task.name == "segmentation"
    assert Teacher(segmenter(), WIDE, device="cpu").task.name == "segmentation"


def test_two_plugins_claiming_one_task_name_are_refused():
    class Twin(Heatmaps):
        name = "segmentation"

    class TwinPlugin:
        @hookimpl
        def fastdfkd_register_tasks(self, register):
            register(Twin)

    with registered(TwinPlugin(), "twin"), pytest.raises(FastDFKDError, match="task name 'segmentation' is registered by both"):
        Teacher(segmenter(), WIDE, device="cpu")


def test_miou_and_pixel_accuracy_leave_ignored_pixels_out():
    task = Segmentation(torch.zeros(2, 3, 2, 2))
    labels = torch.tensor([[[0, 0], [1, 255]]])
    predicted = torch.tensor([[[0, 1], [1, 2]]])  # the ignored pixel's prediction must not count
    outputs = torch.nn.functional.one_hot(predicted, 3).permute(0, 3, 1, 2).float()
    scores = task.scores([(outputs, labels)], ignore_index=255)
    # class 0: 1 hit / union 2; class 1: 1 / 2; class 2: absent from labels and (counted) predictions
    assert scores == {"miou": pytest.approx(50.0), "pixel_accuracy": pytest.approx(100 * 2 / 3)}
    with pytest.raises(FastDFKDError, match="outside 0–2 besides the ignore index 11; set --ignore-index"):
        task.scores([(outputs, labels)], ignore_index=11)


def test_losses_and_agreement_per_kind():
    maps = torch.randn(2, 5, 6, 8)
    assert kd_loss(maps, maps).item() == pytest.approx(0.0, abs=1e-6)
    expected = torch.nn.functional.kl_div(maps.roll(1, 1).div(4).log_softmax(1), maps.div(4).log_softmax(1),
                                          reduction="none", log_target=True).sum(1).mean() * 16
    assert kd_loss(maps.roll(1, 1), maps).item() == pytest.approx(expected.item(), rel=1e-5)  # per pixel, averaged
    heads = (torch.ones(2, 6, 4, 4), torch.zeros(2, 3))
    assert kd_loss((torch.zeros(2, 6, 4, 4), torch.zeros(2, 3)), heads).item() == pytest.approx(0.5)  # L1, mean over outputs
    task = Segmentation(maps)
    assert task.agreement(maps, maps) == (2.0, 2)
    half_changed = maps.clone()
    half_changed[1, :, :3] = half_changed[1, :, :3].roll(1, 0)  # the top half of the second map picks other classes
    assert task.sample_agreement(maps, half_changed).tolist() == [1.0, 0.5]  # each image counts by its share of pixels
    assert task.agreement(maps, half_changed) == (1.5, 2)
    near = (heads[0] * 1.04, heads[1])
    far = (torch.cat([heads[0][:1] * 1.04, heads[0][1:] * 1.2]), heads[1])
    assert GenericOutputs(heads).agreement(heads, near) == (2.0, 2) and GenericOutputs(heads).agreement(heads, far) == (1.0, 2)


def test_a_segmenter_synthesises_at_a_non_square_size_with_label_maps():
    teacher = Teacher(segmenter(), WIDE, device="cpu")
    source = get_source("fastdfkd", teacher, **FAST)
    assert source.objective.weights.oh == 0.0  # the paper's recipe for segmentation: no one-hot term
    data = source.synthetic_set(6, 3)
    assert data.inputs.shape == (6, *WIDE) and data.logits.shape == (6, 5, 24, 40) and data.labels.shape == (6, 24, 40)
    assert data[0][1].shape == (24, 40)
    assert [batch.labels.shape for batch in data.batches(4)] == [(4, 24, 40), (2, 24, 40)]


def test_the_class_presence_term_is_there_for_segmenters_that_want_it():
    from fastdfkd_plugin import LossWeights

    teacher = Teacher(segmenter(), WIDE, device="cpu")
    source = get_source("deepinversion", teacher, steps=1, loss_weights=LossWeights(oh=1.0))
    assert torch.isfinite(source.next_batch(2).inputs).all()


def test_generic_outputs_have_no_target_term_and_say_so():
    from fastdfkd_plugin import LossWeights

    teacher = Teacher(two_heads(), WIDE, device="cpu")
    source = get_source("deepinversion", teacher, steps=1, loss_weights=LossWeights(oh=0.5))
    with pytest.raises(FastDFKDError, match="task 'generic' has no synthesis target term; set its weight to 0"):
        source.next_batch(2)


def test_kd_loader_and_agreement_with_a_segmenter():
    teacher = Teacher(segmenter(), WIDE, device="cpu")
    student = small_segmenter()
    loader = kd_loader(get_source("fastdfkd", teacher, **FAST), batch_size=4, steps=2, steps_per_batch=2,
                       synthesis_batch_size=4, student=student)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)
    for inputs, teacher_maps in loader:
        assert teacher_maps.shape == (4, 5, 24, 40)
        loss = kd_loss(student(inputs), teacher_maps, task=teacher.task)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert 0 <= agreement(teacher, student, torch.randn(3, *WIDE)) <= 1
    assert agreement(teacher, teacher.model, torch.randn(3, *WIDE)) == 1.0


def test_a_segmenter_preview_pairs_each_image_with_its_label_map():
    task = Segmentation(torch.zeros(2, 4, 3, 3))
    pixels = torch.rand(2, 3, 3, 3)
    maps = torch.zeros(2, 4, 3, 3)
    maps[:, 2] = 1
    shown = task.preview(pixels, maps)
    assert shown.shape == (4, 3, 3, 3) and torch.equal(shown[0], pixels[0])
    assert torch.equal(shown[1], palette(4)[2].view(3, 1, 1).expand(3, 3, 3))
    colours = palette(11)
    assert len({tuple(colour.tolist()) for colour in colours}) == 11 and colours.min() >= 0 and colours.max() <= 1


# -- every command takes each kind ----------------------------------------------------------------

def segmentation_eval_file(path, count=4):
    """CamVid-like labelled images: uint8 x N×H×W×3, y N×H×W with ignored (255) pixels."""
    generator = np.random.default_rng(0)
    y = generator.integers(0, 5, (count, 24, 40)).astype(np.uint8)
    y[:, :4] = 255
    np.savez(path, x=generator.integers(0, 256, (count, 24, 40, 3)).astype(np.uint8), y=y)
    return path


def test_cli_synthesize_writes_label_maps_and_a_paired_preview(tmp_path, capsys):
    code, out, err = run_cli(capsys, "synthesize", "--model", f"{MODELS}:segmenter", "--input-shape", "3,24,40",
                             "--num-samples", "4", "--out", str(tmp_path / "s.npz"), "--preview", str(tmp_path / "p.png"),
                             *SOURCE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as data:
        assert data["labels"].shape == (4, 24, 40) and data["inputs"].shape == (4, 3, 24, 40)
    png = (tmp_path / "p.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (2 * (2 + 8 * (40 + 2)), 2 * (2 + 1 * (24 + 2)))  # 4 images + 4 maps in one row of 8


def test_cli_synthesize_a_dict_output_model_keeps_its_outputs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "synthesize", "--model", f"{MODELS}:dict_heads", "--input-shape", "3,24,40",
                           "--num-samples", "4", "--out", str(tmp_path / "s.npz"), *SOURCE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as data:
        assert "labels" not in data.files
        assert data["outputs_0"].shape == (4, 1, 24, 40) and data["outputs_1"].shape == (4, 16)


def test_cli_ambiguous_output_exits_2_with_one_sentence(tmp_path, capsys):
    args = ["synthesize", "--model", f"{MODELS}:conv_logits", "--input-shape", "3,32,32", "--num-samples", "4",
            "--out", str(tmp_path / "s.npz"), *SOURCE_FAST]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "--task" in err and err.count("\n") == 1 and not (tmp_path / "s.npz").exists()
    assert run_cli(capsys, *args, "--task", "classification")[0] == 0


DISTILL = ["--input-shape", "3,24,40", "--kd-steps", "4", "--kd-steps-per-batch", "2", "--kd-batch-size", "4",
           "--eval-samples", "4", "--eval-every", "2", "--bank-size", "16", "--no-plot", *SOURCE_FAST]


def test_cli_distills_a_segmenter_and_scores_miou_on_label_maps_with_ignored_pixels(tmp_path, capsys):
    code, out, err = run_cli(capsys, "distill", "--teacher", f"{MODELS}:segmenter", "--student", f"{MODELS}:small_segmenter",
                             "--eval-data", str(segmentation_eval_file(tmp_path / "eval.npz")), "--ignore-index", "255",
                             "--out", str(tmp_path / "student.pt"), *DISTILL)
    assert code == 0, err
    assert "miou" in out and "pixel accuracy" in out
    records = (tmp_path / "student.pt.metrics.jsonl").read_text().splitlines()
    assert all('"miou"' in record for record in records)
    student = small_segmenter()
    student.load_state_dict(torch.load(tmp_path / "student.pt", weights_only=True))
    assert student(torch.zeros(1, *WIDE)).shape == (1, 5, 24, 40)


@pytest.mark.parametrize("teacher, student", [("two_heads", "small_two_heads"), ("dict_heads", "small_dict_heads")])
def test_cli_distills_generic_outputs_by_agreement(tmp_path, capsys, teacher, student):
    code, out, err = run_cli(capsys, "distill", "--teacher", f"{MODELS}:{teacher}", "--student", f"{MODELS}:{student}",
                             "--out", str(tmp_path / "student.pt"), *DISTILL)
    assert code == 0, err
    assert "agreement" in out


def test_cli_refuses_a_student_with_other_outputs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "distill", "--teacher", f"{MODELS}:segmenter", "--student", f"{MODELS}:small_two_heads",
                           "--out", str(tmp_path / "student.pt"), *DISTILL)
    assert code == 2 and "the student returns tuple of" in err and "but the teacher (2, 5, 24, 40)" in err


def test_cli_prunes_an_encoder_decoder_keeping_the_classifier_whole(tmp_path, capsys):
    out = tmp_path / "pruned.pt"
    code, printed, err = run_cli(capsys, "prune", "--model", f"{MODELS}:segmenter", "--input-shape", "3,24,40",
                                 "--speed-up", "1.5", "--recovery-steps", "2", "--kd-batch-size", "4", "--steps-per-batch", "2",
                                 "--bn-samples", "4", "--out", str(out), *SOURCE_FAST)
    assert code == 0, err
    from fastdfkd_plugin import load_model

    pruned = load_model(f"{MODELS}:segmenter", str(out))
    assert pruned.classifier.out_channels == 5 and pruned.fuse[0].out_channels < 8
    assert pruned(torch.zeros(2, *WIDE)).shape == (2, 5, 24, 40)


def test_pruning_generic_outputs_keeps_every_head_and_refuses_gradient_importance():
    from fastdfkd_plugin.adapters.torch_pruning import prune_datafree

    teacher = Teacher(two_heads(), WIDE, device="cpu")
    source = get_source("fastdfkd", teacher, **FAST)
    recovery = DistillConfig(steps=1, batch_size=4, steps_per_batch=1, bank_size=8)
    pruned, _ = prune_datafree(teacher, source, speed_up=1.3, recovery=recovery, bn_samples=4, batch_size=4, eval_samples=4)
    assert pruned.fine.out_channels == 6 and pruned.coarse.out_channels == 6 and pruned.body[0].out_channels < 16
    with pytest.raises(FastDFKDError, match="gradient-based pruning importance needs class scores"):
        prune_datafree(teacher, source, speed_up=1.3, importance="taylor", recovery=recovery, bn_samples=4, batch_size=4)


@pytest.mark.parametrize("model", ["segmenter", "two_heads", "dict_heads"])
def test_cli_exports_and_verifies_every_output(tmp_path, capsys, model):
    code, out, err = run_cli(capsys, "export-onnx", "--model", f"{MODELS}:{model}", "--input-shape", "3,24,40",
                             "--num-samples", "4", "--out", str(tmp_path / "m.onnx"), *SOURCE_FAST)
    assert code == 0, err
    assert float(re.search(r"max rel error ([0-9.e+-]+)", out).group(1)) < 1e-4  # outputs, not classes: compared by value


def test_cli_quantizes_a_segmenter_with_onnx_runtime_and_torchao(tmp_path, capsys):
    from fastdfkd_plugin.adapters.onnx_export import onnx_scores

    model = f"{MODELS}:segmenter"
    assert run_cli(capsys, "export-onnx", "--model", model, "--input-shape", "3,24,40", "--num-samples", "4",
                   "--out", str(tmp_path / "m.onnx"), *SOURCE_FAST)[0] == 0
    code, out, err = run_cli(capsys, "quantize-onnx", "--onnx", str(tmp_path / "m.onnx"), "--model", model,
                             "--input-shape", "3,24,40", "--num-samples", "8", "--out", str(tmp_path / "q.onnx"), *SOURCE_FAST)
    assert code == 0, err
    with np.load(segmentation_eval_file(tmp_path / "eval.npz")) as data:
        inputs = data["x"].transpose(0, 3, 1, 2).astype(np.float32) / 255
        scores = onnx_scores(tmp_path / "q.onnx", inputs, data["y"], ignore_index=255)
    assert set(scores) == {"miou", "pixel_accuracy"} and 0 <= scores["miou"] <= 100
    code, out, err = run_cli(capsys, "quantize-torch", "--model", model, "--input-shape", "3,24,40", "--num-samples", "8",
                             "--out", str(tmp_path / "q.pt2"), *SOURCE_FAST)
    assert code == 0, err
    quantized = torch.export.load(tmp_path / "q.pt2").module()
    assert quantized(torch.zeros(2, *WIDE)).shape == (2, 5, 24, 40)


def test_calibration_reader_and_forward_loop_take_a_segmenter(tmp_path):
    from fastdfkd_plugin.adapters.generic import calibration_data
    from fastdfkd_plugin.adapters.onnx_export import export_onnx
    from fastdfkd_plugin.adapters.onnxruntime import calibration_reader

    teacher = Teacher(segmenter(), WIDE, device="cpu")
    export_onnx(teacher, torch.zeros(1, *WIDE), tmp_path / "m.onnx")
    source = get_source("fastdfkd", teacher, **FAST)
    reader = calibration_reader(tmp_path / "m.onnx", source, batch_size=2, num_samples=4)
    assert [batch["input"].shape for batch in iter(reader.get_next, None)] == [(2, 3, 24, 40)] * 2
    data = calibration_data(source, num_samples=4, batch_size=2)
    seen = []
    teacher.model.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    data.forward_loop(teacher.model)
    assert seen == [(2, 5, 24, 40)] * 2


def test_cli_lists_the_tasks_in_the_order_auto_tries_them(capsys):
    code, out, _ = run_cli(capsys, "tasks")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert code == 0 and names == ["classification", "segmentation", "sequence", "generic"]
