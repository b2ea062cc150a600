"""Canonical hidden-unit order: one representative of each network's permutation class.

Permuting a hidden layer's units (its rows, their biases and norm statistics, and the matching
input columns of the next layer) does not change the function. Two trained networks that compute
the same thing can therefore sit far apart in weight space, and a generator trained on both sees
many copies of each mode. Sorting every hidden layer's units by importance — the product of the
norms of a unit's incoming and outgoing weights, largest first — picks one order per class, and the
same rule works for every width (the "first" units of a 96-wide layer mean what they mean in a
64-wide one). MLPs and CNNs are canonicalised; transformers are returned unchanged (their residual
stream and heads need a joint permutation, not done here).
"""

from __future__ import annotations

import torch

from weightgen.specs import parse_arch


def _layer_keys(state_dict: dict[str, torch.Tensor], family: str) -> list[tuple[str, str | None]]:
    """[(weight-bearing module prefix, its norm module prefix or None)] in module order."""
    prefixes = []
    for key, value in state_dict.items():
        if not key.endswith(".weight"):
            continue
        prefix = key[: -len(".weight")]
        if value.ndim >= 2:
            prefixes.append([prefix, None])
        elif family.startswith("cnn") and prefixes and f"{prefix}.running_mean" in state_dict:
            prefixes[-1][1] = prefix  # batch norm right after its convolution
    return [tuple(p) for p in prefixes]


def canonicalize(state_dict: dict[str, torch.Tensor], arch) -> dict[str, torch.Tensor]:
    """The same function with every hidden layer's units sorted by importance (a new dict; input untouched)."""
    family = parse_arch(arch).family
    if family not in ("mlp", "cnn1d", "cnn2d"):
        return dict(state_dict)
    out = {k: v.clone() for k, v in state_dict.items()}
    layers = _layer_keys(out, family)
    for (prefix, norm), (next_prefix, _) in zip(layers[:-1], layers[1:]):
        weight, following = out[f"{prefix}.weight"], out[f"{next_prefix}.weight"]
        units = weight.shape[0]
        # The next layer sees this one's units as input channels; a head after a conv sees them flattened
        # channel-major, so each unit owns a contiguous block of its columns.
        incoming = following.reshape(following.shape[0], units, -1)  # [out, units, block]
        importance = weight.reshape(units, -1).norm(dim=1) * incoming.transpose(0, 1).reshape(units, -1).norm(dim=1)
        order = torch.sort(importance, descending=True, stable=True).indices
        out[f"{prefix}.weight"] = weight[order]
        for leaf in ("bias",):
            if f"{prefix}.{leaf}" in out:
                out[f"{prefix}.{leaf}"] = out[f"{prefix}.{leaf}"][order]
        if norm is not None:
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                out[f"{norm}.{leaf}"] = out[f"{norm}.{leaf}"][order]
        out[f"{next_prefix}.weight"] = incoming[:, order].reshape(following.shape)
    return out
