"""Every teacher a benchmark can name, in one registry: :func:`load_teacher` is the one way to get one.

Five kinds, each a table below: the shared pretrained CIFAR-10 ResNets (weights in
``data_dir/teachers``), the teachers the benchmarks train once themselves and cache
(:mod:`.training`), the shared ResNet-20 with every BatchNorm folded into its convolution
(what an exporter leaves), edge architectures with random weights and BatchNorm
statistics (speed benchmarks only: cost does not depend on what the weights learned), and
ONNX files run through fastdfkd's converter (a CIFAR ResNet's export, to set the converter
beside eager torch, and PaddleOCR's three graphs from ``rapidocr-onnxruntime``).
:func:`build_teacher` wraps any of them as a :class:`~fastdfkd_plugin.Teacher` with its
own input shape and normalisation.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from examples.cifar_resnet import CifarResNet
from examples.cifar_vit import vit_tiny
from fastdfkd_plugin import Teacher, load_onnx_model, load_weights

from . import paddleocr
from .data import INPUT_SHAPE, MEAN, STD, default_data_dir
from .edge_models import MobileNetV1, MobileNetV2, ResNet18, with_batchnorm_statistics
from .training import Recipe, trained_model

PRETRAINED = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}
# Trained here on CIFAR-10 (see the scripts benchmarks.vit_teacher and benchmarks.edge_teacher for why).
TRAINED = {
    "vit": Recipe("vit_tiny", vit_tiny, lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05), max_lr=1e-3),
    "mobilenet_v1_050_64": Recipe(
        "mobilenet_v1_050_64", lambda: MobileNetV1(0.5, num_classes=10),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True), max_lr=0.2, size=64),
}
FOLDED = {"resnet20-folded": "resnet20", "resnet56-folded": "resnet56"}  # name → the pretrained teacher it folds
# name: (architecture, input shape); the MLPerf Tiny person-detection network, then two 224-px ImageNet networks
RANDOM: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "mobilenet_v1_025_96": (lambda: MobileNetV1(0.25, num_classes=2), (3, 96, 96)),
    "mobilenet_v2_224": (lambda: MobileNetV2(1000), (3, 224, 224)),
    "resnet18_224": (lambda: ResNet18(1000), (3, 224, 224)),
}

# name: (where the file comes from, input shape); the export keeps its BatchNorm nodes, so it is the same network as eager torch
ONNX: dict[str, tuple[Callable[[Path], Path], tuple[int, int, int]]] = {
    "resnet20-onnx": (lambda data_dir: exported_onnx("resnet20", data_dir), INPUT_SHAPE),
    **{f"ppocr_{graph}": (lambda _, graph=graph: paddleocr.graph_path(graph), shape) for graph, (_, shape) in paddleocr.GRAPHS.items()},
}


def teacher_names() -> list[str]:
    return [*PRETRAINED, *TRAINED, *FOLDED, *RANDOM, *ONNX]


def exported_onnx(name: str, data_dir: Path) -> Path:
    """The named pretrained teacher exported to ONNX with its BatchNorm nodes kept, written once to a temporary folder."""
    path = Path(tempfile.gettempdir()) / f"fastdfkd-benchmark-{name}.onnx"
    if not path.exists():
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        torch.onnx.export(load_teacher(name, data_dir), torch.zeros(1, *INPUT_SHAPE), str(staged), input_names=["input"],
                          opset_version=17, dynamo=False, dynamic_axes={"input": {0: "batch"}}, do_constant_folding=False)
        os.replace(staged, path)
    return path


def load_teacher(name: str, data_dir: Path | None = None, *, epochs: int = 10) -> nn.Module:
    """The named teacher in eval mode; ``epochs`` picks the cached training run of a teacher trained here.

    A teacher trained here is trained first (minutes to an hour) if that run is not cached.
    """
    data_dir = data_dir or default_data_dir()
    if name in PRETRAINED:
        model = CifarResNet(int(name.removeprefix("resnet")))
        load_weights(model, data_dir / "teachers" / PRETRAINED[name])
        return model.eval()
    if name in TRAINED:
        return trained_model(TRAINED[name], epochs, data_dir)
    if name in FOLDED:
        return fold_batchnorm(load_teacher(FOLDED[name], data_dir))
    if name in RANDOM:
        build, shape = RANDOM[name]
        torch.manual_seed(0)
        return with_batchnorm_statistics(build(), shape)
    if name in ONNX:
        file, shape = ONNX[name]
        return load_onnx_model(file(data_dir), shape)
    raise ValueError(f"unknown teacher {name!r}; choose one of {', '.join(teacher_names())}")


def teacher_input_shape(name: str) -> tuple[int, int, int]:
    """The C×H×W input the named teacher takes: 32-px CIFAR images unless its table says otherwise."""
    if name in TRAINED:
        return (3, TRAINED[name].size, TRAINED[name].size)
    table = RANDOM if name in RANDOM else ONNX
    return table[name][1] if name in table else INPUT_SHAPE


def build_teacher(name: str, device: str | torch.device, data_dir: Path | None = None, *, epochs: int = 10) -> Teacher:
    """The named teacher as a Teacher on ``device``: CIFAR normalisation, PaddleOCR's for its graphs, none for random weights."""
    if name in RANDOM:
        normalisation = {}
    elif name.startswith("ppocr_"):
        normalisation = {"mean": paddleocr.MEAN_STD, "std": paddleocr.MEAN_STD}
    else:
        normalisation = {"mean": MEAN, "std": STD}
    return Teacher(load_teacher(name, data_dir, epochs=epochs), teacher_input_shape(name), device=device, **normalisation)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy with every BatchNorm that directly follows a convolution folded into it (and replaced by Identity).

    Pairs are read from the traced graph (``torch.fx``), so it works for any model that
    traces; what an exporter does before writing ONNX or a deployment checkpoint.
    """
    folded = copy.deepcopy(model).eval()
    graph = torch.fx.symbolic_trace(folded).graph
    modules = dict(folded.named_modules())
    for node in graph.nodes:
        producer = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm) and isinstance(producer, torch.fx.Node)
                and producer.op == "call_module" and isinstance(modules.get(producer.target), nn.Conv2d)
                and len(producer.users) == 1):
            conv = torch.nn.utils.fusion.fuse_conv_bn_eval(modules[producer.target], modules[node.target])
            for name, replacement in ((producer.target, conv), (node.target, nn.Identity())):
                parent, _, attribute = name.rpartition(".")
                setattr(folded.get_submodule(parent) if parent else folded, attribute, replacement)
    return folded
