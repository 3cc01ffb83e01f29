"""Multi-head attention in a user's model: where it is, its head count and its projections.

The transformer prior reads attention outputs; pruning removes whole heads and has to
update the head count the module's forward reshapes with (timm's and Hugging Face's
``num_heads`` / ``num_attention_heads``); a pruned file is loaded back by deriving the
head count from the pruned projections' width.
"""

from __future__ import annotations

from torch import nn

from ..errors import FastDFKDError

HEAD_COUNT_ATTRIBUTES = ("num_heads", "num_attention_heads")
# Projection layouts: one fused q/k/v layer (timm) or three separate ones (Hugging Face, fairseq).
FUSED_PROJECTION = "qkv"
SEPARATE_PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"), ("q", "k", "v"))


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost attention modules: ``nn.MultiheadAttention`` or any class named ``…Attention`` (timm, Hugging Face)."""
    found: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, nn.MultiheadAttention) or type(module).__name__.lower().endswith("attention"):
            found.append(module)
            inside.update(id(sub) for sub in module.modules())
    return found


def projections(module: nn.Module) -> list[nn.Linear]:
    """The module's q/k/v Linear layers (one when fused), or [] when it has none of the known layouts."""
    fused = getattr(module, FUSED_PROJECTION, None)
    if isinstance(fused, nn.Linear):
        return [fused]
    for names in SEPARATE_PROJECTIONS:
        layers = [getattr(module, name, None) for name in names]
        if all(isinstance(layer, nn.Linear) for layer in layers):
            return layers
    return []


def head_count_attribute(module: nn.Module) -> str | None:
    return next((name for name in HEAD_COUNT_ATTRIBUTES if isinstance(getattr(module, name, None), int)), None)


def prunable_attention(model: nn.Module) -> dict[str, nn.Module]:
    """name → attention module whose heads can be removed: an integer head count and Linear q/k/v projections."""
    return {name: module for name, module in model.named_modules()
            if not isinstance(module, nn.MultiheadAttention) and head_count_attribute(module) and projections(module)}


def head_count(module: nn.Module) -> int:
    return getattr(module, head_count_attribute(module))


def _parts(module: nn.Module) -> int:
    """How many of q, k, v the first projection holds."""
    return 3 if len(projections(module)) == 1 else 1


def head_width(module: nn.Module) -> int:
    """Channels per head in each of q, k and v (a head's slice of one projection)."""
    return projections(module)[0].out_features // (_parts(module) * head_count(module))


def head_channels(module: nn.Module, head: int) -> list[int]:
    """The output channels of the first projection that belong to ``head`` (its q, k and v slices when fused)."""
    width, heads = head_width(module), head_count(module)
    return [part * width * heads + head * width + channel for part in range(_parts(module)) for channel in range(width)]


def value_channels(module: nn.Module, head: int) -> tuple[nn.Linear, list[int]]:
    """The layer and channels that hold ``head``'s values: zeroing them silences the head."""
    width = head_width(module)
    start = (_parts(module) - 1) * width * head_count(module) + head * width
    return projections(module)[-1], list(range(start, start + width))


def set_head_count(module: nn.Module, heads: int) -> None:
    """Set the head count the forward reshapes with, after its projections were pruned by whole heads."""
    setattr(module, head_count_attribute(module), heads)
    if isinstance(getattr(module, "all_head_size", None), int):  # Hugging Face keeps the total width too
        module.all_head_size = projections(module)[0].out_features // _parts(module)


def restore_head_counts(model: nn.Module, widths: dict[str, int]) -> None:
    """After layers were resized to a pruned file: each attention's head count from its projection width.

    ``widths`` are the per-head widths before resizing; pruning removes whole heads, so the width per head is kept.
    """
    for name, module in prunable_attention(model).items():
        first = projections(module)[0]
        heads, left = divmod(first.out_features, _parts(module) * widths[name])
        if left or not heads:
            raise FastDFKDError(f"attention {name!r} has {first.out_features} projection channels, not a whole number of "
                                f"{widths[name]}-wide heads; the file was not pruned by whole heads, load it into the pruned model itself")
        set_head_count(module, heads)
