"""How each ONNX operator runs in torch: one function per operator, and the torch layer for those that have one.

:data:`OPERATORS` maps ``(domain, op type)`` to a function ``(module, node, *inputs)``;
:data:`LAYERS` maps an op type to a builder that turns the node and its constant inputs
into a torch layer (``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d`` with running
statistics, ``nn.LayerNorm``), or None where the node must stay a function. Adding an
operator is one decorated function here. :mod:`fastdfkd_plugin.teacher.onnx.graph` runs them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FastDFKDError
from ...runtime.optional import require


def onnx_package() -> Any:
    return require("onnx", "onnxruntime", "the onnx package", note=" (or [onnxruntime-gpu])")


# -- operators --------------------------------------------------------------------------------------

class Node:
    """One graph node as the operators see it: its type, name, attributes and the opset it was written for."""

    def __init__(self, proto: Any, opset: int, onnx: Any) -> None:
        self.op_type, self.domain, self.opset = proto.op_type, proto.domain, opset
        self.name = proto.name or (proto.output[0] if proto.output else proto.op_type)
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.attributes = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
        self.rank: int | None = None  # of the first input, where shape inference tells (BatchNorm1d/2d/3d)
        self.layer: str | None = None  # the key of the torch layer it became, in OnnxModule.layers
        self.operator: Operator | None = None  # how it runs, from OPERATORS

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attributes.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def refuse(self, what: str) -> FastDFKDError:
        return FastDFKDError(f"{self.op_type} node {self.name!r} {what}; re-export the model without it, or run the "
                             "torch model itself as the teacher")


Operator = Callable[..., Any]  # (module, node, *inputs) -> output tensor or tuple of them
OPERATORS: dict[tuple[str, str], Operator] = {}  # (domain, op type) → how to run it; "" is the standard domain
LAYERS: dict[str, Callable[[Node, list[Any]], nn.Module | None]] = {}  # op type → the torch layer for its constants


def operator(*op_types: str, domain: str = "") -> Callable[[Operator], Operator]:
    def register(function: Operator) -> Operator:
        for op_type in op_types:
            OPERATORS[(domain, op_type)] = function
        return function
    return register


def layer(op_type: str) -> Callable:
    def register(function: Callable) -> Callable:
        LAYERS[op_type] = function
        return function
    return register


def _elementwise(op_type: str, function: Callable[..., torch.Tensor]) -> None:
    OPERATORS[("", op_type)] = lambda module, node, *inputs: function(*inputs)


for _name, _function in {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
    "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Reciprocal": torch.reciprocal, "Erf": torch.erf,
    "Floor": torch.floor, "Ceil": torch.ceil, "Sin": torch.sin, "Cos": torch.cos, "Not": torch.logical_not,
    "Softplus": F.softplus, "Softsign": F.softsign, "Mish": F.mish, "Identity": lambda x: x,
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow, "Equal": torch.eq, "Greater": torch.gt,
    "Less": torch.lt, "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le, "And": torch.logical_and,
    "Or": torch.logical_or, "Where": torch.where, "PRelu": lambda x, slope: torch.where(x >= 0, x, x * slope),
}.items():
    _elementwise(_name, _function)


@operator("Div")
def _div(module, node, a, b):
    return torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b


@operator("Max", "Min", "Sum", "Mean")
def _variadic(module, node, *inputs):
    combine = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add, "Mean": torch.add}[node.op_type]
    result = inputs[0]
    for other in inputs[1:]:
        result = combine(result, other)
    return result / len(inputs) if node.op_type == "Mean" else result


@operator("LeakyRelu")
def _leaky_relu(module, node, x):
    return F.leaky_relu(x, node.attr("alpha", 0.01))


@operator("Elu", "Celu", "Selu")
def _exponential_units(module, node, x):
    if node.op_type == "Selu":
        return node.attr("gamma", 1.0507009873554805) * F.elu(x, node.attr("alpha", 1.6732632423543772))
    return (F.elu if node.op_type == "Elu" else F.celu)(x, node.attr("alpha", 1.0))


@operator("HardSigmoid")
def _hard_sigmoid(module, node, x):
    return torch.clamp(node.attr("alpha", 0.2) * x + node.attr("beta", 0.5), 0, 1)


@operator("HardSwish")
def _hard_swish(module, node, x):
    return F.hardswish(x)


@operator("Gelu")
def _gelu(module, node, x):
    return F.gelu(x, approximate=node.attr("approximate", "none"))


@operator("Clip")
def _clip(module, node, x, low=None, high=None):
    if node.opset < 11:
        low, high = node.attr("min"), node.attr("max")
    return torch.clamp(x, _scalar(low), _scalar(high))


def _scalar(value: Any) -> float | None:
    return None if value is None else float(value) if not isinstance(value, torch.Tensor) else value.item()


@operator("Softmax", "LogSoftmax")
def _softmax(module, node, x):
    function = torch.softmax if node.op_type == "Softmax" else torch.log_softmax
    if node.opset >= 13:
        return function(x, node.attr("axis", -1))
    axis = node.attr("axis", 1) % x.dim()  # before opset 13: over all dimensions from axis on, flattened
    return function(x.flatten(axis), axis).reshape(x.shape)


@operator("Conv", "ConvTranspose")
def _conv(module, node, x, *constants):
    layer = module.layers[node.layer]
    return layer(_pad_same(node, x, getattr(layer, "kernel_size", None)))


@operator("FusedConv", domain="com.microsoft")
def _fused_conv(module, node, x, *constants):
    activation = node.attr("activation")
    out = _conv(module, node, x)
    parameters = node.attr("activation_params", [])
    if activation == "Relu":
        return torch.relu(out)
    if activation == "Clip":
        return torch.clamp(out, *parameters)
    if activation in ("Sigmoid", "Tanh"):
        return getattr(torch, activation.lower())(out)
    if activation == "LeakyRelu":
        return F.leaky_relu(out, *parameters)
    if activation == "HardSigmoid":
        return torch.clamp(parameters[0] * out + parameters[1], 0, 1)
    raise node.refuse(f"fuses activation {activation!r}, which is not supported")


def _pad_same(node: Node, x: torch.Tensor, kernel: Sequence[int] | None = None) -> torch.Tensor:
    """``auto_pad`` SAME_UPPER/SAME_LOWER padding (TensorFlow-style graphs): explicit, as torch's layers cannot."""
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return x
    spatial = x.shape[2:]
    kernel = node.attr("kernel_shape") or kernel  # a Conv may leave it to its weights
    strides = node.attr("strides", [1] * len(spatial))
    dilations = node.attr("dilations", [1] * len(spatial))
    pads: list[int] = []
    for size, k, s, d in reversed(list(zip(spatial, kernel, strides, dilations))):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pads += [small, large] if auto_pad == "SAME_UPPER" else [large, small]
    return F.pad(x, pads)


