"""How the head fit's settings trade accuracy for FLOPs, on random bodies of pairs no suite targets.

For each pair and each (L2, L-BFGS iterations, examples), a freshly initialised network gets its head
fitted (``weightgen.head_fit.fit_head``) and is scored on the validation split, with no fine-tuning.
This is how the defaults in ``weightgen/head_fit.py`` were chosen, before any bench ran with them;
it reads no suite case.

    .venv/bin/python benchmarks/head_fit_probe.py
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from weightgen.data import input_shape, load_task
from weightgen.head_fit import fit_head, training_examples
from weightgen.models import build_model
from weightgen.training import evaluate

PAIRS = [("mlp:hidden=32x32", "digits:rot90=1"), ("cnn2d:channels=8x16", "digits:rot90=3"),
         ("transformer:dim=16,depth=1,heads=2,patch=8", "digits:rot90=3"),
         ("cnn1d:channels=16x16", "mnist1d:template_seed=1"), ("mlp:hidden=64x64", "mnist1d:template_seed=1")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--l2", default="1e-3,1e-2,1e-1")
    parser.add_argument("--iterations", default="20,100")
    parser.add_argument("--examples", default="500,1000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = list(itertools.product(*([float(v) for v in args.l2.split(",")], [int(v) for v in args.iterations.split(",")],
                                    [int(v) for v in args.examples.split(",")])))
    rows = []
    for arch, task in PAIRS:
        data = load_task(task)
        for l2, iterations, examples in grid:
            model = build_model(arch, input_shape(task), seed=args.seed)
            x, y = training_examples(data.train.x, data.train.y, examples, args.seed)
            fit = fit_head(model, x, y, data.num_classes, l2=l2, iterations=iterations)
            val_loss, val_acc = evaluate(model, data.val)
            rows.append({"arch": arch, "task": task, "l2": l2, "iterations": iterations, "examples": examples,
                         "flops": fit.flops, "train_acc": fit.train_acc_after, "val_acc": val_acc, "val_loss": val_loss})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print("\nmedian over pairs:")
        print(table.groupby(["l2", "iterations", "examples"])[["flops", "val_acc", "val_loss"]].median()
              .to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
