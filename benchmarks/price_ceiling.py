"""What a generated start can save at most, given what one sample costs: the price ceiling of each DiT size.

The bench charges a generated start for the FLOPs of making it (``init_flops``: the DiT's passes, counted by
``FlopCounterMode``) in the units of the case's budget, random init's FLOPs to the target. So a start saves at most
1 − price, even when it needs no fine-tuning at all, and a generator whose samples cost more than a tenth of
random's compute can never reach the issue's 90 % however good they are. This sizes that ceiling for each DiT
preset on the bench's own cases: for every (architecture, task) of the given bench tables it counts one sample's
FLOPs with the run's sampler (the run's DiT with its width and depth replaced by the preset's, weights untrained:
the count does not depend on them), divides by each run's ``random_flops_to_target``, and prints, per target split
and preset, the median price, the median ceiling 1 − price, and the share of runs whose price leaves room for 90 %.
The run's own preset is checked against the ``init_flops`` the bench recorded for ``generated``.

    .venv/bin/python benchmarks/price_ceiling.py --run runs/sp-xsp-k100-s3-lr1e-4-ts \\
        --bench runs/bench/c36-ts3-default runs/bench/c36-ts3-holdout runs/bench/c36-ts3-holdout2
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from weightgen.bench_score import summarize
from weightgen.dit import DIT_PRESETS, DiT
from weightgen.generate import Generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pooled_summary import pooled_results  # noqa: E402


def with_preset(generator: Generator, preset: str, seed: int = 0) -> Generator:
    """A copy of ``generator`` whose DiT has ``preset``'s width, depth and heads (fresh weights), all else the same."""
    torch.manual_seed(seed)
    other = copy.copy(generator)
    other.dit = DiT(replace(generator.dit.cfg, **DIT_PRESETS[preset])).eval()
    return other


def sample_flops(generator: Generator, arch: str, task: str) -> int:
    return generator.sample(arch, task, samples=1, seed=0).flops


def price_table(results: pd.DataFrame, generator: Generator, presets: list[str]) -> pd.DataFrame:
    """One row per (case, seed, preset) of ``results``' random runs: the preset's sample FLOPs and its price."""
    runs = results[results["method"] == "random"][["suite", "case", "split", "family", "arch", "task", "seed",
                                                   "random_flops_to_target"]]
    rows = []
    for preset in presets:
        sized = with_preset(generator, preset)
        parameters = sum(p.numel() for p in sized.dit.parameters())
        flops = {pair: sample_flops(sized, *pair) for pair in sorted(set(zip(runs["arch"], runs["task"])))}
        priced = runs.assign(preset=preset, parameters=parameters,
                             sample_flops=[flops[a, t] for a, t in zip(runs["arch"], runs["task"])])
        rows.append(priced.assign(price=priced["sample_flops"] / priced["random_flops_to_target"]))
    table = pd.concat(rows, ignore_index=True)
    return table.assign(ceiling=1 - table["price"])


def check_against_bench(results: pd.DataFrame, table: pd.DataFrame, preset: str) -> float:
    """The largest relative gap between this count for the run's own preset and the bench's ``init_flops`` of
    ``generated`` on the same cases (0 when they agree)."""
    bench = results[results["method"] == "generated"].groupby(["arch", "task"])["init_flops"].median()
    mine = table[table["preset"] == preset].groupby(["arch", "task"])["sample_flops"].median()
    joined = pd.concat([bench, mine], axis=1, join="inner")
    return float(((joined["sample_flops"] - joined["init_flops"]).abs() / joined["init_flops"]).max())


def summary(table: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    by = table.groupby(["split", "preset"], sort=False)
    out = by.agg(parameters=("parameters", "first"), sample_flops=("sample_flops", "median"),
                 price=("price", "median"), ceiling=("ceiling", "median"),
                 room_for_90=("price", lambda p: float((p <= 0.10).mean())))
    pooled = summarize(results)  # the bench's own median (not reached = 0), over the pooled runs
    saved = {split: pooled.loc[(split, "generated"), "compute_saved_median"] if (split, "generated") in pooled.index
             else float("nan") for split, _ in out.index}
    return out.assign(generated_saved=[saved[split] for split, _ in out.index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a generator run folder: its sampler and DiT config are used")
    parser.add_argument("--bench", nargs="+", required=True, help="bench output folders (results.parquet)")
    parser.add_argument("--presets", default=",".join(DIT_PRESETS))
    parser.add_argument("--splits", default="unseen-arch,unseen-task")
    parser.add_argument("--out", default="", help="write the per-run table here as CSV")
    args = parser.parse_args()
    torch.set_num_threads(1)

    missing = [b for b in args.bench if not (Path(b) / "results.parquet").is_file()]
    if missing:
        parser.error(f"no results.parquet in {', '.join(missing)}")
    presets = args.presets.split(",")
    unknown = [p for p in presets if p not in DIT_PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; valid: {', '.join(DIT_PRESETS)}")
    results = pooled_results(args.bench)  # each suite's case_index moved past the last one's, as its cases are others
    results = results[results["split"].isin(args.splits.split(","))]
    generator = Generator.from_run(args.run)
    own = next((p for p, v in DIT_PRESETS.items()
                if all(getattr(generator.dit.cfg, k) == x for k, x in v.items())), None)
    table = price_table(results, generator, presets)
    if own in presets and (results["method"] == "generated").any():
        print(f"check: the run's own preset ({own}) counted here vs the bench's init_flops of generated: "
              f"largest relative gap {check_against_bench(results, table, own):.2e}")
    if args.out:
        table.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(summary(table, results).to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
