"""Load a teacher from a CLI ``SPEC`` and weights from a file, safely by default.

``SPEC`` is ``path/to/file.py:callable``, ``package.module:callable`` (the callable
returns an ``nn.Module``), a TorchScript file, or an ONNX file (run by torch through
:mod:`fastdfkd_plugin.teacher.onnx.graph`, checked against ONNX Runtime). Weights load with
``weights_only=True``; a fully pickled module loads only with ``allow_pickle=True``,
because unpickling runs code from the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import FastDFKDError, reason
from ..runtime.io import load_torch
from .attention import head_width, prunable_attention, restore_head_counts
from .onnx.graph import is_onnx_file, load_onnx_model


def load_model(spec: str, weights: str | None = None, allow_pickle: bool = False,
               input_shape: Sequence[int] | None = None) -> nn.Module:
    """Build the model named by ``spec`` and load ``weights`` into it (if given).

    ``input_shape`` (C,H,W) matters only for an ONNX file that leaves a size open: its conversion is checked at it.
    """
    if is_onnx_file(spec):
        if weights is not None:
            raise FastDFKDError(f"{spec} is an ONNX file, which holds its own weights; drop --weights")
        return load_onnx_model(spec, input_shape)
    model = _build(spec, allow_pickle)
    if weights is not None:
        load_weights(model, weights, allow_pickle)
    return model


def _build(spec: str, allow_pickle: bool) -> nn.Module:
    path = Path(spec)
    if path.suffix in {".pt", ".pth", ".ts", ".jit"} and ":" not in path.name:
        return _load_file_model(path, allow_pickle)
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not attr:
        raise FastDFKDError(
            f"model spec {spec!r} is not 'path/to/file.py:callable', 'package.module:callable' or a TorchScript file"
        )
    module = _import(module_part)
    factory = getattr(module, attr, None)
    if factory is None:
        raise FastDFKDError(f"{module_part!r} has no attribute {attr!r}; check the name after the colon")
    if callable(factory) and not isinstance(factory, nn.Module):
        try:
            model = factory()
        except Exception as exc:  # the user's factory may raise anything
            raise FastDFKDError(f"{spec!r} raised {reason(exc)} when called; fix the factory or choose another") from exc
    else:
        model = factory
    if not isinstance(model, nn.Module):
        raise FastDFKDError(f"{spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(module_part: str) -> Any:
    if module_part.endswith(".py"):
        file = Path(module_part)
        if not file.is_file():
            raise FastDFKDError(f"model file {file} does not exist; check the path before the colon")
        name = f"fastdfkd_user_model_{abs(hash(file.resolve()))}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file may raise anything while it is imported
            del sys.modules[name]
            raise FastDFKDError(f"importing model file {file} failed ({reason(exc)}); fix that file") from exc
        return module
    try:
        return importlib.import_module(module_part)
    except ImportError as exc:
        raise FastDFKDError(f"cannot import {module_part!r} ({exc}); install it or give a path/to/file.py") from exc
    except Exception as exc:  # the module itself raised while being imported
        raise FastDFKDError(f"importing {module_part!r} failed ({reason(exc)}); fix that module") from exc


def _load_file_model(path: Path, allow_pickle: bool) -> nn.Module:
    if not path.is_file():
        raise FastDFKDError(f"model file {path} does not exist")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, zipfile.BadZipFile):
        pass
    if not allow_pickle:
        raise FastDFKDError(
            f"{path} is not a TorchScript file; if it is a pickled nn.Module you trust, pass --allow-pickle "
            "(this runs code from the file), or give SPEC as file.py:callable with --weights"
        )
    model = load_torch(path, "model file", missing="check the path", unreadable="check that it is a PyTorch file",
                       weights_only=False)
    if not isinstance(model, nn.Module):
        raise FastDFKDError(f"{path} holds a {type(model).__name__}, not an nn.Module; pass it with --weights instead")
    return model


PRUNED_FORMAT = "fastdfkd-pruned"


def load_weights(model: nn.Module, path: str | Path, allow_pickle: bool = False) -> None:
    """Load a state dict (optionally under a ``state_dict`` key, optionally ``module.``-prefixed).

    A file written by ``fastdfkd prune`` (format ``fastdfkd-pruned``) first shrinks the
    model's layers to the pruned shapes, so the unpruned model's SPEC loads it.
    """
    state = load_torch(path, "weights file", missing="check the path", unreadable="check that it is a PyTorch file",
                       weights_only=not allow_pickle)
    if isinstance(state, dict) and state.get("format") == PRUNED_FORMAT:
        fit_layers_to_state_dict(model, state["state_dict"])
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise FastDFKDError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FastDFKDError(f"the weights in {path} do not fit the model ({_mismatch(model, state)}); "
                            "check --model and --weights") from exc


def _mismatch(model: nn.Module, state: dict[str, Any]) -> str:
    """The first few keys and shapes in which ``state`` and ``model`` disagree."""
    own = model.state_dict()
    shapes = [f"{key} is {tuple(value.shape)} in the file but {tuple(own[key].shape)} in the model"
              for key, value in state.items() if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape]
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    parts = shapes[:2]
    if missing:
        parts.append(f"{len(missing)} model tensors missing from the file, e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors in the file the model lacks, e.g. {', '.join(unexpected[:3])}")
    return "; ".join(parts) or "the tensors differ"


def fit_layers_to_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Resize Conv/Linear/BatchNorm layers to the tensor shapes in ``state`` (a pruned model's weights).

    Structured pruning only removes channels (attention: whole heads), so shapes are all a
    pruned model needs; no pickled module (which would run code on loading) has to be stored.
    """
    head_widths = {name: head_width(module) for name, module in prunable_attention(model).items()}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        changed = [(key, t) for key, t in tensors if prefix + key in state and state[prefix + key].shape != t.shape]
        if not changed:
            continue
        resizable = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm)
        if not isinstance(module, resizable) or getattr(module, "running_mean", 0) is None:
            raise FastDFKDError(f"layer {name!r} ({type(module).__name__}) has pruned shapes that cannot be restored; only Conv, Linear and BatchNorm (with running statistics) layers can")
        for key, tensor in changed:
            fresh = torch.empty(state[prefix + key].shape, dtype=tensor.dtype, device=tensor.device)
            if isinstance(tensor, nn.Parameter):
                setattr(module, key, nn.Parameter(fresh, requires_grad=tensor.requires_grad))
            else:
                module.register_buffer(key, fresh)
        _update_layer_sizes(module)
    restore_head_counts(model, head_widths)
    return model


def _update_layer_sizes(module: nn.Module) -> None:
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = 1 < module.groups == module.in_channels
        module.out_channels = module.weight.shape[0]
        module.groups = module.out_channels if depthwise else module.groups
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    else:
        module.num_features = module.running_mean.shape[0]

