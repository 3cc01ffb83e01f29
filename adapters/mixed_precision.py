"""Nodes at 8 bits inside a 4-bit ONNX Runtime model, so that a fallback still runs integer kernels, not float ones.

A W4A4 model loses most where 4 bits hurt most: on ResNet-20 (calibrated on real images,
plain MinMax), the first convolution's input, the image itself, at 4 bits rather than 8
cost 7 of the 26 points the whole model lost. Keeping that node in float repairs it, but a float node is no longer an
integer one on the target. ONNX Runtime's ``TensorQuantOverrides`` can give single
tensors another type, so :func:`with_nodes_at_8_bits` puts a node's weights *and* its
activation inputs at 8 bits (its 4-bit twin, signed or not) and leaves the rest at 4.
Both, always: int8 weights behind a 4-bit input are fused by ONNX Runtime's graph
optimizer into a QLinearConv it then refuses ("Type 'tensor(uint4)' of input ... of
operator (QLinearConv) is invalid"). Another node reading the same tensor then reads
it at 8 bits too, which ONNX Runtime runs (an 8-bit input beside int4 weights is
dequantized, not fused).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import FastDFKDError
from ..teacher.onnx.operators import onnx_package

WIDER = {"QInt4": "QInt8", "QUInt4": "QUInt8"}  # each 4-bit type's 8-bit twin, by ONNX Runtime's QuantType names
# Which input of each op ONNX Runtime quantizes as a weight, and the channel axis it uses for it (ConvTranspose's
# and an untransposed Gemm's outputs lie on axis 1; MatMul's right-hand (K, N) matrix too).
WEIGHT_AXES = {"Conv": lambda node: 0, "ConvTranspose": lambda node: 1, "MatMul": lambda node: 1,
               "Gemm": lambda node: 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1}


def is_four_bit(quant_type: Any) -> bool:
    """Whether ``quant_type`` (ONNX Runtime's ``QuantType``) is a 4-bit type."""
    return getattr(quant_type, "name", None) in WIDER


def has_four_bits(options: dict[str, Any]) -> bool:
    """Whether ``quantize_static`` ``options`` quantize weights or activations to 4 bits (unset types are 8-bit)."""
    return is_four_bit(options.get("weight_type")) or is_four_bit(options.get("activation_type"))


def with_nodes_at_8_bits(model: Any, options: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``quantize_static`` ``options`` with the weights and activation inputs of the nodes ``names`` of ``model`` (a
    path) at 8 bits, where the options give them 4; any other override for those tensors (the int4 grid) is replaced."""
    if not names:
        return options
    if not has_four_bits(options):
        raise FastDFKDError(f"nodes are kept at 8 bits only inside a model with 4-bit weights or activations, and these "
                            f"settings quantize to 8 bits already ({', '.join(names)}); keep them in float instead "
                            "(--exclude-node)")
    onnx = onnx_package()
    graph = onnx.load(str(model)).graph
    nodes = {node.name: node for node in graph.node}
    unknown = [name for name in names if name not in nodes]
    if unknown:
        raise FastDFKDError(f"the graph has no node named {', '.join(map(repr, unknown))}; `fastdfkd sensitivity` lists the "
                            "Conv/MatMul/Gemm nodes by name")
    initializers = {tensor.name for tensor in graph.initializer}
    weight_type, activation_type = _wider(options.get("weight_type")), _wider(options.get("activation_type"))
    extra = dict(options.get("extra_options") or {})
    overrides = dict(extra.get("TensorQuantOverrides") or {})
    for name in names:
        node = nodes[name]
        for index, tensor in enumerate(node.input):
            if not tensor:
                continue
            if tensor in initializers:
                if index == 1 and node.op_type in WEIGHT_AXES and weight_type is not None:
                    axis = {"axis": WEIGHT_AXES[node.op_type](node)} if options.get("per_channel") else {}
                    overrides[tensor] = [{"quant_type": weight_type, **axis}]
            elif activation_type is not None:
                overrides[tensor] = [{"quant_type": activation_type}]
    return options | {"extra_options": extra | {"TensorQuantOverrides": overrides}}


def _wider(quant_type: Any) -> Any:
    """The 8-bit twin of a 4-bit ``quant_type``; None for any other (that tensor keeps its type)."""
    if not is_four_bit(quant_type):
        return None
    return type(quant_type)[WIDER[quant_type.name]]
