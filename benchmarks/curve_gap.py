"""Where along fine-tuning does a head start go? A bench's learning curves, read at a few steps.

compute_saved counts the steps to the target, 0.99 x random init's mean validation accuracy at the
budget's last step — close to where random's curve flattens. An init can lead early and still
arrive with random. This prints, for each case, the mean validation accuracy (over seeds) of the
chosen methods at the chosen steps, the target, and each method's median steps to it, from a
finished bench folder (no training):

    .venv/bin/python benchmarks/curve_gap.py --bench runs/bench/default --dataset mnist1d
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def curve_gap(bench_dir: str | Path, methods: list[str], steps: list[int], dataset: str = "") -> pd.DataFrame:
    """One row per (case, method): validation accuracy at each of ``steps``, the target and steps to it."""
    bench_dir = Path(bench_dir)
    results = pd.read_parquet(bench_dir / "results.parquet")
    curves = pd.read_parquet(bench_dir / "curves.parquet")
    missing = sorted(set(methods) - set(results["method"]))
    if missing:
        raise SystemExit(f"{bench_dir}: no results for method(s) {', '.join(missing)}; "
                         f"present: {', '.join(sorted(results['method'].unique()))}")
    cases = results.drop_duplicates("case_index").set_index("case_index")
    if dataset:
        cases = cases[cases["task"].str.split(":").str[0] == dataset]
    rows = []
    for case_index, case in cases.iterrows():
        for method in methods:
            curve = curves[(curves["case_index"] == case_index) & (curves["method"] == method)]
            at = curve.groupby("step")["val_acc"].mean()
            done = results[(results["case_index"] == case_index) & (results["method"] == method)]
            row = {"split": case["split"], "arch": case["arch"], "task": case["task"], "method": method,
                   "target": round(float(case["target"]), 3)}
            row.update({f"@{s}": round(float(at.get(s, float("nan"))), 3) for s in steps})
            row["steps_to_target"] = float(done["steps_to_target"].median())
            row["saved"] = round(float(done["compute_saved"].median()), 3)
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="a finished bench folder (results.parquet, curves.parquet)")
    parser.add_argument("--methods", default="random,retrieval,generated", help="comma-separated init methods")
    parser.add_argument("--steps", default="0,25,50,100,200,400,800", help="comma-separated fine-tune steps")
    parser.add_argument("--dataset", default="", help="only cases on this dataset (digits, mnist1d)")
    args = parser.parse_args()
    table = curve_gap(args.bench, args.methods.split(","), [int(s) for s in args.steps.split(",")], args.dataset)
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_rows", 500):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
