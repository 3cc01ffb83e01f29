"""An ONNX file as a teacher: its graph run by torch, so gradients reach the input and synthesis can invert it.

:func:`load_onnx_model` turns an ``.onnx`` file into an :class:`OnnxModule`. Conv, Gemm,
MatMul-by-a-constant, BatchNormalization and LayerNormalization nodes become the torch
layers they describe (``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d`` with its running
statistics, ...), so the BatchNorm prior and everything that looks for layers works on a
graph that kept its BatchNorm nodes; every other node is one torch function
(:mod:`fastdfkd_plugin.teacher.onnx.operators`). Before the module is trusted, :func:`check_conversion`
runs it beside ONNX Runtime. An operator the converter lacks is refused in one sentence
naming it and its node, before anything is built.

Why an interpreter here and not ``onnx2torch``: that package requires torchvision, which
pulls a multi-GB CUDA torch beside a CPU one (see docs/onnx_teacher.md). The
``onnxruntime`` (or ``onnxruntime-gpu``) extra installs what this module needs.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import FastDFKDError, reason
from ...runtime.optional import require
from .operators import LAYERS, OPERATORS, Node, onnx_package

ONNX_SUFFIX = ".onnx"


def ort_runtime() -> Any:
    """ONNX Runtime, or one sentence naming the extra that installs it."""
    return require("onnxruntime", "onnxruntime", "ONNX Runtime", note=" (or [onnxruntime-gpu], never both)")


def session(model_path: str | Path, providers: Sequence[str] | None = None) -> Any:
    """An ONNX Runtime inference session (CPU unless ``providers`` say otherwise); a file it cannot load is one sentence."""
    ort = ort_runtime()
    try:
        return ort.InferenceSession(str(model_path), providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise FastDFKDError(f"ONNX Runtime cannot load {model_path} ({str(exc).strip().splitlines()[0][:200]})") from exc


# -- reading a file ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxInput:
    name: str
    shape: tuple[int | None, ...]  # None for symbolic dimensions


def read_onnx(model_path: str | Path, external_data: bool = True) -> Any:
    """The file's ``ModelProto``; a missing or unreadable file is one sentence."""
    onnx = onnx_package()
    path = Path(model_path)
    if not path.is_file():
        raise FastDFKDError(f"ONNX model {path} does not exist")
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise FastDFKDError(f"{path} is not a readable ONNX model ({exc.__class__.__name__}); re-export it") from exc


def onnx_input(model_path: str | Path) -> OnnxInput:
    """The model's single graph input (initializers excluded); a clear error for anything else."""
    return graph_input(read_onnx(model_path, external_data=False), str(model_path))


