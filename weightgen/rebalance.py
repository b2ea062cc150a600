"""Rebalance a ReLU chain's layer scales without changing what it computes.

A network of linear/convolution layers with ReLU between them (every ``mlp`` with ``relu``, every
``cnn1d``/``cnn2d`` without batch norm) is positively homogeneous layer by layer: multiplying layer
l's weight by c_l and its bias by C_l = c_0 ⋯ c_l scales every later activation by C_l, because
relu(c·x) = c·relu(x) for c > 0. Choosing the last factor so that the product of all of them is 1
leaves the logits exactly as they were; leaving that choice free too scales the logits by the
product and keeps only the predictions.

Why a generator might need it: weights tuned by the task loss at init can compute the right
function at the wrong scale (tuned samples carry weights 2.7-3.4x a fresh init's std), while
constant-LR AdamW steps are sized in absolute units. Rebalancing to the target's own init scale
keeps the function and hands the optimiser the scale it is tuned for. Measured (docs/results.md,
"Levers tried", item 14): it raises reach rates and narrows the final-accuracy gap to random init,
but it slows the cases that were already fast, and no split's median saving rose; so it is a
sampler option, off by default. The transformer family (LayerNorm, attention) has no such exact
symmetry and is left as it is.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from weightgen.specs import CNN1dSpec, CNN2dSpec, MLPSpec, parse_arch

MODES = ("none", "logits", "predictions")  # what rebalancing keeps exactly: nothing done / the logits / argmax


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`; else a ValueError naming the valid ones."""
    if mode not in MODES:
        raise ValueError(f"unknown rebalance mode {mode!r}; valid: {', '.join(MODES)}")
    return mode


def relu_chain(arch) -> bool:
    """Whether ``arch`` is a chain of affine layers with ReLU between them (the rescaling is then exact)."""
    arch = parse_arch(arch)
    if isinstance(arch, MLPSpec):
        return arch.activation == "relu" or not arch.hidden
    return isinstance(arch, (CNN1dSpec, CNN2dSpec)) and arch.norm == "none"


def chain_layers(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[str, str | None]]:
    """(weight key, bias key or None) of each layer in module order: every ``*.weight`` of two or more dims."""
    out = []
    for key, value in state_dict.items():
        if key.endswith("weight") and value.ndim >= 2:
            bias = key[: -len("weight")] + "bias"
            out.append((key, bias if bias in state_dict else None))
    return out


def rebalance(state_dict: Mapping[str, torch.Tensor], arch, reference: Mapping[str, torch.Tensor],
              mode: str = "logits") -> dict[str, torch.Tensor]:
    """``state_dict`` with each layer's weight std set to ``reference``'s, the same function computed.

    ``mode``: ``logits`` rescales every layer but the last to the reference's std and lets the last
    absorb the product (logits unchanged); ``predictions`` rescales the last layer too (logits scaled
    by one positive number, argmax unchanged); ``none`` returns a copy. An architecture that is not a
    ReLU chain (:func:`relu_chain`) is returned as a copy, since no rescaling keeps its function.
    """
    out = {k: v.clone() for k, v in state_dict.items()}
    if check_mode(mode) == "none" or not relu_chain(arch):
        return out
    chain = chain_layers(out)
    cumulative = 1.0
    for i, (weight, bias) in enumerate(chain):
        spread = float(out[weight].detach().std())  # a constant factor: gradients pass through it unchanged
        factor = float(reference[weight].detach().std()) / spread if spread > 0 else 1.0
        if i == len(chain) - 1 and mode == "logits":
            factor = 1.0 / cumulative
        cumulative *= factor
        out[weight] = out[weight] * factor
        if bias is not None:
            out[bias] = out[bias] * cumulative
    if not math.isfinite(cumulative):
        raise ValueError("rebalancing overflowed: a layer's std is zero or infinite")
    return out


__all__ = ["MODES", "chain_layers", "check_mode", "rebalance", "relu_chain"]
