"""How often a generated arm beats each baseline, with the generated and the baseline rows from different benches.

The bench prints the share of cases where ``generated`` beats each baseline, but only for methods run in the same
bench. When the baselines are benched again (a new corpus draw, a new tie rule), the generated arms of earlier
benches can be judged against them without sampling again: every run is deterministic given its case and seed,
and ``random`` sets the target. This reads finished bench folders only, checks that the benches agree on
``random`` (same cases, same seeds, same steps to target), and prints, per suite and seed of the generator, the
share of cases where the generated method's median over the suite's seeds beats each baseline's, then the paired
gap (the median over cases of generated − baseline, with its bootstrap interval over cases), after each method's
median compute saved with its interval; ``--pool`` judges the suites together as well (twice the cases per split):

    .venv/bin/python benchmarks/beats_table.py --baselines default=runs/bench/tie-base-default \\
        3:default=runs/bench/ts-default 4:default=runs/bench/ts4-default

Each positional argument is ``SEED:SUITE=BENCH_DIR`` (a bench holding the generated methods); ``--baselines``
names one ``SUITE=BENCH_DIR`` per suite. The share is ``weightgen.bench_score.generated_beats``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from weightgen.bench_score import generated_beats, summarize
from weightgen.terminal import interval

GENERATED = ("generated", "generated+head")


def _read(bench_dir: str) -> pd.DataFrame:
    return pd.read_parquet(Path(bench_dir) / "results.parquet")


def _pair(spec: str) -> tuple[str, str]:
    label, _, bench_dir = spec.partition("=")
    if not bench_dir:
        raise SystemExit(f"{spec!r}: expected LABEL=BENCH_DIR")
    return label, bench_dir


def beats_table(generated: list[str], baselines: list[str], splits: tuple[str, ...],
                pool: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per (suite, generator seed, method, split, baseline): cases, wins, share, paired gap;
    one row per (suite, generator seed, split, method): median compute saved and its interval).

    With ``pool``, every generator seed's suites are also judged together as suite ``pooled`` (twice the cases
    per split, so narrower intervals), for the seeds that every suite has."""
    baseline_tables = {suite: _read(d) for suite, d in map(_pair, baselines)}
    merged = {}  # (seed, suite) -> the generated rows beside the baselines' rows
    for spec in generated:
        label, bench_dir = _pair(spec)
        seed, _, suite = label.partition(":")
        if suite not in baseline_tables:
            raise SystemExit(f"{spec!r}: no --baselines bench for suite {suite!r}")
        ours, theirs = _read(bench_dir), baseline_tables[suite]
        key = ["split", "arch", "task", "seed"]
        random = [t[t["method"] == "random"].set_index(key)["random_flops_to_target"] for t in (ours, theirs)]
        shared = random[0].index.intersection(random[1].index)
        if not (random[0][shared] == random[1][shared]).all():
            raise SystemExit(f"{bench_dir} and the {suite} baselines disagree on random's steps to target")
        gen = ours[ours["method"].isin(GENERATED)]
        base = theirs[~theirs["method"].isin(GENERATED)]
        both = pd.concat([gen, base]).set_index(key).loc[lambda t: t.index.isin(shared)].reset_index()
        merged[int(seed), suite] = both[both["split"].isin(splits)].assign(suite=suite)
    if pool:
        suites = {suite for _, suite in merged}
        for seed in sorted({seed for seed, _ in merged}):
            if all((seed, suite) in merged for suite in suites):
                merged[seed, "pooled"] = pd.concat([merged[seed, suite] for suite in sorted(suites)])
    rows, medians = [], []
    for (seed, suite), both in merged.items():
        # one index per case, the same for the generated and the baseline rows (the benches number them apart)
        both = both.assign(case_index=both.groupby(["suite", "arch", "task"]).ngroup())
        for row in generated_beats(both).to_dict("records"):
            rows.append({"suite": suite, "generator seed": seed, **row})
        for (split, method), row in summarize(both).iterrows():
            medians.append({"suite": suite, "generator seed": seed, "split": split, "method": method,
                            "cases": row["cases"], "saved": row["compute_saved_median"],
                            "interval": interval(row["saved_ci_low"], row["saved_ci_high"])})
    return pd.DataFrame(rows), pd.DataFrame(medians)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generated", nargs="+", help="SEED:SUITE=BENCH_DIR, a bench with the generated methods")
    parser.add_argument("--baselines", action="append", required=True, help="SUITE=BENCH_DIR (repeat per suite)")
    parser.add_argument("--splits", default="unseen-arch,unseen-task")
    parser.add_argument("--against", default="retrieval,retrieval+head,weight-selection,noisy-nearest",
                        help="the baselines to show")
    parser.add_argument("--pool", action="store_true", help="also judge the suites together (suite 'pooled')")
    args = parser.parse_args(argv)
    table, medians = beats_table(args.generated, args.baselines, tuple(args.splits.split(",")), args.pool)
    shown = {*args.against.split(","), *GENERATED}
    medians = medians[medians["method"].isin(shown)].assign(
        saved=lambda m: [f"{v:.2f} ({i})" for v, i in zip(m["saved"], m["interval"])])
    medians = medians.pivot_table(index=["suite", "split", "method"], columns="generator seed", values="saved",
                                  aggfunc="first")
    medians.columns = [f"median, seed {s}" for s in medians.columns]
    table = table[table["baseline"].isin(args.against.split(","))]
    wide = table.pivot_table(index=["suite", "method", "baseline", "split"], columns="generator seed",
                             values="wins", aggfunc="sum")
    cases = table.groupby(["suite", "method", "baseline", "split"])["cases"].first()
    wide.columns = [f"seed {s}" for s in wide.columns]
    wide["of cases"] = cases
    wide["mean share"] = wide.filter(like="seed").mean(axis=1) / cases
    # the paired gap (generated − baseline, median over cases) with its bootstrap interval, per seed
    table["gap"] = [f"{g:+.2f} ({interval(lo, hi)})" for g, lo, hi in
                    zip(table["median_gap"], table["gap_ci_low"], table["gap_ci_high"])]
    gaps = table.pivot_table(index=["suite", "method", "baseline", "split"], columns="generator seed", values="gap",
                             aggfunc="first")
    gaps.columns = [f"gap, seed {s}" for s in gaps.columns]
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_columns", None,
                           "display.float_format", "{:.2f}".format):
        print(medians)
        print()
        print(wide)
        print()
        print(gaps)


if __name__ == "__main__":
    main()
