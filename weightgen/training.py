"""The one training loop: the zoo, the encoder's reconstruction check and every fine-tune use it.

Constant-LR AdamW, a fixed batch size and step budget, evaluation on the validation split at
step 0 and every ``eval_every`` steps (and at the last step), so every curve is "anytime".
FLOPs per step are counted once with ``weightgen.flops.counting_flops`` (forward + backward of one
batch; the counter covers matmuls, convolutions and attention, not element-wise ops) — the
shapes are static, so every step costs the same.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from weightgen.data import Dataset, Split
from weightgen.flops import counting_flops
from weightgen.specs import Recipe


@dataclass
class EvalPoint:
    step: int
    train_loss: float  # mean training loss since the previous evaluation (NaN at step 0)
    val_loss: float
    val_acc: float


@dataclass
class TrainResult:
    curve: list[EvalPoint]
    flops_per_step: int
    eval_flops: int  # FLOPs of one pass over the validation split
    test_loss: float
    test_acc: float
    wall_time: float
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    checkpoint_metrics: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def final(self) -> EvalPoint:
        return self.curve[-1]

    @property
    def train_flops(self) -> int:
        return self.flops_per_step * self.curve[-1].step


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2048) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on a split, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    model.train(was_training)
    n = max(len(split), 1)
    return loss_sum / n, correct / n


def count_step_flops(model: nn.Module, split: Split, batch_size: int) -> int:
    """FLOPs of one training step's forward + backward on a batch of ``batch_size``."""
    x, y = split.x[:batch_size], split.y[:batch_size]
    model = copy.deepcopy(model)  # a copy, so the count leaves no trace (batch-norm statistics, grads) on the model
    with counting_flops() as counter:
        F.cross_entropy(model(x), y).backward()
    return int(counter.get_total_flops())


def count_eval_flops(model: nn.Module, split: Split) -> int:
    model = copy.deepcopy(model)  # in train mode batch norm would otherwise absorb the val split's statistics
    with counting_flops() as counter, torch.no_grad():
        model(split.x)
    return int(counter.get_total_flops())


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterable[torch.Tensor]:
    """Endless index batches: a fresh permutation each epoch, drawn from ``generator``."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[start : start + batch_size]


def train(
    model: nn.Module,
    data: Dataset,
    recipe: Recipe,
    seed: int = 0,
    checkpoint_steps: Iterable[int] = (),
    on_eval: Callable[[EvalPoint], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place with ``recipe``; returns the curve, FLOPs, test metrics, checkpoints.

    ``checkpoint_steps`` (0 ≤ s ≤ recipe.steps) are copied out as CPU state_dicts with their val/test
    metrics. Batches are drawn from a generator seeded with ``seed``, so a run is reproducible.
    """
    wanted = sorted(set(checkpoint_steps))
    if wanted and (wanted[0] < 0 or wanted[-1] > recipe.steps):
        raise ValueError(f"checkpoint steps {wanted} fall outside 0..{recipe.steps}")
    started = time.perf_counter()
    batch_size = min(recipe.batch_size, len(data.train))
    flops_per_step = count_step_flops(model, data.train, batch_size)
    eval_flops = count_eval_flops(model, data.val)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batches = _batches(len(data.train), batch_size, generator)

    curve: list[EvalPoint] = []
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    checkpoint_metrics: dict[int, dict[str, float]] = {}
    running, count = 0.0, 0

    def record(step: int) -> None:
        nonlocal running, count
        val_loss, val_acc = evaluate(model, data.val)
        point = EvalPoint(step, running / count if count else float("nan"), val_loss, val_acc)
        curve.append(point)
        running, count = 0.0, 0
        if on_eval:
            on_eval(point)

    def snapshot(step: int) -> None:
        test_loss, test_acc = evaluate(model, data.test)
        checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        checkpoint_metrics[step] = {"val_acc": curve[-1].val_acc, "val_loss": curve[-1].val_loss,
                                    "test_acc": test_acc, "test_loss": test_loss}

    model.train()
    record(0)
    if 0 in wanted:
        snapshot(0)
    for step in range(1, recipe.steps + 1):
        idx = next(batches)
        loss = F.cross_entropy(model(data.train.x[idx]), data.train.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        count += 1
        if step % recipe.eval_every == 0 or step == recipe.steps or step in wanted:
            record(step)
        if step in wanted:
            snapshot(step)
    test_loss, test_acc = evaluate(model, data.test)
    return TrainResult(curve, flops_per_step, eval_flops, test_loss, test_acc,
                       time.perf_counter() - started, checkpoints, checkpoint_metrics)