def graph_input(model: Any, label: str = "the ONNX model") -> OnnxInput:
    """The single graph input of a loaded ``ModelProto`` (initializers excluded)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise FastDFKDError(f"{label} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); only single-input models are supported")
    dims = inputs[0].type.tensor_type.shape.dim
    return OnnxInput(inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims))


def model_opset(model: Any) -> int:
    """The standard-domain opset a ``ModelProto`` was written for (13 where it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def static_input_shape(model_input: OnnxInput, path: str | Path) -> tuple[int, int, int]:
    """C,H,W from the ONNX model when they are fixed there (so --input-shape can be left out)."""
    chw = model_input.shape[1:]
    if len(chw) != 3 or any(d is None for d in chw):
        raise FastDFKDError(f"ONNX model {path} does not fix its C,H,W input sizes ([{_dims(model_input.shape)}]); pass --input-shape")
    return tuple(chw)  # type: ignore[return-value]


def check_input_shape(model_input: OnnxInput, input_shape: Sequence[int], path: str | Path) -> None:
    """Refuse an ONNX model whose fixed input dimensions contradict the teacher's C,H,W."""
    onnx_chw = model_input.shape[1:]
    if len(onnx_chw) != len(input_shape) or any(o is not None and o != s for o, s in zip(onnx_chw, input_shape)):
        raise FastDFKDError(
            f"ONNX model {path} takes input '{model_input.name}' of shape [{_dims(model_input.shape)}], which does not fit "
            f"the teacher's input shape {','.join(map(str, input_shape))}; export the model for that shape or fix --input-shape"
        )


def is_onnx_file(spec: str | Path) -> bool:
    return Path(spec).suffix.lower() == ONNX_SUFFIX


def _dims(shape: Sequence[int | None]) -> str:
    return ",".join("?" if d is None else str(d) for d in shape)


# -- the module -------------------------------------------------------------------------------------

class OnnxModule(nn.Module):
    """An ONNX graph run node by node with torch operations; layers it recognises are real torch layers.

    ``source`` is the file it came from (what ``quantize-onnx`` quantizes when no other graph is
    given). ``fixed_batch`` is the batch size the graph was exported with, or None if dynamic:
    Reshape targets that start with it take the input's batch instead, so a batch-1 export
    still synthesises in batches. A forward drops each intermediate after its last reader,
    so a graph costs about what the same network costs in eager torch.
    """

    def __init__(self, model: Any, source: Path | None = None) -> None:
        super().__init__()
        onnx = onnx_package()
        self.source = source
        opset = model_opset(model)
        self.opset = opset
        graph = model.graph
        model_input = graph_input(model, str(source or "the ONNX model"))
        self.input_name = model_input.name
        self.fixed_batch = model_input.shape[0] if model_input.shape and model_input.shape[0] not in (None, 0) else None
        self.output_names = [o.name for o in graph.output]
        nodes = [Node(proto, opset, onnx) for proto in graph.node]
        _refuse_unsupported(nodes, source)
        ranks = _value_ranks(model, onnx)
        constants = {init.name: _tensor(init, onnx) for init in graph.initializer}
        self.nodes = []
        for node in nodes:  # constants and their copies (torch.onnx.export shares equal weights through Identity) are buffers
            if node.op_type == "Constant":
                constants[node.outputs[0]] = _constant_value(node, onnx)
            elif node.op_type == "Identity" and node.inputs[0] in constants:
                constants[node.outputs[0]] = constants[node.inputs[0]]
            else:
                node.operator = OPERATORS[(_standard(node.domain), node.op_type)]  # looked up once, not per forward
                self.nodes.append(node)
        self.conversion_check: ConversionCheck | None = None  # set by load_onnx_model, with the C,H,W it checked
        self.input_shape: tuple[int, ...] | None = None
        self.layers = nn.ModuleDict()
        for node in self.nodes:
            build = LAYERS.get(node.op_type) if node.domain in ("", "ai.onnx", "com.microsoft") else None
            if build is None:
                continue
            node.rank = ranks.get(node.inputs[0])
            built = build(node, [constants.get(name) for name in node.inputs])
            if built is not None:
                node.layer = _unique(_module_name(node.name), self.layers)
                self.layers[node.layer] = built
        needed = {name for node in self.nodes if node.layer is None for name in node.inputs}
        needed |= set(self.output_names)
        self.constant_names: dict[str, str] = {}
        for name, value in constants.items():
            if name in needed:
                key = _unique(f"constant_{_module_name(name)}", self._buffers)
                self.register_buffer(key, value)
                self.constant_names[name] = key
        self.releases = _last_uses(self.nodes, self.output_names)

    def constant(self, name: str) -> torch.Tensor:
        return getattr(self, self.constant_names[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values: dict[str, Any] = {self.input_name: x}
        for name in self.constant_names:
            values[name] = self.constant(name)
        for node, released in zip(self.nodes, self.releases):
            if node.layer is not None:  # its other inputs are the layer's weights
                arguments = [values[node.inputs[0]]]
            else:
                arguments = [values[name] if name else None for name in node.inputs]
            try:
                result = node.operator(self, node, *arguments)
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:  # torch's complaint, placed in the graph
                shapes = ", ".join(str(tuple(a.shape)) for a in arguments if isinstance(a, torch.Tensor))
                raise FastDFKDError(f"{node.op_type} node {node.name!r} of {self.source or 'the ONNX model'} failed on "
                                    f"inputs of shape {shapes} ({reason(exc)}); check the input shape, or re-export "
                                    "the model with a dynamic batch axis") from exc
            results = result if isinstance(result, tuple) else (result,)
            values.update((name, value) for name, value in zip(node.outputs, results) if name)
            for name in released:  # an output the operator does not compute (Dropout's mask) was never set
                values.pop(name, None)
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def extra_repr(self) -> str:
        return f"source={self.source}, opset={self.opset}, nodes={len(self.nodes)}"


def _standard(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


def _node_inputs(node: Node) -> list[str]:
    """The values a node reads when it runs: a layer's other inputs are its weights."""
    return node.inputs[:1] if node.layer is not None else [name for name in node.inputs if name]


def _last_uses(nodes: list[Node], outputs: list[str]) -> list[tuple[str, ...]]:
    """For each node, the values no later node reads (its own unread outputs too), to drop once it has run.

    Without it a forward kept every intermediate to its end: PP-OCRv4's recognizer at a
    batch of 8 peaked 1.5 GB above its weights without gradients, 53 MB once they are
    dropped (with gradients 1.57 GB, then 1.05 GB: autograd keeps what backward needs).
    """
    last: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in [*_node_inputs(node), *(name for name in node.outputs if name)]:
            last[name] = index
    releases: list[list[str]] = [[] for _ in nodes]
    for name, index in last.items():
        if name not in outputs:
            releases[index].append(name)
    return [tuple(names) for names in releases]


def _refuse_unsupported(nodes: list[Node], source: Path | None) -> None:
    """One sentence for the first operator the interpreter cannot run: before anything is built."""
    for node in nodes:
        if (_standard(node.domain), node.op_type) not in OPERATORS and node.op_type != "Constant":
            where = f" ({node.domain})" if node.domain else ""
            raise FastDFKDError(
                f"{source or 'the ONNX model'} uses operator {node.op_type}{where} (node {node.name!r}), which the ONNX "
                "teacher converter does not support; re-export the model without it (e.g. a lower ORT optimisation "
                "level, or the standard opset), or use the torch model itself as the teacher")


def _value_ranks(model: Any, onnx: Any) -> dict[str, int]:
    """Tensor name → rank where shape inference can tell (which BatchNorm layer a node becomes)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a hint only; a graph it cannot handle still converts
        inferred = model
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}


def _tensor(proto: Any, onnx: Any) -> torch.Tensor:
    array = onnx.numpy_helper.to_array(proto)
    return torch.from_numpy(np.array(array, copy=True))


def _constant_value(node: Node, onnx: Any) -> torch.Tensor:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attributes:
            value = node.attributes[key]
            return _tensor(value, onnx) if key == "value" else torch.tensor(value)
    raise node.refuse("holds a sparse or string constant")


def _module_name(name: str) -> str:
    return re.sub(r"\W", "_", name).strip("_") or "node"


def _unique(name: str, taken: Any) -> str:
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    return candidate


# -- loading and checking -------------------------------------------------------------------------

@dataclass(frozen=True)
class ConversionCheck:
    """How the converted module compares with ONNX Runtime on the same random inputs."""

    samples: int
    max_abs_error: float
    max_rel_error: float  # max |torch − ORT| / max |ORT|
    top1_agreement: float | None  # percent, for 2-D (batch × scores) first outputs; None otherwise


ATOL, RTOL = 1e-4, 1e-3  # a converted graph may differ from ORT by either: absolute, or relative to the largest output
MIN_AGREEMENT = 99.0


def load_onnx_model(path: str | Path, input_shape: Sequence[int] | None = None, check: bool = True) -> OnnxModule:
    """``path`` as a torch module in eval mode, checked against ONNX Runtime unless ``check`` is False.

    ``input_shape`` (C,H,W) is needed only where the graph leaves a spatial size open.
    """
    path = Path(path)
    model = read_onnx(path)
    model_input = graph_input(model, str(path))
    if input_shape:
        check_input_shape(model_input, input_shape, path)
    module = OnnxModule(model, path).eval()
    module.input_shape = tuple(input_shape) if input_shape else static_input_shape(model_input, path)
    if check:
        module.conversion_check = check_conversion(module, path, module.input_shape)
    return module


@torch.no_grad()
def check_conversion(module: OnnxModule, path: str | Path, input_shape: Sequence[int], samples: int = 8,
                     seed: int = 0) -> ConversionCheck:
    """Run ``module`` and ONNX Runtime on the same N(0, 1) inputs; refuse in one sentence if they disagree.

    The batch is also run one sample at a time through the module: a graph that mixes
    samples (a fixed batch size baked in somewhere the converter cannot see) is refused.
    """
    runner = session(path)
    batch = module.fixed_batch or samples
    inputs = torch.randn((max(samples // batch, 1) * batch, *input_shape), generator=torch.Generator().manual_seed(seed))
    held = next(itertools.chain(module.parameters(), module.buffers()), None)  # a graph without weights holds no tensor
    device = held.device if held is not None else torch.device("cpu")
    ours = [_first(module(chunk.to(device))).float().cpu() for chunk in inputs.split(batch)]
    theirs = [torch.from_numpy(runner.run(None, {module.input_name: chunk.numpy()})[0]).float() for chunk in inputs.split(batch)]
    ours_all, theirs_all = torch.cat(ours), torch.cat(theirs)
    if ours_all.shape != theirs_all.shape:
        raise FastDFKDError(f"the converted {path} gives outputs of shape {tuple(ours_all.shape)} but ONNX Runtime gives "
                            f"{tuple(theirs_all.shape)}; use the torch model itself as the teacher")
    max_abs = (ours_all - theirs_all).abs().max().item()
    max_rel = max_abs / max(theirs_all.abs().max().item(), 1e-12)
    agreement = None
    if theirs_all.dim() == 2 and theirs_all.shape[1] > 1:
        agreement = 100.0 * (ours_all.argmax(1) == theirs_all.argmax(1)).float().mean().item()
    result = ConversionCheck(len(inputs), max_abs, max_rel, agreement)
    if (max_abs > ATOL and max_rel > RTOL) or (agreement is not None and agreement < MIN_AGREEMENT):
        raise FastDFKDError(f"the converted {path} does not reproduce ONNX Runtime (max relative error {max_rel:.2g}, "
                            f"top-1 agreement {agreement if agreement is not None else 'n/a'} %); use the torch model itself as the teacher")
    if len(inputs) > 1 and module.fixed_batch in (None, 1):
        single = torch.cat([_first(module(sample[None].to(device))).float().cpu() for sample in inputs[:2]])
        batched = _first(module(inputs[:2].to(device))).float().cpu()
        if (single - batched).abs().max().item() > max(ATOL, RTOL * single.abs().max().item()):
            raise FastDFKDError(f"{path} fixes its batch size in a way the converter cannot undo (outputs depend on the "
                                "batch); re-export it with a dynamic batch axis (dynamic_axes={'input': {0: 'batch'}})")
    return result


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output
