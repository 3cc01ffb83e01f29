"""Everything the synthesizers need to know about a teacher, without changing it.

The teacher is never modified: :func:`frozen` puts it in eval mode with
``requires_grad`` off (no wasted weight gradients) and restores both on exit,
whatever happens inside. Weights and BatchNorm running statistics are untouched
because BatchNorm in eval mode only reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import FastDFKDError

OutputTransform = Callable[[object], torch.Tensor]


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; the original flags restored after."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


def fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors live (CPU for a model without any)."""
    tensor = next(iter(model.state_dict().values()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose running statistics the synthesizers invert."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@dataclass(frozen=True)
class TeacherInfo:
    """What a probe forward pass tells about a teacher."""

    num_classes: int
    fingerprint: str
    num_batchnorm: int


def inspect_teacher(
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    output_transform: OutputTransform | None = None,
    require_batchnorm: bool = True,
) -> TeacherInfo:
    """Check that ``model`` can serve as a teacher for ``input_shape``; explain what is wrong if not."""
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        raise FastDFKDError(f"input shape {tuple(input_shape)} is not C,H,W with positive sizes; pass e.g. 3,32,32")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FastDFKDError(f"teacher tensor {name!r} holds NaN or Inf values; load finite weights first")
    bn_layers = batchnorm_layers(model)
    if require_batchnorm and not bn_layers:
        raise FastDFKDError(
            "the teacher has no BatchNorm layers with running statistics, which this source inverts; "
            "use a BatchNorm model or the 'gaussian'/'uniform' sources"
        )
    with frozen(model), torch.no_grad():
        try:
            output = model(torch.zeros(2, *input_shape, device=device))
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise FastDFKDError(
                f"the teacher cannot take inputs of shape {tuple(input_shape)} ({first_line}); check --input-shape"
            ) from exc
    logits = teacher_logits(output, output_transform)
    if logits.dim() != 2 or logits.shape[0] != 2:
        raise FastDFKDError(
            f"the teacher's output has shape {tuple(logits.shape)}, not batch×classes; "
            "pass output_transform to pick the class logits"
        )
    return TeacherInfo(num_classes=int(logits.shape[1]), fingerprint=fingerprint(model), num_batchnorm=len(bn_layers))


def teacher_logits(output: object, output_transform: OutputTransform | None = None) -> torch.Tensor:
    """Apply the user's ``output_transform``; insist on a tensor of logits."""
    if output_transform is not None:
        output = output_transform(output)
    if not isinstance(output, torch.Tensor):
        raise FastDFKDError(
            f"the teacher returned a {type(output).__name__}, not a tensor of logits; "
            "pass output_transform (e.g. lambda out: out[0]) to pick the logits"
        )
    return output
