"""Shared fixtures: tiny BatchNorm teachers that make synthesis fast enough for tests."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from models import TinyNet, make_teacher
from torch import nn

from fastdfkd_plugin import get_source
from fastdfkd_plugin.hooks.manager import get_plugin_manager

SHAPE = (3, 32, 32)
MODELS = Path(__file__).with_name("models.py")
# Few, cheap steps: tests check behaviour, benchmarks check quality.
FAST = dict(steps=2, warmup_tasks=2, latent_dim=32, device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own warm-state cache: nothing is read from or written to the user's."""
    monkeypatch.setenv("FASTDFKD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def teacher() -> TinyNet:
    return make_teacher()


@pytest.fixture
def synthetic(teacher):
    """32 fastdfkd images of the tiny teacher, in batches of 8."""
    return get_source("fastdfkd", teacher, SHAPE, **FAST).synthetic_set(32, batch_size=8)


@pytest.fixture
def onnx_file(teacher, tmp_path):
    """The tiny teacher exported to ONNX (dynamic batch)."""
    from fastdfkd_plugin.adapters.onnx_export import export_onnx

    path = tmp_path / "teacher.onnx"
    export_onnx(teacher, torch.zeros(1, *SHAPE), path)
    return path


def run_session(path, inputs):
    """The first output of an ONNX model on ``inputs``, run by the real ONNX Runtime."""
    import onnxruntime

    runner = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return runner.run(None, {runner.get_inputs()[0].name: np.asarray(inputs, dtype=np.float32)})[0]


def quantized_weights(path) -> dict[str, np.ndarray]:
    """The integer weight tensors (Conv / Gemm) of a QDQ model, by initializer name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {item.name: item for item in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        item = weights.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if item is not None and item.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.INT4) and len(item.dims) > 1:
            found[item.name] = numpy_helper.to_array(item).astype(np.int32)
    return found


def onnx_runtime_missing(monkeypatch) -> None:
    """Make ``import onnxruntime`` (and its quantization tool) fail in this test, as on a machine without it."""
    for name in [module for module in sys.modules if module == "onnxruntime" or module.startswith("onnxruntime.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``fastdfkd ARGS``, argparse usage errors included."""
    from fastdfkd_plugin.cli.main import main

    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def state_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def registered(plugin, name):
    """Register ``plugin`` for the duration of the block, as a third-party plugin would be."""
    manager = get_plugin_manager()
    manager.register(plugin, name=name)
    try:
        yield plugin
    finally:
        manager.unregister(plugin)


def priors_built_by(monkeypatch, module) -> list[str]:
    """The prior and its weight (``"generic ×3"``) of every source ``module`` builds through its ``get_source`` from now on
    (the real sources, only watched)."""
    priors: list[str] = []

    def watched(*args, **options):
        source = get_source(*args, **options)
        settings = source.settings()
        priors.append(f"{settings['prior']} ×{settings['loss_weights']['prior']:g}")
        return source

    monkeypatch.setattr(module, "get_source", watched)
    return priors