def _explicit_pads(node: Node, rank: int) -> tuple[list[int], list[int] | None]:
    """A layer's symmetric padding, and the F.pad list for asymmetric ``pads`` (None when symmetric)."""
    pads = node.attr("pads", [0] * 2 * rank)
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return begin, None
    return [0] * rank, [p for b, e in zip(reversed(begin), reversed(end)) for p in (b, e)]


def _convolution_parts(node: Node, constants: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None, int, list[int], list[int] | None]:
    """A (transposed) convolution node's weight, bias, spatial rank, symmetric padding and asymmetric F.pad list."""
    weight, bias = constants[1], constants[2] if len(constants) > 2 else None
    if weight is None:
        raise node.refuse("takes its weights from another node, not from the file")
    rank = weight.dim() - 2
    return weight, bias, rank, *_explicit_pads(node, rank)


@layer("Conv")
@layer("FusedConv")
def _conv_layer(node: Node, constants: list[Any]) -> nn.Module:
    weight, bias, rank, padding, asymmetric = _convolution_parts(node, constants)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1](
        weight.shape[1] * node.attr("group", 1), weight.shape[0], tuple(weight.shape[2:]),
        stride=tuple(node.attr("strides", [1] * rank)), padding=tuple(padding),
        dilation=tuple(node.attr("dilations", [1] * rank)), groups=node.attr("group", 1), bias=bias is not None)
    _assign(conv, weight, bias)
    return conv if asymmetric is None else nn.Sequential(_Pad(asymmetric), conv)


