"""How the head fit's settings trade accuracy for FLOPs, on random bodies of pairs no suite targets.

For each pair and each (L2, L-BFGS iterations, examples), a freshly initialised network gets its head
fitted (``weightgen.head_fit.fit_head``) and is scored on the validation split, with no fine-tuning.
This is how the defaults in ``weightgen/head_fit.py`` were chosen (on its first version, before any bench
ran with them; docs/results.md, item 51); it reads no suite case.

    .venv/bin/python benchmarks/head_fit_probe.py
    .venv/bin/python benchmarks/head_fit_probe.py --l2 1e-3,1e-2,1e-1 --iterations 10 --examples 1000 --finetune 600

With ``--finetune N`` each fitted network (and the same random init without the fit) is then fine-tuned N steps
with the zoo's recipe (LR 0.01 for CNN1d, 0.003 otherwise; batch 100), and its validation accuracy is printed at
steps 0, N/6, N/2 and N: a head that starts higher but fine-tunes slower than random init is no head start.
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from weightgen.data import input_shape, load_task
from weightgen.head_fit import classifier_head, fit_head, training_examples
from weightgen.models import build_model
from weightgen.specs import Recipe
from weightgen.training import evaluate, train

PAIRS = [("mlp:hidden=32x32", "digits:rot90=1"), ("cnn2d:channels=8x16", "digits:rot90=3"),
         ("transformer:dim=16,depth=1,heads=2,patch=8", "digits:rot90=3"),
         ("cnn1d:channels=16x16", "mnist1d:template_seed=1"), ("mlp:hidden=64x64", "mnist1d:template_seed=1")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--l2", default="1e-3,1e-2,1e-1")
    parser.add_argument("--iterations", default="20,100")
    parser.add_argument("--examples", default="500,1000")
    parser.add_argument("--finetune", type=int, default=0, help="fine-tune each fitted network this many steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = list(itertools.product(*([float(v) for v in args.l2.split(",")], [int(v) for v in args.iterations.split(",")],
                                    [int(v) for v in args.examples.split(",")])))
    rows = []
    for arch, task in PAIRS:
        data = load_task(task)
        if args.finetune:
            rows.append({"arch": arch, "task": task, "l2": "random init", "head_max_weight": _head_max_weight(
                build_model(arch, input_shape(task), seed=args.seed), data.val.x), **_finetune(
                build_model(arch, input_shape(task), seed=args.seed), arch, data, args.finetune, args.seed)})
        for l2, iterations, examples in grid:
            model = build_model(arch, input_shape(task), seed=args.seed)
            x, y = training_examples(data.train.x, data.train.y, examples, args.seed)
            fit = fit_head(model, x, y, data.num_classes, l2=l2, iterations=iterations)
            val_loss, val_acc = evaluate(model, data.val)
            rows.append({"arch": arch, "task": task, "l2": l2, "iterations": iterations, "examples": examples,
                         "flops": fit.flops, "train_acc": fit.train_acc_after, "val_acc": val_acc, "val_loss": val_loss,
                         "head_max_weight": _head_max_weight(model, x),
                         **(_finetune(model, arch, data, args.finetune, args.seed) if args.finetune else {})})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if not args.finetune:
            print("\nmedian over pairs:")
            print(table.groupby(["l2", "iterations", "examples"])[["flops", "val_acc", "val_loss"]].median()
                  .to_string(float_format=lambda v: f"{v:.3g}"))


def _head_max_weight(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest absolute weight of the classifier head, found as the fit finds it."""
    return float(classifier_head(model, x)[1].weight.detach().abs().max())


def _finetune(model: torch.nn.Module, arch: str, data, steps: int, seed: int) -> dict[str, float]:
    lr = 0.01 if arch.startswith("cnn1d") else 0.003  # the zoo's and the suites' recipe
    result = train(model, data, Recipe(lr=lr, batch_size=100, steps=steps, eval_every=max(1, steps // 6)), seed=seed)
    return {f"val@{p.step}": p.val_acc for p in result.curve if p.step in (0, steps // 6, steps // 2, steps)}


if __name__ == "__main__":
    main()
