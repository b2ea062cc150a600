"""Does the one training loop reproduce the MNIST-1D reference figures (Greydanus 2020)?

Trains the paper's MLP (40-100-100-10) and CNN (3 × 25-channel conv, stride 2) on MNIST-1D with
its recipe (Adam-style, lr 1e-2, batch 100, 6,000 steps) over several seeds and prints test
accuracy beside the published figures (MLP ≈ 68%, CNN ≈ 94%). Our split holds out 500 of the
4,000 training samples for validation, so the models see 12.5% less data than the paper's.

    .venv/bin/python benchmarks/reference.py [--seeds 3] [--steps 6000]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from rich.console import Console
from rich.table import Table

from weightgen.data import load_task
from weightgen.models import build_model
from weightgen.specs import Recipe
from weightgen.training import train

REFERENCE = {"mlp:hidden=100x100": ("MLP", 0.68), "cnn1d:channels=25x25x25": ("CNN", 0.94)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_task("mnist1d")
    recipe = Recipe(lr=1e-2, batch_size=100, steps=args.steps, eval_every=500)
    table = Table(title=f"MNIST-1D, {args.steps} steps, lr 1e-2, batch 100, {args.seeds} seeds")
    for column in ("model", "arch", "test acc (mean ± sd)", "reference", "gap (points)", "s/run"):
        table.add_column(column, justify="right" if column not in ("model", "arch") else "left")
    for arch, (label, reference) in REFERENCE.items():
        accs, times = [], []
        for seed in range(args.seeds):
            result = train(build_model(arch, data.input_shape, seed=seed), data, recipe, seed=seed)
            accs.append(result.test_acc)
            times.append(result.wall_time)
        mean, sd = statistics.mean(accs), statistics.pstdev(accs)
        table.add_row(label, arch, f"{mean:.3f} ± {sd:.3f}", f"{reference:.2f}", f"{100 * (mean - reference):+.1f}",
                      f"{statistics.mean(times):.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
