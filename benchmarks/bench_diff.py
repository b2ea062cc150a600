"""Two finished benches of the same suite side by side: one method's compute saved per case, and the change.

A lever is judged against a control (docs/results.md, item 13: a split's median moves by 0.1-0.2
between rebuilds), and a split median hides which cases moved. This prints, for one init method,
every case's median compute saved over seeds in bench A and bench B, the difference, and the
baselines' figures from B beside them; then the split medians the bench itself prints (not reached
= 0). It reads the bench folders only (no training):

    .venv/bin/python benchmarks/bench_diff.py runs/bench/wide-S-la50 runs/bench/wide-S-la100 --method generated
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SPLITS = ("seen", "unseen-arch", "unseen-task", "unseen-both")


def _results(bench_dir: Path, method: str) -> pd.DataFrame:
    results = pd.read_parquet(Path(bench_dir) / "results.parquet")
    if method not in set(results["method"]):
        raise SystemExit(f"{bench_dir}: no results for method {method!r}; present: {', '.join(sorted(results['method'].unique()))}")
    return results[results["status"] == "ok"].assign(saved=lambda t: t["compute_saved"].fillna(0.0))


def bench_diff(a: str | Path, b: str | Path, method: str = "generated",
               baselines: tuple[str, ...] = ("retrieval", "weight-selection")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per case, per split): ``method``'s median compute saved in ``a`` and ``b`` and b − a; ``baselines`` from ``b``."""
    ra, rb = _results(a, method), _results(b, method)
    if set(zip(ra["arch"], ra["task"])) != set(zip(rb["arch"], rb["task"])):
        raise SystemExit(f"{a} and {b} bench other cases: compare benches of one suite")
    keys = ["split", "arch", "task"]

    def per_case(results: pd.DataFrame, name: str) -> pd.Series:
        return results[results["method"] == name].groupby(keys)["saved"].median().rename(name)

    cases = pd.concat([per_case(ra, method).rename("a"), per_case(rb, method).rename("b")], axis=1)
    cases["b - a"] = cases["b"] - cases["a"]
    for name in baselines:
        if name in set(rb["method"]):
            cases[name] = per_case(rb, name)
    order = {s: i for i, s in enumerate(SPLITS)}
    cases = cases.reset_index().sort_values(["split", "arch", "task"], key=lambda c: c.map(order) if c.name == "split" else c)

    def per_split(results: pd.DataFrame) -> pd.Series:  # over runs, as the bench's summary
        return results[results["method"] == method].groupby("split")["saved"].median()

    splits = pd.concat([per_split(ra).rename("a"), per_split(rb).rename("b")], axis=1)
    splits["b - a"] = splits["b"] - splits["a"]
    splits = splits.reindex([s for s in SPLITS if s in splits.index])
    return cases.round(3), splits.round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", help="the control's bench folder")
    parser.add_argument("b", help="the lever's bench folder")
    parser.add_argument("--method", default="generated", help="the init method to compare")
    args = parser.parse_args()
    cases, splits = bench_diff(args.a, args.b, args.method)
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_rows", 500):
        print(f"{args.method}: median compute saved per case (a = {args.a}, b = {args.b}; baselines from b)")
        print(cases.to_string(index=False))
        print(f"\n{args.method}: median compute saved per split, over runs (not reached = 0)")
        print(splits.to_string())


if __name__ == "__main__":
    main()