@layer("ConvTranspose")
def _conv_transpose_layer(node: Node, constants: list[Any]) -> nn.Module:
    weight, bias, rank, padding, asymmetric = _convolution_parts(node, constants)
    if asymmetric is not None or node.attr("output_shape") is not None or node.attr("auto_pad", "NOTSET") != "NOTSET":
        raise node.refuse("pads asymmetrically or sets output_shape/auto_pad")
    group = node.attr("group", 1)
    conv = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[rank - 1](
        weight.shape[0], weight.shape[1] * group, tuple(weight.shape[2:]), stride=tuple(node.attr("strides", [1] * rank)),
        padding=tuple(padding), output_padding=tuple(node.attr("output_padding", [0] * rank)), groups=group,
        bias=bias is not None, dilation=tuple(node.attr("dilations", [1] * rank)))
    _assign(conv, weight, bias)
    return conv


class _Pad(nn.Module):
    """Zero padding in front of a convolution whose ONNX pads differ at the two ends (torch layers pad both alike)."""

    def __init__(self, pads: list[int]) -> None:
        super().__init__()
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


def _assign(target: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    with torch.no_grad():
        target.weight.copy_(weight)
        if bias is not None:
            target.bias.copy_(bias.reshape(target.bias.shape))


@operator("Gemm")
def _gemm(module, node, a, b=None, c=None):
    if node.layer is not None:
        return module.layers[node.layer](a.t() if node.attr("transA", 0) else a)
    a = a.t() if node.attr("transA", 0) else a
    b = b.t() if node.attr("transB", 0) else b
    out = node.attr("alpha", 1.0) * (a @ b)
    return out if c is None else out + node.attr("beta", 1.0) * c


@layer("Gemm")
def _gemm_layer(node: Node, constants: list[Any]) -> nn.Module | None:
    """A Gemm by a constant B is ``nn.Linear`` (alpha and beta folded in); otherwise it stays a function."""
    b = constants[1] if len(constants) > 1 else None
    c = constants[2] if len(constants) > 2 else None
    if b is None or (len(node.inputs) > 2 and node.inputs[2] and (c is None or c.dim() > 1)):
        return None
    weight = (b if node.attr("transB", 0) else b.t()) * node.attr("alpha", 1.0)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=c is not None)
    bias = None if c is None else (c * node.attr("beta", 1.0)).expand(weight.shape[0])
    _assign(linear, weight, bias)
    return linear


@operator("MatMul")
def _matmul(module, node, a, b=None):
    if node.layer is not None:
        return module.layers[node.layer](a)
    return torch.matmul(a, b)


@layer("MatMul")
def _matmul_layer(node: Node, constants: list[Any]) -> nn.Module | None:
    """x @ W by a constant 2-D W is ``nn.Linear`` without bias (what Torch-Pruning and the quantizers recognise)."""
    b = constants[1] if len(constants) > 1 else None
    if b is None or b.dim() != 2 or constants[0] is not None:
        return None
    linear = nn.Linear(b.shape[0], b.shape[1], bias=False)
    _assign(linear, b.t(), None)
    return linear


@operator("BatchNormalization", "LayerNormalization")
def _normalization(module, node, x, *constants):
    return module.layers[node.layer](x)


@layer("BatchNormalization")
def _batchnorm_layer(node: Node, constants: list[Any]) -> nn.Module:
    """A BatchNorm layer with the node's running statistics, so the BatchNorm prior can invert them."""
    scale, bias, mean, variance = constants[1:5]
    if any(t is None for t in (scale, bias, mean, variance)):
        raise node.refuse("takes its statistics from another node, not from the file")
    rank = node.rank or 4
    norm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[max(rank - 3, 0)](
        scale.shape[0], eps=node.attr("epsilon", 1e-5), momentum=1 - node.attr("momentum", 0.9))
    _assign(norm, scale, bias)
    with torch.no_grad():
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(variance)
    return norm


@layer("LayerNormalization")
def _layernorm_layer(node: Node, constants: list[Any]) -> nn.Module:
    scale, bias = constants[1], constants[2] if len(constants) > 2 else None
    if scale is None or node.attr("axis", -1) not in (-1, (node.rank or 0) - 1) or scale.dim() != 1:
        raise node.refuse("normalises over more than the last axis or takes its scale from another node")
    norm = nn.LayerNorm(scale.shape[0], eps=node.attr("epsilon", 1e-5), bias=bias is not None)
    _assign(norm, scale, bias)
    return norm


@operator("InstanceNormalization")
def _instance_norm(module, node, x, scale, bias):
    return F.instance_norm(x, weight=scale, bias=bias, eps=node.attr("epsilon", 1e-5))


