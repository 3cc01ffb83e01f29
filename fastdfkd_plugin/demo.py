"""``fastdfkd demo``: the main job end to end on real data that ships with scikit-learn.

A small BatchNorm CNN is trained on the handwritten digits (upsampled to 32×32).
From then on the digits are used only to *score*: the teacher alone drives
synthesis, and the synthetic set is used to (1) distil a smaller student and
(2) calibrate 8-bit and 4-bit ONNX Runtime static quantization, each beside the
Gaussian-noise floor and the real-data reference. It uses the adapters' public API as a
user's script would, and adds its command the way they add theirs: as a plugin.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .adapters.onnx_export import export_onnx, onnx_accuracy
from .adapters.onnxruntime import quantize_datafree
from .evaluation.preview import image_grid, write_png
from .evaluation.quality import set_quality
from .hooks.hookspecs import hookimpl
from .runtime.devices import resolve_device
from .runtime.io import atomic_path
from .runtime.optional import require
from .sources.base import SyntheticSet
from .sources.registry import get_source
from .teacher.teacher import Teacher
from .training.distillation import DistillConfig, distill

INPUT_SHAPE = (1, 32, 32)


class DigitsNet(nn.Module):
    """A small BatchNorm CNN for 1×32×32 digits; ``width`` sets its size (teacher 32, student 8)."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(1, width, 1), *block(width, width, 2), *block(width, 2 * width, 2), *block(2 * width, 2 * width, 2))
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@dataclass
class Digits:
    """The digits, split once: ``train`` teaches the teacher and is the real-data reference."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float


def load_digits(seed: int = 0, test_size: int = 500, device: torch.device | str = "cpu") -> Digits:
    """scikit-learn's 1,797 8×8 digits, upsampled to 32×32 pixels in [0, 1] and normalised."""
    data = require("sklearn.datasets", "demo", "scikit-learn, whose bundled digits the demo uses,").load_digits()
    pixels = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    pixels = F.interpolate(pixels, size=INPUT_SHAPE[1:], mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    mean, std = pixels[train].mean().item(), pixels[train].std().item()
    normalised = ((pixels - mean) / std).to(device)
    labels = labels.to(device)
    return Digits(normalised[train], labels[train], normalised[test], labels[test], mean, std)


def train_teacher(digits: Digits, epochs: int = 12, seed: int = 0, model: nn.Module | None = None) -> nn.Module:
    """Train ``model`` (default: a width-32 DigitsNet) on the digits' training split."""
    torch.manual_seed(seed)
    model = (model or DigitsNet(32)).to(digits.train_x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(digits.train_y), generator=generator).split(64):
            loss = F.cross_entropy(model(digits.train_x[index]), digits.train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item() * 100


def _endless(tensors: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.randperm(len(tensors), generator=generator).split(batch_size):
            yield tensors[index]


def _onnx_accuracy_after_quantization(
    teacher: Teacher, calibration: torch.Tensor, digits: Digits, bits: int, workdir: Path
) -> float:
    """Export the teacher once, quantize it statically calibrated on ``calibration``, and score it: as a user would."""
    fp32, quantized = workdir / "teacher.onnx", workdir / f"teacher.w{bits}a{bits}.onnx"
    if not fp32.exists():
        export_onnx(teacher, digits.test_x[:1], fp32)
    quantize_datafree(teacher, quantized, onnx_model=fp32, calibration=calibration, preprocess=False, quant_format="qdq",
                      per_channel=True, calibrate_method="minmax", weight_type=f"int{bits}", activation_type=f"uint{bits}",
                      evaluate=False)  # the demo scores on real digits
    return onnx_accuracy(quantized, digits.test_x.cpu().numpy(), digits.test_y.cpu().numpy())


def run_demo(out_dir: str | Path = "fastdfkd-demo", seed: int = 0, device: str = "auto", progress: bool = True,
             echo: Callable[[str], None] = print) -> dict:
    """Run the demo; write the preview grid and ``results.json`` into ``out_dir``; return the results."""
    require("onnxruntime", "onnxruntime", "ONNX Runtime, which the demo quantizes with,")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    echo("1/4 training the teacher on scikit-learn's digits (the only time the training split is used for it)")
    device = resolve_device(device)
    digits = load_digits(seed, device=device)
    model = train_teacher(digits, seed=seed)
    teacher_acc = accuracy(model, digits.test_x, digits.test_y)
    echo(f"    teacher accuracy on 500 held-out digits: {teacher_acc:.1f} %")

    echo("2/4 synthesising 512 images from the teacher alone (fastdfkd, k = 5) and 512 of Gaussian noise")
    teacher = Teacher(model, INPUT_SHAPE, mean=[digits.mean], std=[digits.std], device=device)
    # Trained on centred digits without flips or shifts: a mirrored 3 is no 3, and a shifted one is not sure.
    fast = get_source("fastdfkd", teacher, seed=seed, flip=False, shift=0, progress=progress)
    t0 = time.perf_counter()
    fast_set = fast.synthetic_set(512, batch_size=64)
    fast_seconds = time.perf_counter() - t0
    noise_set = get_source("gaussian", teacher, seed=seed, progress=progress).synthetic_set(512, batch_size=64)
    fast_set.save(str(out / "fastdfkd-digits.npz"))
    write_png(out / "preview.png", image_grid(fast.space.denormalize(fast_set.inputs[:64]), columns=8), scale=3)
    view = set_quality(teacher, fast_set.inputs, fast_set.targets)
    echo(f"    {512 / fast_seconds:.0f} images/s (warm-up included); teacher confidence on them {view.confidence:.2f}, "
         f"agrees with the sampled label on {view.label_agreement:.0f} %")

    echo("3/4 distilling a 16× smaller student for 600 KD steps from each source")
    kd = DistillConfig(steps=600, batch_size=64, steps_per_batch=25, bank_size=4096, lr=0.05, temperature=4.0, seed=seed)
    students: dict[str, float] = {}
    fast.set_student(None)
    for name, batches in _student_sources(fast, noise_set, digits, seed):
        torch.manual_seed(seed)
        student = DigitsNet(8).to(device)
        if name == "fastdfkd":
            fast.set_student(student)
        distill(teacher, student, batches, kd, progress=progress, desc=f"KD from {name}")
        students[name] = accuracy(student, digits.test_x, digits.test_y)
    fast.set_student(None)

    echo("4/4 calibrating ONNX Runtime static quantization (QDQ, per-channel, MinMax) on 512 images")
    quantized: dict[str, dict[str, float]] = {}
    calibration = {"fastdfkd": fast_set.inputs, "gaussian": noise_set.inputs, "real digits": digits.train_x[:512]}
    for bits in (8, 4):
        for name, inputs in calibration.items():
            quantized.setdefault(name, {})[f"W{bits}A{bits}"] = _onnx_accuracy_after_quantization(teacher, inputs, digits, bits, out)

    results = {
        "teacher_accuracy": teacher_acc,
        "student_accuracy": students,
        "quantized_accuracy": quantized,
        "fastdfkd_images_per_second": 512 / fast_seconds,
        "fastdfkd_teacher_view": view.as_dict(),
        "seconds": time.perf_counter() - started,
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    echo("")
    echo(format_table(results))
    echo(f"\ndevice: {device}; preview grid: {out / 'preview.png'}   synthetic set: {out / 'fastdfkd-digits.npz'}   "
         f"results: {out / 'results.json'}   ({results['seconds']:.0f} s)")
    return results


def _student_sources(fast, noise_set: SyntheticSet, digits: Digits, seed: int) -> Iterator[tuple[str, Iterator[torch.Tensor]]]:
    """(name, endless batches) for each way of feeding the student: synthetic, noise, real."""
    yield "fastdfkd", (batch.inputs for batch in fast.stream(64))
    yield "gaussian", _endless(noise_set.inputs, 64, seed)
    yield "real digits", _endless(digits.train_x, 64, seed)


def format_table(results: dict) -> str:
    """The demo's result table, one row per data source."""
    lines = [
        f"teacher (FP32) accuracy: {results['teacher_accuracy']:.1f} %",
        "",
        "| data source | student via KD | W8A8 | W4A4 |",
        "| --- | --- | --- | --- |",
    ]
    for name in results["quantized_accuracy"]:
        q = results["quantized_accuracy"][name]
        lines.append(f"| {name} | {results['student_accuracy'][name]:.1f} % | {q['W8A8']:.1f} % | {q['W4A4']:.1f} % |")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(args.out_dir, seed=args.seed, device=args.device, progress=not args.quiet)


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="end-to-end demo on scikit-learn's bundled digits (52 s measured on 2 idle cores)")
    demo.add_argument("--out-dir", default="fastdfkd-demo", help="where the preview grid, set and results go")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=cmd_demo)
