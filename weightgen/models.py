"""The model families: an architecture spec plus a task's input shape gives a ``torch.nn.Module``.

Modules use plain ``torch.nn`` layers so their state_dict names say what each tensor is
(``net.0.weight``, ``blocks.1.self_attn.in_proj_weight``, ...), which the tokenizer reads.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from weightgen.data import NUM_CLASSES
from weightgen.specs import CNN1dSpec, CNN2dSpec, MLPSpec, SpecError, TransformerSpec, parse_arch

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    def __init__(self, spec: MLPSpec, in_features: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in spec.hidden:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[spec.activation]()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_stack(conv: type[nn.Module], norm: type[nn.Module], channels, kernel: int, stride: int, use_norm: bool):
    layers: list[nn.Module] = []
    c_in = 1
    for c_out in channels:
        layers.append(conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2))
        if use_norm:
            layers.append(norm(c_out))
        layers.append(nn.ReLU())
        c_in = c_out
    return nn.Sequential(*layers)


class CNN1d(nn.Module):
    def __init__(self, spec: CNN1dSpec, length: int, num_classes: int):
        super().__init__()
        self.features = _conv_stack(nn.Conv1d, nn.BatchNorm1d, spec.channels, spec.kernel, spec.stride, spec.norm == "batch")
        for _ in spec.channels:  # the output length of each same-padded, strided convolution
            length = (length + 2 * (spec.kernel // 2) - spec.kernel) // spec.stride + 1
        if length < 1:
            raise SpecError(f"cnn1d with {len(spec.channels)} layers of stride {spec.stride} shrinks the input to nothing")
        self.head = nn.Linear(spec.channels[-1] * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, L]
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


class CNN2d(nn.Module):
    def __init__(self, spec: CNN2dSpec, height: int, width: int, num_classes: int):
        super().__init__()
        self.features = _conv_stack(nn.Conv2d, nn.BatchNorm2d, spec.channels, spec.kernel, 1, spec.norm == "batch")
        for _ in spec.channels:  # an even kernel with padding kernel // 2 grows each side by one per layer
            height, width = (height + 2 * (spec.kernel // 2) - spec.kernel + 1, width + 2 * (spec.kernel // 2) - spec.kernel + 1)
        self.head = nn.Linear(spec.channels[-1] * height * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, W]
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


class TinyTransformer(nn.Module):
    """Pre-norm encoder over ``patch``-long chunks of the flattened input, mean-pooled into a linear head."""

    def __init__(self, spec: TransformerSpec, in_features: int, num_classes: int):
        super().__init__()
        if in_features % spec.patch:
            raise SpecError(f"transformer patch={spec.patch} does not divide the input length {in_features}")
        self.patch = spec.patch
        self.embed = nn.Linear(spec.patch, spec.dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, in_features // spec.patch, spec.dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                spec.dim, spec.heads, spec.dim * spec.mlp_ratio, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(spec.depth)
        )
        self.norm = nn.LayerNorm(spec.dim)
        self.head = nn.Linear(spec.dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.flatten(1).unflatten(1, (-1, self.patch))) + self.pos_embedding  # [B, T, D]
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens).mean(dim=1))


def build_model(arch, input_shape: tuple[int, ...], num_classes: int = NUM_CLASSES, seed: int | None = None) -> nn.Module:
    """Build the network for ``arch`` on inputs of ``input_shape``; ``seed`` fixes the random init."""
    arch = parse_arch(arch)
    if seed is None:  # draw from (and advance) the caller's RNG, like any torch.nn constructor
        return _construct(arch, tuple(input_shape), num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _construct(arch, tuple(input_shape), num_classes)


def _construct(arch, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    features = math.prod(input_shape)
    if isinstance(arch, MLPSpec):
        return MLP(arch, features, num_classes)
    if isinstance(arch, TransformerSpec):
        return TinyTransformer(arch, features, num_classes)
    if isinstance(arch, CNN1dSpec):
        if len(input_shape) != 1:
            raise SpecError(f"cnn1d needs sequence inputs (like mnist1d); this task's inputs have shape {input_shape}")
        return CNN1d(arch, input_shape[0], num_classes)
    if isinstance(arch, CNN2dSpec):
        if len(input_shape) != 2:
            raise SpecError(f"cnn2d needs image inputs (like digits); this task's inputs have shape {input_shape}")
        return CNN2d(arch, *input_shape, num_classes)
    raise SpecError(f"no model for family {arch.family!r}")  # pragma: no cover


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
