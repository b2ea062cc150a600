"""Fit a source state_dict into a target network's shapes by uniform weight selection.

After Xu et al. (2024), "Initializing Models with Larger Ones": a smaller (or differently shaped)
network of the same family starts from a subset of a trained one's weights. Both state_dicts are
cut into *layers* by module prefix (``net.1``, ``features.4``, ``blocks.0``, ``head``, ...). The
first layer maps to the first, the last (the classifier head) to the last, and the middle layers
map in order, per layer type (first-N selection; a type is the prefix with its numbers masked plus
the entries' names and ndims, so a batch norm never pairs with a convolution). Unpaired target
layers keep their own values.

Per tensor, along every dimension the first ``k = min(target, source)`` positions take ``k`` evenly
spaced source indices. The indices depend only on the two sizes, so the units a layer keeps are the
inputs the next layer keeps; a target dimension larger than the source keeps its own init beyond
``k``. A same-shape target gets an exact copy. No rescaling.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

Layers = dict[str, dict[str, str]]  # layer prefix -> {name relative to the layer: state_dict key}


def layers(state_dict: Mapping[str, torch.Tensor]) -> Layers:
    """Group the keys into layers in key order: the prefix through the first numeric part, else the parent module.

    Key order must be module order, as ``Module.state_dict()`` gives it (a safetensors file comes back
    sorted by name, with ``net.11`` before ``net.3``: reorder it by the model's keys first).

    ``blocks.0.self_attn.in_proj_weight`` is in layer ``blocks.0``, ``norm.weight`` in ``norm``, and a
    top-level entry like ``pos_embedding`` is a layer of its own.
    """
    out: Layers = {}
    for key in state_dict:
        parts = key.split(".")
        cut = next((i + 1 for i, p in enumerate(parts[:-1]) if p.isdigit()), max(len(parts) - 1, 1))
        out.setdefault(".".join(parts[:cut]), {})[".".join(parts[cut:])] = key
    return out


def _layer_type(state_dict: Mapping[str, torch.Tensor], prefix: str, entries: dict[str, str]) -> tuple:
    pattern = ".".join("#" if p.isdigit() else p for p in prefix.split("."))
    return pattern, tuple(sorted((name, state_dict[key].ndim) for name, key in entries.items()))


def select(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A copy of ``target`` whose leading block holds uniformly selected ``source`` values (same ndim)."""
    picked = source
    for dim, (s, t) in enumerate(zip(source.shape, target.shape)):
        picked = picked.index_select(dim, torch.linspace(0, s - 1, min(s, t)).round().long())
    out = target.clone()
    out[tuple(slice(0, n) for n in picked.shape)] = picked.to(out.dtype)
    return out


def pair_layers(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Target layer -> source layer: first to first, last to last, middles in order within each layer type."""
    src, tgt = layers(source), layers(target)
    src_types = {p: _layer_type(source, p, e) for p, e in src.items()}
    tgt_types = {p: _layer_type(target, p, e) for p, e in tgt.items()}
    src_names, tgt_names = list(src), list(tgt)
    for end, i in (("first", 0), ("last", -1)):
        if src_types[src_names[i]] != tgt_types[tgt_names[i]]:
            raise ValueError(
                f"cannot fit the source into the target: the source's {end} layer {src_names[i]!r} "
                f"{src_types[src_names[i]]} is not like the target's {tgt_names[i]!r} {tgt_types[tgt_names[i]]}; "
                "is the source from another model family?"
            )
    unused: dict[tuple, list[str]] = {}  # source middle layers of each type, in order
    for p in src_names[1:-1]:
        unused.setdefault(src_types[p], []).append(p)
    pairs = {tgt_names[0]: src_names[0]}
    for p in tgt_names[1:-1]:
        if unused.get(tgt_types[p]):
            pairs[p] = unused[tgt_types[p]].pop(0)
    pairs[tgt_names[-1]] = src_names[-1]  # a one-layer target takes the source's classifier head
    return pairs


def fit_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict]:
    """``target``'s keys, shapes and dtypes, filled from ``source`` where a layer pairs up.

    Returns the state_dict and a report: ``filled`` (how many target tensors took source values),
    ``kept`` (target keys left at the target's own values) and ``layers`` (target layer -> source layer).
    Raises ValueError when the two cannot pair at the first or last layer (another family).
    """
    pairs = pair_layers(source, target)
    src = layers(source)
    out, kept = {}, []
    for prefix, entries in layers(target).items():
        for name, key in entries.items():  # paired layers have the same entry names and ndims
            if prefix in pairs:
                out[key] = select(source[src[pairs[prefix]][name]], target[key])
            else:
                out[key] = target[key].clone()
                kept.append(key)
    report = {"filled": len(target) - len(kept), "kept": kept, "layers": pairs}
    return {k: out[k] for k in target}, report

__all__ = ["fit_state_dict", "layers", "pair_layers", "select"]
