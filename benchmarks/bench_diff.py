"""Two finished benches of the same suite side by side: one method's compute saved per case, and the change.

A lever is judged against a control (docs/results.md, item 13: a split's median moves by 0.1-0.2
between rebuilds), and a split median hides which cases moved. This prints, for one init method,
every case's median compute saved over seeds in bench A and bench B, the difference, and the
baselines' figures from B beside them; then the split medians the bench itself prints (not reached
= 0). It reads the bench folders only (no training):

    .venv/bin/python benchmarks/bench_diff.py runs/bench/wide-S-la50 runs/bench/wide-S-la100 --method generated

``--and A2 B2`` (repeatable) adds more pairs, one per suite, and then the change is also judged over every
pair's cases together: per split, the cases where B beats A and the paired gap (the median over cases of B − A,
with its bootstrap interval over cases, ``weightgen.bench_score.paired_gap``). That is how a change that
touches every method, such as a new corpus, is judged for the baselines:

    .venv/bin/python benchmarks/bench_diff.py runs/bench/tie-base-default runs/bench/sp-base-default \
        --and runs/bench/tie-base-holdout runs/bench/sp-base-holdout --method retrieval+head
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from weightgen.bench_score import paired_gap
from weightgen.terminal import interval

SPLITS = ("seen", "unseen-arch", "unseen-task", "unseen-both")


def _results(bench_dir: Path, method: str, splits: tuple[str, ...] = SPLITS) -> pd.DataFrame:
    results = pd.read_parquet(Path(bench_dir) / "results.parquet")
    results = results[results["split"].isin(splits)]
    if method not in set(results["method"]):
        raise SystemExit(f"{bench_dir}: no results for method {method!r}; present: {', '.join(sorted(results['method'].unique()))}")
    return results[results["status"] == "ok"].assign(saved=lambda t: t["compute_saved"].fillna(0.0))


def bench_diff(a: str | Path, b: str | Path, method: str = "generated",
               baselines: tuple[str, ...] = ("retrieval", "weight-selection"),
               rounded: bool = True, splits: tuple[str, ...] = SPLITS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per case, per split): ``method``'s median compute saved in ``a`` and ``b`` and b − a; ``baselines`` from ``b``;
    only the cases of ``splits`` (so two benches of one suite that ran different splits compare on the shared ones)."""
    ra, rb = _results(a, method, splits), _results(b, method, splits)
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
    return (cases.round(3), splits.round(3)) if rounded else (cases, splits)


def paired_change(cases: pd.DataFrame) -> pd.DataFrame:
    """Per split, over ``bench_diff``'s per-case rows (of one or several pairs of benches, concatenated): cases,
    cases where b beats a, and the median of b − a over cases with its bootstrap interval."""
    rows = []
    for split in [s for s in SPLITS if s in set(cases["split"])]:
        gap = cases.loc[cases["split"] == split, "b - a"]
        median, low, high = paired_gap(gap)
        rows.append({"split": split, "cases": len(gap), "b wins": int((gap > 0).sum()), "b loses": int((gap < 0).sum()),
                     "median b - a": round(median, 3), "90% CI (cases)": interval(low, high)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", help="the control's bench folder")
    parser.add_argument("b", help="the lever's bench folder")
    parser.add_argument("--method", default="generated", help="the init method to compare")
    parser.add_argument("--and", dest="more", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="another pair of benches (another suite); the change is then judged over all pairs' cases")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: compare only these splits' cases")
    args = parser.parse_args()
    splits = tuple(s for s in args.splits.split(",") if s)
    if unknown := [s for s in splits if s not in SPLITS]:
        parser.error(f"unknown split(s) {', '.join(unknown)}; valid: {', '.join(SPLITS)}")
    pairs = [(args.a, args.b)] + [tuple(pair) for pair in args.more]
    compared = [bench_diff(a, b, args.method, rounded=False, splits=splits) for a, b in pairs]  # each bench read once
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_rows", 500):
        for (a, b), (cases, splits) in zip(pairs, compared):
            print(f"{args.method}: median compute saved per case (a = {a}, b = {b}; baselines from b)")
            print(cases.round(3).to_string(index=False))
            print(f"\n{args.method}: median compute saved per split, over runs (not reached = 0)")
            print(splits.round(3).to_string() + "\n")
        print(f"{args.method}: b against a, case by case, over {len(pairs)} pair(s) of benches")
        print(paired_change(pd.concat([cases for cases, _ in compared], ignore_index=True)).to_string(index=False))


if __name__ == "__main__":
    main()
