"""The teacher: one object, built once, that every part of the pipeline takes.

A :class:`Teacher` holds the user's model on its device, the input shape and
normalisation it expects, the ``output_transform`` that picks the outputs that matter,
and what a probe forward pass tells about it: its :class:`~fastdfkd_plugin.teacher.tasks.PredictionTask`
(class logits, class maps, or generic outputs; what they mean to every other part) and
:class:`TeacherInfo` (class count, fingerprint, BatchNorm layers). Sources, the
distillation loop, pruning, the adapters and the CLI all get outputs through it.

The teacher is never modified: :func:`frozen` puts it in eval mode with
``requires_grad`` off (no wasted weight gradients) and restores both on exit,
whatever happens inside. Weights and BatchNorm running statistics are untouched
because BatchNorm in eval mode only reads them. A model that lives on another device
than the one asked for is copied there, never moved. A model wrapped by ``torch.compile``
runs eager (:func:`uncompiled` says why).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode

from ..errors import FastDFKDError
from ..runtime.devices import resolve_device
from .inputspace import InputSpace
from .onnx.graph import OnnxModule, is_onnx_file, load_onnx_model
from .tasks import Outputs, PredictionTask, cat_outputs, describe, make_task, map_outputs, output_leaves

OutputTransform = Callable[[Any], Any]
log = logging.getLogger(__name__)


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


def uncompiled(model: nn.Module) -> nn.Module:
    """The eager module inside a ``torch.compile`` wrapper (``model`` itself otherwise).

    Priors and the set statistics watch the teacher through forward hooks added after it
    was compiled, and Dynamo does not guard on hooks by default, so its cached graphs run
    without them: the BatchNorm prior would see nothing. Running eager keeps them honest.
    """
    dynamo = sys.modules.get("torch._dynamo")  # imported by torch.compile; importing it here would cost seconds
    if dynamo is not None and isinstance(model, dynamo.eval_frame.OptimizedModule):
        log.warning("the teacher came through torch.compile; it runs eager here, because the inversion priors "
                    "watch its layers through forward hooks that compiled graphs skip")
        return model._orig_mod
    return model


def fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def forward_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of one forward pass (convolutions, linear layers, matrix products)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() // 2


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors live (CPU for a model without any)."""
    tensor = next(iter(model.state_dict().values()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers with running statistics: what the synthesizers invert and re-estimation refits."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def outputs_of(output: Any, output_transform: OutputTransform | None = None) -> Outputs:
    """A model's raw output with ``output_transform`` applied (what the teacher's task reads)."""
    return output if output_transform is None else output_transform(output)


@dataclass(frozen=True)
class TeacherInfo:
    """What a probe forward pass tells about a teacher."""

    num_classes: int | None  # None where the outputs are not class scores
    fingerprint: str
    num_batchnorm: int
    task: str


class Teacher:
    """The user's trained model and everything the pipeline needs to know about it.

    ``device="auto"`` picks CUDA when present; ``None`` keeps the model where it is.
    ``mean``/``std`` are the per-channel normalisation of the model's inputs (0 and 1
    if not given). ``output_transform`` maps the model's raw output to the outputs that
    matter (e.g. ``lambda out: out[0]`` for a model returning ``(logits, features)``).
    ``task`` says what those outputs are (``"auto"``: recognised from a probe batch;
    ``"classification"``, ``"segmentation"``, ``"generic"`` or a plugin's).
    Construction checks the model once: finite weights, inputs of ``input_shape``
    accepted, outputs its task can read. ``model`` may be the path of an ``.onnx`` file:
    its graph runs in torch (:mod:`fastdfkd_plugin.teacher.onnx.graph`) and gives ``input_shape``
    where it fixes one.
    """

    def __init__(
        self,
        model: nn.Module | str | Path,
        input_shape: Sequence[int] | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device | None = "auto",
        output_transform: OutputTransform | None = None,
        task: str | PredictionTask = "auto",
    ) -> None:
        if isinstance(model, Teacher):
            raise FastDFKDError("this is already a Teacher; pass it as it is (Teacher.of accepts both)")
        if isinstance(model, (str, Path)) and is_onnx_file(model):
            model = load_onnx_model(model, input_shape)
        if input_shape is None and isinstance(model, OnnxModule):  # a converted graph knows the shape it was checked at
            input_shape = model.input_shape
        if not isinstance(model, nn.Module):
            raise FastDFKDError(f"the teacher must be a torch.nn.Module, got a {type(model).__name__}")
        model = uncompiled(model)
        if input_shape is None:
            raise FastDFKDError("the teacher's input shape is unknown; pass input_shape (C,H,W), or --input-shape "
                                "on the command line, e.g. 3,32,32")
        self.input_shape = _check_input_shape(input_shape)
        self.device = model_device(model) if device is None else resolve_device(device)
        self.model = model if model_device(model) == self.device else copy.deepcopy(model).to(self.device)
        self.output_transform = output_transform
        self.space = InputSpace(self.input_shape[0], mean, std, self.device)
        self.task, self.info = self._probe(task)

    @classmethod
    def of(
        cls,
        teacher: Teacher | nn.Module | str | Path,
        input_shape: Sequence[int] | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device | None = None,
        output_transform: OutputTransform | None = None,
        task: str | PredictionTask | None = None,
    ) -> Teacher:
        """``teacher`` itself if it is a :class:`Teacher` (refusing options that contradict it), else a new one."""
        if not isinstance(teacher, Teacher):
            return cls(teacher, input_shape, mean=mean, std=std, device=device, output_transform=output_transform,
                       task=task or "auto")
        given = {
            "input_shape": (None if input_shape is None else _check_input_shape(input_shape), teacher.input_shape),
            "mean": (None if mean is None else [float(v) for v in mean], teacher.space.mean_values),
            "std": (None if std is None else [float(v) for v in std], teacher.space.std_values),
            "device": (None if device in (None, "auto") else resolve_device(device), teacher.device),
            "output_transform": (output_transform, teacher.output_transform),
            "task": (None if task in (None, "auto") else getattr(task, "name", task), teacher.task.name),
        }
        for name, (value, own) in given.items():
            if value is not None and value != own:
                raise FastDFKDError(f"{name} is already set on the Teacher ({own}); set it there, not here")
        return teacher

    # -- outputs ----------------------------------------------------------------------------
    def outputs(self, inputs: torch.Tensor) -> Outputs:
        """The teacher's outputs (class logits for a classifier) for normalised ``inputs``; gradients flow if wanted."""
        return self.outputs_from(self.model(inputs))

    def outputs_from(self, output: Any) -> Outputs:
        """Outputs from the raw output of the teacher or of a model with its outputs (a pruned copy, a quantized one)."""
        return outputs_of(output, self.output_transform)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, batch_size: int = 256) -> Outputs:
        """Float outputs for any number of inputs, in chunks, on the teacher's device, with the teacher frozen."""
        with self.frozen():
            return cat_outputs([map_outputs(torch.Tensor.float, self.outputs(chunk.to(self.device)))
                                for chunk in inputs.split(batch_size)])

    # -- safety -----------------------------------------------------------------------------
    def frozen(self) -> contextlib.AbstractContextManager[nn.Module]:
        return frozen(self.model)

    def batchnorm_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return batchnorm_layers(self.model)

    @functools.cached_property
    def macs_per_image(self) -> int:
        """Multiply-adds of one forward pass per image: what a generator is sized against."""
        with self.frozen():
            return forward_macs(self.model, torch.zeros(2, *self.input_shape, device=self.device)) // 2

    def _probe(self, task: str | PredictionTask) -> tuple[PredictionTask, TeacherInfo]:
        tensors = {name: tensor for name, tensor in self.model.state_dict().items() if tensor.is_floating_point()}
        dtypes = sorted({str(tensor.dtype).removeprefix("torch.") for tensor in tensors.values()} - {"float32"})
        if dtypes:
            raise FastDFKDError(
                f"the teacher's weights are {'/'.join(dtypes)}, but it is fed float32 inputs; convert it with model.float() "
                "(for mixed precision use autocast_dtype, --bf16 on the command line)"
            )
        for name, tensor in tensors.items():
            if not torch.isfinite(tensor).all():
                raise FastDFKDError(f"teacher tensor {name!r} holds NaN or Inf values; load finite weights first")
        with self.frozen(), torch.no_grad():
            try:
                output = self.model(torch.zeros(2, *self.input_shape, device=self.device))
            except RuntimeError as exc:
                first_line = str(exc).strip().splitlines()[0]
                raise FastDFKDError(
                    f"the teacher cannot take inputs of shape {self.input_shape} ({first_line}); check --input-shape"
                ) from exc
        outputs = self.outputs_from(output)
        if any(leaf.dim() == 0 or leaf.shape[0] != 2 for leaf in output_leaves(outputs)):
            raise FastDFKDError(f"for a batch of 2 the teacher returns {describe(outputs)}, which does not keep the batch "
                                "as the first dimension; pick batched outputs with output_transform (--output-index/--output-key)")
        task = make_task(task, outputs)
        return task, TeacherInfo(task.num_classes, fingerprint(self.model), len(self.batchnorm_layers()), task.name)

    def __repr__(self) -> str:
        return (f"Teacher({type(self.model).__name__}, input_shape={self.input_shape}, device={self.device}, "
                f"task={self.task.name}, classes={self.info.num_classes}, fingerprint={self.info.fingerprint})")


def unflatten_like(reference: Any, leaves: Sequence[Any]) -> Any:
    """Rebuild ``leaves`` (e.g. an ONNX model's flat outputs) in the structure of ``reference`` (the torch output).

    Exporters flatten tuple and dict outputs in order; putting the structure back lets
    the teacher's ``output_transform`` pick the logits from either.
    """
    reference_leaves, spec = pytree.tree_flatten(reference)
    if len(reference_leaves) != len(leaves):
        raise FastDFKDError(f"the exported model has {len(leaves)} outputs but torch returns {len(reference_leaves)}; "
                            "they are different models")
    return pytree.tree_unflatten(list(leaves), spec)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise FastDFKDError(f"input shape {shape} is not C,H,W with positive sizes; pass e.g. 3,32,32")
    return shape  # type: ignore[return-value]
