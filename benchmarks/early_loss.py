"""Do a start's first fine-tune steps undo it? How often each method's validation loss rises over the first steps.

A start that is already good loses its lead if the recipe's first constant-LR AdamW steps, each moving every weight
by about the LR whatever its gradient, knock it out of its basin. This reads finished benches' learning curves (no
training) and prints, per family and method, the share of runs whose validation loss at step k is above its loss
at step 0, and the median ratio of the two, on the chosen splits:

    .venv/bin/python benchmarks/early_loss.py runs/bench/c42-k300s4-{default,holdout,holdout2} --steps 5,10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def early_loss(bench_dirs: list[str | Path], steps: list[int], splits: list[str]) -> pd.DataFrame:
    """One row per (family, method): runs, and for each k the share whose loss rose by step k and the median ratio."""
    runs = []
    for bench_dir in map(Path, bench_dirs):
        results = pd.read_parquet(bench_dir / "results.parquet")
        curves = pd.read_parquet(bench_dir / "curves.parquet")
        cases = results.drop_duplicates("case_index")[["case_index", "family", "split"]]
        losses = curves[curves["step"].isin([0, *steps])].merge(cases, on="case_index")
        losses = losses[losses["split"].isin(splits)]
        table = losses.pivot_table(index=["family", "method", "case_index", "seed"], columns="step", values="val_loss")
        absent = sorted({0, *steps} - set(table.columns))
        if absent:
            raise SystemExit(f"{bench_dir}: its curves are not evaluated at step(s) {absent}")
        runs.append(table.reset_index().assign(bench=str(bench_dir)))
    runs = pd.concat(runs)
    columns = {"runs": ("seed", "size")}
    for k in steps:
        runs[f"rose_{k}"] = runs[k] > runs[0]
        runs[f"ratio_{k}"] = runs[k] / runs[0]
        columns |= {f"share rising by step {k}": (f"rose_{k}", "mean"), f"median loss ratio at {k}": (f"ratio_{k}", "median")}
    return runs.groupby(["family", "method"]).agg(**columns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", help="finished bench folders (results.parquet and curves.parquet)")
    parser.add_argument("--steps", default="5,10", help="the early steps k to compare with step 0")
    parser.add_argument("--splits", default="unseen-arch,unseen-task")
    args = parser.parse_args(argv)
    table = early_loss(args.benches, [int(s) for s in args.steps.split(",")], args.splits.split(","))
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