@operator("MaxPool", "AveragePool")
def _pool(module, node, x):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise node.refuse("returns indices")
    x = _pad_same(node, x)
    rank = x.dim() - 2
    kernel = node.attr("kernel_shape")
    strides = node.attr("strides", [1] * rank)
    padding, asymmetric = _explicit_pads(node, rank)
    ceil = bool(node.attr("ceil_mode", 0))
    if node.op_type == "MaxPool":
        if asymmetric is not None:
            x, padding = F.pad(x, asymmetric, value=-math.inf), [0] * rank
        return getattr(F, f"max_pool{rank}d")(x, kernel, strides, padding, node.attr("dilations", [1] * rank), ceil)
    include = bool(node.attr("count_include_pad", 0))
    if asymmetric is not None:
        if not include:
            raise node.refuse("pads asymmetrically without counting the padding")
        x, padding = F.pad(x, asymmetric), [0] * rank
    return getattr(F, f"avg_pool{rank}d")(x, kernel, strides, padding, ceil, include)


@operator("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(module, node, x):
    dims = tuple(range(2, x.dim()))
    return x.mean(dims, keepdim=True) if node.op_type == "GlobalAveragePool" else x.amax(dims, keepdim=True)


@operator("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare")
def _reduce(module, node, x, axes=None):
    new_style = node.opset >= (13 if node.op_type == "ReduceSum" else 18)
    axes = _ints(axes) if new_style else node.attr("axes")
    if not axes:
        if new_style and node.attr("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    keep = bool(node.attr("keepdims", 1))
    dims = tuple(axes)
    if node.op_type == "ReduceProd":
        for axis in sorted((a % x.dim() for a in axes), reverse=True):
            x = x.prod(axis, keepdim=keep)
        return x
    reduce = {"ReduceMean": lambda: x.mean(dims, keepdim=keep), "ReduceSum": lambda: x.sum(dims, keepdim=keep),
              "ReduceMax": lambda: x.amax(dims, keepdim=keep), "ReduceMin": lambda: x.amin(dims, keepdim=keep),
              "ReduceL2": lambda: x.square().sum(dims, keepdim=keep).sqrt(),
              "ReduceSumSquare": lambda: x.square().sum(dims, keepdim=keep)}
    return reduce[node.op_type]()


@operator("ArgMax", "ArgMin")
def _arg_reduce(module, node, x):
    function = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    return function(x, node.attr("axis", 0), keepdim=bool(node.attr("keepdims", 1)))


def _ints(value: Any) -> list[int]:
    return [] if value is None else [int(v) for v in torch.as_tensor(value).reshape(-1).tolist()]


# shape and indexing

@operator("Flatten")
def _flatten(module, node, x):
    axis = node.attr("axis", 1) % max(x.dim(), 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@operator("Reshape")
def _reshape(module, node, x, shape=None):
    target = _ints(shape) if node.opset >= 5 else list(node.attr("shape"))
    if not node.attr("allowzero", 0):
        target = [x.shape[i] if size == 0 else size for i, size in enumerate(target)]
    if module.fixed_batch and target and target[0] == module.fixed_batch and x.shape[0] != module.fixed_batch:
        target[0] = x.shape[0]  # a graph exported with a fixed batch size reshapes to it: keep the batch the input has
    return x.reshape(tuple(target))


@operator("Transpose")
def _transpose(module, node, x):
    return x.permute(node.attr("perm", list(reversed(range(x.dim())))))


@operator("Squeeze", "Unsqueeze")
def _squeeze(module, node, x, axes=None):
    axes = _ints(axes) if node.opset >= 13 else node.attr("axes")
    if node.op_type == "Squeeze":
        return x.squeeze(tuple(a % x.dim() for a in axes)) if axes else x.squeeze()
    for axis in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(axis)
    return x


@operator("Concat")
def _concat(module, node, *inputs):
    return torch.cat(inputs, node.attr("axis"))


@operator("Split")
def _split(module, node, x, split=None):
    axis = node.attr("axis", 0)
    sizes = _ints(split) if node.opset >= 13 else node.attr("split")
    if not sizes:
        count = node.attr("num_outputs", len(node.outputs))
        sizes = [math.ceil(x.shape[axis] / count)] * count
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return tuple(torch.split(x, sizes, axis))


@operator("Slice")
def _slice(module, node, x, starts=None, ends=None, axes=None, steps=None):
    if node.opset < 10:
        starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) or list(range(len(starts)))
    steps = _ints(steps) or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        kept = range(x.shape[axis])[start:end:step]  # Python's slice clamping is ONNX's, backwards steps included
        x = x.index_select(axis, torch.tensor(kept, dtype=torch.long, device=x.device))
    return x


@operator("Gather")
def _gather(module, node, x, indices):
    axis = node.attr("axis", 0) % x.dim()
    indices = indices.long() % x.shape[axis]
    picked = x.index_select(axis, indices.reshape(-1))
    return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))


