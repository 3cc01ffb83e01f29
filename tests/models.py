"""Tiny BatchNorm networks for tests; the CLI tests load them as ``tests/models.py:NAME`` specs.

Self-contained on purpose: the CLI imports this file by path.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv-BN-ReLU ×2, pooled, linear: the smallest network with real BN statistics."""

    def __init__(self, channels: int = 3, width: int = 8, classes: int = 10, batchnorm: bool = True) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), norm(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), norm(2 * width), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def make_teacher(seed: int = 0, model: type[nn.Module] = TinyNet, **kwargs) -> nn.Module:
    """A network (TinyNet by default) whose BN running statistics are non-trivial, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model(**kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, kwargs.get("channels", 3), 32, 32, generator=generator) * 2 - 0.5)
    return model.eval()


def tiny() -> nn.Module:
    return make_teacher()


def no_batchnorm() -> nn.Module:
    return TinyNet(batchnorm=False)


def nan_weights() -> nn.Module:
    model = make_teacher()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    return model


class TupleOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor):
        return self.net(x), x


def tuple_output() -> nn.Module:
    return TupleOutput()


class DictOutput(nn.Module):
    """Returns ``{"logits": …, "probabilities": …}``, as Hugging Face-style models return dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"logits": logits, "probabilities": logits.softmax(1)}


def dict_output() -> nn.Module:
    return DictOutput()


def not_a_module():
    return "not a model"


class Block(nn.Module):
    """A basic residual block; ``shortcut`` is "identity", "pad" (option A: subsample + zero-pad) or "conv" (option B)."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.kind, self.extra = shortcut, cout - cin
        if shortcut == "conv":
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.kind == "pad":
            x = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        elif self.kind == "conv":
            x = self.shortcut(x)
        return torch.relu(out + x)


class ResidualNet(nn.Module):
    """Stem, then an identity block, an option-A block and an option-B block: both kinds of shortcut."""

    def __init__(self, width: int = 8, classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(
            Block(width, width, 1, "identity"), Block(width, 2 * width, 2, "pad"), Block(2 * width, 4 * width, 2, "conv"),
        )
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def residual(seed: int = 0) -> ResidualNet:
    """A ResidualNet with trained-looking BN statistics (CLI spec ``tests/models.py:residual``)."""
    return make_teacher(seed, model=ResidualNet)


class AutoRangeNet(nn.Module):
    """Accepts 0–255 or 0–1 images by checking the range, a common convenience in deployed models.

    ONNX tracing bakes in whichever branch the example input took; torch.export refuses the
    data-dependent branch outright (CLI spec ``tests/models.py:AutoRangeNet``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.max() > 1.5:
            x = x / 255
        return self.net(x)


def student() -> TinyNet:
    """A half-width TinyNet: the student in distillation tests (CLI spec ``tests/models.py:student``)."""
    torch.manual_seed(0)
    return TinyNet(width=4)


def seven_classes() -> TinyNet:
    """A student with the wrong number of outputs for the 10-class teachers."""
    return TinyNet(width=4, classes=7)


class HostRoundTrip(nn.Module):
    """Copies activations through NumPy: fine for inference, impossible to trace with gradients on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.numpy().copy())


def untraceable() -> TinyNet:
    """A TinyNet with a HostRoundTrip after its first conv block."""
    model = make_teacher()
    model.body.insert(3, HostRoundTrip())
    return model


def tiny_vit() -> nn.Module:
    """A one-block ViT on 32×32 inputs (LayerNorm and attention, no BatchNorm): the transformer prior's teacher."""
    from examples.cifar_vit import CifarViT

    torch.manual_seed(0)
    return CifarViT(dim=16, depth=1, num_heads=2, mlp_ratio=2, patch=8).eval()


class SeparateProjectionAttention(nn.Module):
    """Hugging Face's attention layout: separate ``query``/``key``/``value`` layers, ``num_attention_heads``, ``all_head_size``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_attention_heads, self.attention_head_size, self.all_head_size = heads, dim // heads, dim
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (layer(x).view(batch, tokens, self.num_attention_heads, self.attention_head_size).transpose(1, 2)
                   for layer in (self.query, self.key, self.value))
        weights = (q @ k.transpose(-2, -1) / self.attention_head_size ** 0.5).softmax(-1)
        return self.output((weights @ v).transpose(1, 2).reshape(batch, tokens, self.all_head_size))


class TokenNet(nn.Module):
    """Patches → one pre-norm attention block → mean pool → classifier, with the attention class given."""

    def __init__(self, attention: nn.Module, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 8, 8)
        self.norm = nn.LayerNorm(dim)
        self.attention = attention
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.head((tokens + self.attention(self.norm(tokens))).mean(1))


def separate_projections() -> TokenNet:
    torch.manual_seed(0)
    return TokenNet(SeparateProjectionAttention(16, 4)).eval()


def four_head_vit() -> nn.Module:
    """Two blocks of four 8-wide heads: room to remove whole heads."""
    from examples.cifar_vit import CifarViT

    torch.manual_seed(0)
    return CifarViT(dim=32, depth=2, num_heads=4, mlp_ratio=2, patch=8).eval()


def hard_coded_heads() -> nn.Module:
    """A ViT whose attention reshapes with a literal 4 although it says ``num_heads``: removing a head must be refused."""
    from examples.cifar_vit import Attention

    class LiteralHeads(Attention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, tokens, _ = x.shape
            q, k, v = self.qkv(x).reshape(batch, tokens, 3, 4, -1).permute(2, 0, 3, 1, 4).unbind(0)
            return self.proj(((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, -1))

    model = four_head_vit()
    for block in model.blocks:
        literal = LiteralHeads(32, 4)
        literal.load_state_dict(block.attn.state_dict())
        block.attn = literal
    return model.eval()


# -- teachers that are not classifiers ---------------------------------------------------------

class TinySegmenter(nn.Module):
    """Encoder-decoder with a skip connection, returning N×classes×H×W maps at the input size (any H, W)."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.fuse = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.classifier = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.stem(x)
        deep = nn.functional.interpolate(self.down(skip), size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([skip, deep], 1)))


