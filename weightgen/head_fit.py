"""Fit a network's classifier head to the task's own training examples, keeping its body.

An init has two parts that transfer differently. The body (every layer but the last) makes features;
the head reads classes off them. A body from a related network can make good features for a new task
while its head is wrong: on ``label_perm`` tasks the same features need their rows of the head in
another order. With the body fixed, the best head for a batch of training examples is a convex problem —
multinomial logistic regression with an L2 penalty — so it is solved, not learnt: L-BFGS from zero on the
features, centred and divided by their RMS so that one penalty fits every network's feature scale, then folded
back into the head.

Every FLOP is counted (``weightgen.flops.counting_flops`` around the body's forward pass over the examples and every
solver step) and charged to the init, as the protocol asks of any init method. Only training examples
are read; the validation and test splits, which the bench scores, never are.

The bench exposes this as a suffix on any init method (``retrieval+head``, ``generated+head``, ...),
so each method is judged with and without it on the same cases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weightgen.flops import counting_flops

HEAD_FIT_SUFFIX = "+head"
DEFAULT_EXAMPLES = 1000  # about ten fine-tune batches of 100, read once, forward only
# On the scaled features, per example (the loss is a mean). These were chosen by benchmarks/head_fit_probe.py
# on random bodies of five pairs that are no suite's cases, before any bench figure (docs/results.md, item 51):
# L2 1e-2 had the lowest validation loss of {1e-3, 1e-2, 1e-1} on most pairs; 10 L-BFGS iterations on 1,000
# examples was the cheapest setting whose median validation accuracy is within 0.01 of the best.
DEFAULT_L2 = 1e-2
DEFAULT_ITERATIONS = 10


class HeadFitError(ValueError):
    """The network has no linear head whose output is the network's output, or the examples are unusable."""


@dataclass
class HeadFit:
    state_dict: dict[str, torch.Tensor]  # the whole network's, the head replaced
    head: str  # the head module's name, e.g. "net.4" or "head"
    flops: int
    wall_time: float
    examples: int
    train_acc_before: float  # on the examples the head was fitted to
    train_acc_after: float


def classifier_head(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Linear]:
    """The ``nn.Linear`` whose output *is* the model's output (checked on ``example``), with its name.

    Checked rather than assumed, so a family whose last layer is not a plain linear map (a norm after
    the head, a residual onto the logits) is refused instead of getting a head that does not fit.
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise HeadFitError(f"{type(model).__name__} has no nn.Linear layer to fit as a classifier head")
    name, head = linears[-1]
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            out = model(example[:2])
    finally:
        handle.remove()
    if not seen or seen[-1] is not out:
        raise HeadFitError(f"{type(model).__name__}: its last nn.Linear ({name}) is not what the network outputs, "
                           "so a fitted head would not be the classifier")
    return name, head


def fit_head(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float = DEFAULT_L2,
             iterations: int = DEFAULT_ITERATIONS, keep_norm: bool = False) -> HeadFit:
    """Replace ``model``'s classifier head (in place) by the L2-penalised logistic regression on its features.

    ``x``/``y``: the training examples to fit on (all of them are used; pick the subset before). The body's
    features are taken in eval mode, as the bench scores the init; the model's mode is restored after.
    ``keep_norm``: the fitted head is scaled (weight and bias by one positive factor, so every prediction's
    argmax is the fit's) to the Frobenius norm of the head it replaces — the fit's direction at the old scale.
    """
    if len(x) != len(y) or len(x) < 2:
        raise HeadFitError(f"need at least 2 examples with one label each, got {len(x)} inputs and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise HeadFitError(f"labels must lie in [0, {num_classes}), got {int(y.min())}..{int(y.max())}")
    name, head = classifier_head(model, x)
    if head.out_features != num_classes:
        raise HeadFitError(f"head {name} has {head.out_features} outputs, the task {num_classes} classes")
    if head.bias is None:
        raise HeadFitError(f"head {name} has no bias to fit")
    started, was_training = time.perf_counter(), model.training
    model.eval()
    try:
        with counting_flops() as counter:
            features = _features(model, head, x)
            weight, bias, before, after = _logistic_regression(features, y, head, num_classes, l2, iterations)
    finally:
        model.train(was_training)
    if keep_norm:
        factor = head.weight.detach().norm() / weight.norm().clamp(min=1e-12)
        weight, bias = weight * factor, bias * factor
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return HeadFit(state, name, int(counter.get_total_flops()), time.perf_counter() - started, len(x), before, after)


@torch.no_grad()
def _features(model: nn.Module, head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[-1].flatten(1).to(torch.float64)  # float64: L-BFGS on a few thousand features is cheap


def _logistic_regression(features: torch.Tensor, y: torch.Tensor, head: nn.Linear, num_classes: int, l2: float,
                         iterations: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(weight, bias) of the fitted head in the head's own units, and train accuracy before/after."""
    with torch.no_grad():
        before = float((F.linear(features, head.weight.double(), head.bias.double()).argmax(1) == y).double().mean())
    weight, bias = logistic_head(features, y, num_classes, l2, iterations)
    with torch.no_grad():
        after = float((F.linear(features, weight, bias).argmax(1) == y).double().mean())
    return weight.to(head.weight.dtype), bias.to(head.weight.dtype), before, after


def logistic_head(features: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = DEFAULT_L2,
                  iterations: int = DEFAULT_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """The L2-penalised multinomial logistic regression of ``y`` on ``features`` [n, d]: (weight [C, d], bias [C]),
    in the features' own units and dtype, detached (the fit is solved, not differentiated through)."""
    features = features.detach()
    # Centred per feature, scaled by one number for all of them (their RMS), so the penalty is the same in every
    # direction of feature space. Scaling each feature by its own std instead (version 1) gave near-constant units
    # weights of up to 212 (a random head's largest: 0.08), which fine-tuning then had to undo (docs/results.md, item 51).
    mean = features.mean(0)
    scale = (features - mean).pow(2).mean().sqrt().clamp(min=1e-12)
    z = (features - mean) / scale
    w = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=z.dtype, device=z.device, requires_grad=True)
    solver = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        solver.zero_grad()
        value = F.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        value.backward()
        return value

    with torch.enable_grad():  # the solver needs gradients even where the caller turned them off
        solver.step(loss)
    with torch.no_grad():
        weight = w / scale  # fold the scaling into the head: w·(f − μ)/s + b = (w/s)·f + (b − (w/s)·μ)
        bias = b - weight @ mean
    return weight, bias


def training_examples(train_x: torch.Tensor, train_y: torch.Tensor, examples: int, seed: int):
    """A seeded subset of ``examples`` training examples (all of them if there are fewer)."""
    if examples < 1:
        raise HeadFitError(f"examples must be ≥ 1, got {examples}")
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))[:examples]
    return train_x[order], train_y[order]


def with_fitted_head(arch, task, state_dict: dict[str, torch.Tensor], seed: int,
                     examples: int = DEFAULT_EXAMPLES) -> HeadFit:
    """``state_dict`` for ``arch`` with its head fitted to ``examples`` of ``task``'s training split."""
    from weightgen.checkpoint import model_for_weights
    from weightgen.data import load_task

    data = load_task(task)
    model = model_for_weights(state_dict, arch, task, where="head fit")
    x, y = training_examples(data.train.x, data.train.y, examples, seed)
    return fit_head(model, x, y, data.num_classes)
