"""Several finished benches of one generator, one per suite, pooled: the bench's own summary over all their cases.

A lever is judged over the three suites together (docs/results.md, items 64-72: 18 cases per split), and each
bench prints its own suite's summary only. This reads finished bench folders (no training), moves each suite's
``case_index`` past the previous suite's (their cases are other cases), and prints, per split and method, what
``weightgen.bench_score.summarize`` prints for one bench — median compute saved (not reached = 0) with its
bootstrap interval over cases, reach rate, final accuracy against random's, the init's price — and then the
median per family:

    .venv/bin/python benchmarks/pooled_summary.py runs/bench/c37-e8-default runs/bench/c37-e8-holdout \\
        runs/bench/c37-e8-holdout2 --splits unseen-arch,unseen-task --methods generated,generated+head
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from weightgen.bench_score import summarize

COLUMNS = ["cases", "runs", "compute_saved_median", "saved_ci_low", "saved_ci_high", "reach_rate",
           "final_vs_random", "worst_final_vs_random", "test_acc_at_init", "init_flops_median"]


def pooled_results(bench_dirs: list[str | Path]) -> pd.DataFrame:
    """The benches' results tables as one, each suite's case indices moved past the last one's."""
    if not bench_dirs:
        raise ValueError("name at least one bench folder")
    tables, offset = [], 0
    for bench_dir in bench_dirs:
        path = Path(bench_dir) / "results.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{bench_dir}: no results.parquet (is it a finished bench folder?)")
        table = pd.read_parquet(path)
        tables.append(table.assign(case_index=table["case_index"] + offset))
        offset += int(table["case_index"].max()) + 1
    return pd.concat(tables, ignore_index=True)


def pooled_summary(results: pd.DataFrame, splits: list[str], methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary rows for ``splits`` × ``methods``, median compute saved per family × split for each method)."""
    summary = summarize(results)
    picked = summary[summary.index.get_level_values("split").isin(splits)
                     & summary.index.get_level_values("method").isin(methods)]
    ok = results[(results["status"] == "ok") & results["split"].isin(splits) & results["method"].isin(methods)]
    families = (ok.assign(saved=ok["compute_saved"].fillna(0.0))
                .pivot_table(index=["method", "family"], columns="split", values="saved", aggfunc="median"))
    return picked[COLUMNS], families


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", help="finished bench folders, one per suite")
    parser.add_argument("--splits", default="unseen-arch,unseen-task")
    parser.add_argument("--methods", default="generated,generated+head")
    args = parser.parse_args(argv)
    summary, families = pooled_summary(pooled_results(args.benches), args.splits.split(","), args.methods.split(","))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summary.to_string())
        print()
        print("median compute saved per family (not reached = 0):")
        print(families.to_string())


if __name__ == "__main__":
    main()