class TwoHeads(nn.Module):
    """A detector-like model: a box map and a score map at two scales, returned as a tuple."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.deeper = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.fine, self.coarse = nn.Conv2d(width, 6, 1), nn.Conv2d(width, 6, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.fine(features), self.coarse(self.deeper(features))


class DictHeads(nn.Module):
    """Returns ``{"depth": N×1×H×W, "embedding": N×16}``: no classes anywhere."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.depth, self.embedding = nn.Conv2d(width, 1, 1), nn.Linear(width, 16)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return {"depth": self.depth(features), "embedding": self.embedding(features.mean((2, 3)))}


def segmenter() -> nn.Module:
    return make_teacher(model=TinySegmenter)


def small_segmenter() -> nn.Module:
    return TinySegmenter(width=4)


def two_heads() -> nn.Module:
    return make_teacher(model=TwoHeads, width=16)  # 8 channels are too few for Torch-Pruning's 90 % ratio


def small_two_heads() -> nn.Module:
    return TwoHeads(width=4)


def dict_heads() -> nn.Module:
    return make_teacher(model=DictHeads)


def small_dict_heads() -> nn.Module:
    return DictHeads(width=4)


class ConvLogits(nn.Module):
    """A classifier whose head is a 1×1 convolution left unflattened: N×classes×1×1, which is ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, :, None, None]


def conv_logits() -> nn.Module:
    return ConvLogits()


class DepthwiseStem(nn.Module):
    """conv → (ReLU) → depthwise conv, with output channels a thousand times apart in range (PaddleOCR's recognizer opens
    like this), pooled, linear: the pattern whose shared activation scale rounds the narrow channels away."""

    def __init__(self, relu: bool = True, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.head = nn.Linear(width, classes)
        with torch.no_grad():
            gains = torch.logspace(-2, 1, width)
            self.stem.weight.mul_(gains.view(-1, 1, 1, 1))
            self.stem.bias.mul_(gains)
            self.depthwise.weight.div_(gains.view(-1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.depthwise(self.act(self.stem(x))).mean((2, 3)))


def depthwise_stem() -> nn.Module:
    torch.manual_seed(0)
    return DepthwiseStem().eval()
