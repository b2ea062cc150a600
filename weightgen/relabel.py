"""Tasks that relabel another task's classes, and the exact map between their networks.

A task with ``label_perm`` p > 0 is its base task (the same task with ``label_perm`` 0) with every
label c replaced by ``perm[c]``. A network for the base task becomes a network for the relabelled one
by moving its output unit c to row ``perm[c]`` of the output layer (weights and bias): the same
function with the classes renamed, exactly. The generator's task features carry the permutation,
but its samples for an unseen permutation start at chance (docs/results.md, item 44), so
:class:`weightgen.generate.Generator` can sample the base task and relabel it (``relabel``; off by
default until the bench's corpus baselines get the same map).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from weightgen.data import label_permutation  # noqa: F401 (where the data applies it; part of this module's API)
from weightgen.specs import parse_arch, parse_task


def base_task(task):
    """The task with its original labels (``label_perm`` 0)."""
    return parse_task(task).model_copy(update={"label_perm": 0})


def output_layer(arch, input_shape: tuple[int, ...]) -> str:
    """The module name of the layer that gives the logits: the last linear layer of every family."""
    from weightgen.models import build_model

    names = [name for name, module in build_model(parse_arch(arch), input_shape).named_modules() if isinstance(module, nn.Linear)]
    return names[-1]


def relabel_classes(state_dict: dict[str, torch.Tensor], layer: str, perm: np.ndarray) -> dict[str, torch.Tensor]:
    """The same network with output unit c moved to ``perm[c]``: its logits come out with the classes renamed."""
    out = dict(state_dict)
    order = torch.as_tensor(perm, dtype=torch.long)
    for key in (f"{layer}.weight", f"{layer}.bias"):
        if key in state_dict:
            moved = torch.empty_like(state_dict[key])
            moved[order] = state_dict[key]
            out[key] = moved
    return out


__all__ = ["base_task", "label_permutation", "output_layer", "relabel_classes"]
