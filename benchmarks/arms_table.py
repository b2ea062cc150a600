"""Arms of a lever across seeds and suites: each bench's split medians side by side, with the seeds' mean.

A lever is judged by several distillation seeds on two suites (docs/results.md, items 32 and 55), and the
benches of one arm live in folders named by hand. This reads finished bench folders only (no training) and
prints, per suite, method and split, every arm's median compute saved for each seed and their mean, and how many
seeds the arm beats the first arm named on (same seed, same suite):

    .venv/bin/python benchmarks/arms_table.py \\
        plain:3:default=runs/bench/head2-default spec:3:default=runs/bench/spec-default ... \\
        --methods generated,generated+head

Each argument is ``ARM:SEED:SUITE=BENCH_DIR``; the medians are the bench's own (not reached = 0, over runs). Name
the same ``ARM:SEED:SUITE`` twice and the later folder's methods override the earlier's (a method benched apart).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from weightgen.bench_score import median_interval
from weightgen.terminal import interval

SPLITS = ("unseen-arch", "unseen-task")


def split_medians(bench_dir: str | Path, methods: list[str], intervals: bool = False) -> pd.DataFrame:
    """[method, split] → ``saved``, the median compute saved over the bench's runs (not reached = 0), as the bench
    prints it, for those of ``methods`` the bench ran; with ``intervals`` also ``span``, its bootstrap interval over
    cases as ``low – high``."""
    results = pd.read_parquet(Path(bench_dir) / "results.parquet")
    ok = results[(results["status"] == "ok") & results["method"].isin(methods) & results["split"].isin(SPLITS)]
    grouped = ok.assign(saved=ok["compute_saved"].fillna(0.0)).groupby(["method", "split"])
    figures = grouped["saved"].median().to_frame()
    if intervals:
        figures["span"] = grouped.apply(lambda g: interval(*median_interval(g["saved"], g["case_index"])),
                                        include_groups=False)
    return figures


def parse(spec: str) -> tuple[str, int, str, str]:
    """``ARM:SEED:SUITE=DIR`` as (arm, seed, suite, dir), or a SystemExit naming the bad argument."""
    try:
        label, bench_dir = spec.split("=", 1)
        arm, seed, suite = label.split(":")
        return arm, int(seed), suite, bench_dir
    except ValueError:
        raise SystemExit(f"{spec!r}: expected ARM:SEED:SUITE=BENCH_DIR") from None


def arms_table(specs: list[str], methods: list[str], intervals: bool = False) -> pd.DataFrame:
    """One row per (suite, method, split, arm): the seeds' medians, their mean, and wins over the first arm; with
    ``intervals``, each seed's bootstrap interval over cases in place of the mean and wins."""
    parsed = [parse(spec) for spec in specs]
    found = {}  # a later folder for the same (arm, seed, suite) overrides the methods it holds
    for arm, seed, suite, bench_dir in parsed:
        for (method, split), row in split_medians(bench_dir, methods, intervals).iterrows():
            found[suite, method, split, arm, seed] = row
    if not found:
        raise SystemExit(f"none of the benches ran {', '.join(methods)}")
    frame = pd.DataFrame.from_dict(found, orient="index").rename_axis(["suite", "method", "split", "arm", "seed"])
    frame = frame.reset_index()
    arms = list(dict.fromkeys(arm for arm, *_ in parsed))
    keys = ["suite", "method", "split", "seed"]
    frame = frame.join(frame[frame["arm"] == arms[0]].set_index(keys)["saved"].rename("first"), on=keys)
    frame["beats_first"] = frame["saved"] > frame["first"]  # False where the first arm has no figure
    frame["arm"] = pd.Categorical(frame["arm"], categories=arms)  # rows in the order the arms were named
    rows = ["suite", "method", "split", "arm"]
    wide = frame.pivot_table(index=rows, columns="seed", values="saved", observed=True)
    wide.columns = [f"seed {s}" for s in wide.columns]
    if intervals:
        span = frame.pivot_table(index=rows, columns="seed", values="span", aggfunc="first", observed=True)
        return wide.join(span.rename(columns=lambda s: f"seed {s} 90% CI"))
    wide["mean"] = wide.mean(axis=1)
    wide[f"beats {arms[0]}"] = frame.groupby(rows, observed=True)["beats_first"].sum().astype(int)
    return wide


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", help="ARM:SEED:SUITE=BENCH_DIR")
    parser.add_argument("--methods", default="generated,generated+head")
    parser.add_argument("--intervals", action="store_true", help="each seed's bootstrap interval over cases")
    args = parser.parse_args(argv)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_columns", None, "display.float_format", "{:.3f}".format):
        print(arms_table(args.benches, [m for m in args.methods.split(",") if m], args.intervals))


if __name__ == "__main__":
    main()
