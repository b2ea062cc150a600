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
``steps`` is the first evaluation (every 10 steps) at 99 % of random init's final validation accuracy, as the
bench's target is set, and ``saved`` is 1 − steps / random's steps (the fit's FLOPs not charged).
``--keep-norm no,yes`` fits each head both ways (``fit_head(keep_norm=...)``); ``--seeds`` averages over inits.

    .venv/bin/python benchmarks/head_fit_probe.py --l2 1e-2 --iterations 10 --examples 1000 --finetune 1000 \
        --keep-norm no,yes --seeds 7,8,9
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
    parser.add_argument("--seeds", default="7", help="','-separated inits (and example subsets) per pair")
    parser.add_argument("--l2", default="1e-3,1e-2,1e-1")
    parser.add_argument("--iterations", default="20,100")
    parser.add_argument("--examples", default="500,1000")
    parser.add_argument("--keep-norm", default="no", help="'no', 'yes' or 'no,yes': fit_head's keep_norm")
    parser.add_argument("--finetune", type=int, default=0, help="fine-tune each fitted network this many steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = list(itertools.product(*([float(v) for v in args.l2.split(",")], [int(v) for v in args.iterations.split(",")],
                                    [int(v) for v in args.examples.split(",")],
                                    [v == "yes" for v in args.keep_norm.split(",")])))
    rows = []
    for (arch, task), seed in itertools.product(PAIRS, [int(v) for v in args.seeds.split(",")]):
        data = load_task(task)
        random = {}
        if args.finetune:
            random = _finetune(build_model(arch, input_shape(task), seed=seed), arch, data, args.finetune, seed)
            rows.append({"arch": arch, "task": task, "seed": seed, "l2": "random init", "head_max_weight": _head_max_weight(
                build_model(arch, input_shape(task), seed=seed), data.val.x), **_scored(random, random)})
        for l2, iterations, examples, keep_norm in grid:
            model = build_model(arch, input_shape(task), seed=seed)
            x, y = training_examples(data.train.x, data.train.y, examples, seed)
            fit = fit_head(model, x, y, data.num_classes, l2=l2, iterations=iterations, keep_norm=keep_norm)
            val_loss, val_acc = evaluate(model, data.val)
            rows.append({"arch": arch, "task": task, "seed": seed, "l2": l2, "iterations": iterations,
                         "examples": examples, "keep_norm": keep_norm,
                         "flops": fit.flops, "train_acc": fit.train_acc_after, "val_acc": val_acc, "val_loss": val_loss,
                         "head_max_weight": _head_max_weight(model, x),
                         **(_scored(_finetune(model, arch, data, args.finetune, seed), random) if args.finetune else {})})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_rows", None, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if not args.finetune:
            print("\nmedian over pairs:")
            print(table.groupby(["l2", "iterations", "examples", "keep_norm"])[["flops", "val_acc", "val_loss"]].median()
                  .to_string(float_format=lambda v: f"{v:.3g}"))
        else:
            fitted = table[table["l2"] != "random init"]
            print("\nsaved (1 − steps / random's steps) per pair, mean over seeds; then the median over pairs:")
            per_pair = fitted.groupby(["arch", "l2", "iterations", "examples", "keep_norm"])["saved"].mean().unstack("arch")
            per_pair["median"] = per_pair.median(axis=1)
            print(per_pair.to_string(float_format=lambda v: f"{v:.3f}"))


def _head_max_weight(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest absolute weight of the classifier head, found as the fit finds it."""
    return float(classifier_head(model, x)[1].weight.detach().abs().max())


def _finetune(model: torch.nn.Module, arch: str, data, steps: int, seed: int) -> dict:
    lr = 0.01 if arch.startswith("cnn1d") else 0.003  # the zoo's and the suites' recipe
    result = train(model, data, Recipe(lr=lr, batch_size=100, steps=steps, eval_every=10), seed=seed)
    return {p.step: p.val_acc for p in result.curve}


def _scored(curve: dict, random: dict) -> dict:
    """The curve at steps 0, N/6, N/2, N; its steps to 99 % of random init's final accuracy; the share saved."""
    last = max(curve)
    target = 0.99 * random[max(random)]
    reached = min((s for s, acc in curve.items() if acc >= target), default=float("nan"))
    random_steps = min(s for s, acc in random.items() if acc >= target)
    shown = {f"val@{s}": curve[s] for s in sorted(curve) if s in (0, last // 6 // 10 * 10, last // 2, last)}
    return {**shown, "steps": reached, "saved": 1 - reached / random_steps if random_steps else float("nan")}


if __name__ == "__main__":
    main()
