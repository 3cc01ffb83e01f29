"""A compressed model from what a command wrote: an ONNX graph (run by ONNX Runtime, as it will be deployed), a
``.pt2`` exported program (``quantize-torch``), or a torch model SPEC with weights (``prune``, ``distill``).

Whatever it is comes back as a callable from a batch of normalised inputs to outputs in the
teacher's structure, checked on a probe batch: a model that does not take the teacher's
inputs or does not return outputs of the teacher's shapes is refused in one sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import FastDFKDError, reason
from ..runtime.optional import require
from ..teacher.loading import load_model
from ..teacher.onnx.graph import session
from ..teacher.tasks import output_leaves
from ..teacher.teacher import Teacher, unflatten_like

CompressedModel = Callable[[torch.Tensor], Any]


class OrtModel:
    """An ONNX Runtime session as a callable on torch batches, its outputs put back in the teacher's structure."""

    def __init__(self, path: str | Path, teacher: Teacher, reference: Any = None) -> None:
        """``reference``: the teacher's raw output on :func:`probe`'s inputs, when the caller has it already."""
        self.path, self.reference = path, probe(teacher)[1] if reference is None else reference
        self.session = session(path)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.fixed_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None  # a plain export fixes 1

    def __call__(self, inputs: torch.Tensor) -> Any:
        array = inputs.detach().cpu().numpy().astype(np.float32)
        size = self.fixed_batch or len(array)
        padded = np.concatenate([array, np.repeat(array[-1:], -len(array) % size, axis=0)])  # whole fixed batches
        runs = [self.session.run(None, {self.input_name: chunk}) for chunk in np.split(padded, len(padded) // size)]
        leaves = [torch.from_numpy(np.concatenate(parts)[: len(array)]) for parts in zip(*runs)]
        return unflatten_like(self.reference, leaves)


def load_compressed(spec: str | Path, teacher: Teacher, weights: str | Path | None = None,
                    allow_pickle: bool = False) -> CompressedModel:
    """The compressed model ``spec`` names (``.onnx``, ``.pt2``, or a model SPEC with ``weights``), checked against ``teacher``."""
    inputs, reference = probe(teacher)
    suffix = Path(str(spec)).suffix
    if suffix == ".onnx":
        model: CompressedModel = OrtModel(spec, teacher, reference)
    elif suffix == ".pt2":
        require("torchao.quantization.pt2e.quantize_pt2e", "torchao", "torchao, which registers the quantized ops of a .pt2,")
        if not Path(spec).is_file():
            raise FastDFKDError(f"compressed model {spec} does not exist; check the path")
        model = torch.export.load(str(spec)).module()
    else:
        model = load_model(str(spec), weights, allow_pickle=allow_pickle, input_shape=teacher.input_shape).to(teacher.device)
        model.eval().requires_grad_(False)  # judged as deployed; a fresh copy, so nothing of the caller's changes
    check_matches(model, teacher, inputs, reference, str(spec))
    return model


@torch.no_grad()
def probe(teacher: Teacher) -> tuple[torch.Tensor, Any]:
    """Two inputs in the teacher's space and its raw output on them: the structure compressed outputs are put back in."""
    pixels = torch.rand(2, *teacher.input_shape, generator=torch.Generator().manual_seed(0))
    inputs = teacher.space.normalize(pixels.to(teacher.device))
    with teacher.frozen():
        return inputs, teacher.model(inputs)


@torch.no_grad()
def check_matches(model: CompressedModel, teacher: Teacher, inputs: torch.Tensor, reference: Any, label: str) -> None:
    """Refuse, in one sentence naming both shapes, a model that cannot take the teacher's inputs or gives other outputs."""
    try:
        outputs = model(inputs)
    except Exception as exc:  # torch, ONNX Runtime and exported programs raise their own types
        raise FastDFKDError(f"{label} cannot run on the teacher's input of shape {tuple(inputs.shape)} ({reason(exc)}); "
                            "compress the model for that input shape or fix --input-shape") from exc
    expected = [tuple(leaf.shape) for leaf in output_leaves(teacher.outputs_from(reference))]
    got = [tuple(leaf.shape) for leaf in output_leaves(teacher.outputs_from(outputs))]
    if got != expected:
        raise FastDFKDError(f"{label} returns outputs of shape {', '.join(map(str, got))} but the teacher's are "
                            f"{', '.join(map(str, expected))}; compare a model with the teacher it was compressed from")