@operator("Shape")
def _shape(module, node, x):
    shape = torch.tensor(x.shape, dtype=torch.int64, device=x.device)  # shape arithmetic stays beside the constants
    return shape[node.attr("start", 0) : node.attr("end", None)]


@operator("Size")
def _size(module, node, x):
    return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@operator("Expand")
def _expand(module, node, x, shape):
    return x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(shape))))


@operator("Tile")
def _tile(module, node, x, repeats):
    return x.repeat(_ints(repeats))


@operator("Cast")
def _cast(module, node, x):
    return x.to(_torch_dtype(node.attr("to")))


def _torch_dtype(onnx_type: int) -> torch.dtype:
    onnx = onnx_package()
    return torch.from_numpy(np.zeros(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(onnx_type))).dtype


@operator("ConstantOfShape")
def _constant_of_shape(module, node, shape):
    value = node.attr("value")
    fill = torch.from_numpy(onnx_package().numpy_helper.to_array(value).copy()) if value is not None else torch.zeros(1)
    return fill.reshape(()).to(shape.device).expand(tuple(_ints(shape))).clone()


@operator("Range")
def _range(module, node, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


@operator("Dropout")
def _dropout(module, node, x, *rest):
    return (x, torch.ones_like(x, dtype=torch.bool)) if len(node.outputs) > 1 and node.outputs[1] else x


@operator("Pad")
def _pad(module, node, x, pads=None, value=None, axes=None):
    mode = node.attr("mode", "constant")
    if node.opset < 11:
        pads, value = node.attr("pads"), node.attr("value", 0.0)
    pads = _ints(pads)
    rank = len(pads) // 2
    axes = [a % x.dim() for a in _ints(axes)] or list(range(x.dim() - rank, x.dim()))
    begin, end = dict(zip(axes, pads[:rank])), dict(zip(axes, pads[rank:]))
    first = min((axis for axis in axes if begin.get(axis) or end.get(axis)), default=x.dim() - 1)
    torch_pads = [p for axis in reversed(range(first, x.dim())) for p in (begin.get(axis, 0), end.get(axis, 0))]
    if mode == "constant":
        return F.pad(x, torch_pads, value=_scalar(value) or 0.0)
    if first < 2:
        raise node.refuse(f"pads the batch or channel axis in mode {mode!r}")
    return F.pad(x, torch_pads, mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])


@operator("Resize", "Upsample")
def _resize(module, node, x, *sizes):
    mode = node.attr("mode", "nearest")
    if node.op_type == "Upsample" or node.opset < 11:
        scales, size = (sizes[0] if sizes else node.attr("scales")), None
    else:
        scales = sizes[1] if len(sizes) > 1 else None
        size = sizes[2] if len(sizes) > 2 else None
    if size is not None and len(_ints(size)):
        out = _ints(size)[2:]
    else:
        factors = [float(s) for s in torch.as_tensor(scales).reshape(-1).tolist()]
        out = [int(math.floor(d * f)) for d, f in zip(x.shape[2:], factors[2:])]
    transform = node.attr("coordinate_transformation_mode", "half_pixel" if node.opset >= 11 else "asymmetric")
    if mode == "nearest":
        nearest = node.attr("nearest_mode", "round_prefer_floor")
        if transform == "asymmetric" and (nearest == "floor" or node.opset < 11):
            return F.interpolate(x, size=out, mode="nearest")
        if transform in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn") and nearest.startswith("round"):
            return F.interpolate(x, size=out, mode="nearest-exact")
    elif mode in ("linear", "cubic") and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        torch_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.dim() - 2] if mode == "linear" else "bicubic"
        return F.interpolate(x, size=out, mode=torch_mode, align_corners=transform == "align_corners")
    raise node.refuse(f"resizes with mode {mode!r} and coordinate_transformation_mode {transform!r}, which is not supported")


@operator("Einsum")
def _einsum(module, node, *inputs):
    return torch.einsum(node.attr("equation"), *inputs)
