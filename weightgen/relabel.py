"""Tasks that relabel another task's classes, and the exact map between their networks.

A task with ``label_perm`` p > 0 is its base task (the same task with ``label_perm`` 0) with every
label c replaced by ``perm[c]``. A network for the base task becomes a network for the relabelled one
by moving its output unit c to row ``perm[c]`` of the output layer (weights and bias): the same
function with the classes renamed, exactly. The generator's task features carry the permutation,
but its samples for an unseen permutation start at chance (docs/results.md, item 44), so
:class:`weightgen.generate.Generator` can sample the base task and relabel it (``relabel``, off by default).

A suite with ``label_map: true`` gives every corpus method the same map (:func:`to_label_order`): a
corpus member trained on any label order of a task is moved to the target's order, so the label-permuted
cases measure the methods on what they know of the base task, not on the permutation (item 61).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from weightgen.data import NUM_CLASSES, label_permutation
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


def label_order(task) -> np.ndarray:
    """The label each original class c gets in ``task``: ``order[c]`` (the identity for ``label_perm`` 0)."""
    perm = label_permutation(parse_task(task))
    return np.arange(NUM_CLASSES) if perm is None else perm


def label_renaming(source_task, target_task) -> np.ndarray | None:
    """``renaming[p]``: the label ``target_task`` gives the class that ``source_task`` labels p; None when the two
    tasks share their label order. Class c is labelled ``source[c]`` there and ``target[c]`` here."""
    source, target = label_order(source_task), label_order(target_task)
    # from the source's labels back to the classes (the inverse of source), then to the target's labels
    return None if np.array_equal(source, target) else target[np.argsort(source)]


def to_label_order(state_dict: dict[str, torch.Tensor], layer: str, source_task, target_task) -> dict[str, torch.Tensor]:
    """A network trained on ``source_task`` with its output rows in ``target_task``'s label order.

    Class c's unit sits at row ``source[c]`` and moves to row ``target[c]``; when both tasks share their
    label order the state_dict comes back as it is. The two tasks' base tasks need not be the same: this
    maps labels only, and says nothing about how near the rest of the two tasks are.
    """
    renaming = label_renaming(source_task, target_task)
    return state_dict if renaming is None else relabel_classes(state_dict, layer, renaming)


__all__ = ["base_task", "label_order", "label_permutation", "label_renaming", "output_layer", "relabel_classes",
           "to_label_order"]
