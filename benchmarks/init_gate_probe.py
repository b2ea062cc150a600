"""Would a gate that falls back to random init, when a sample's training loss is above random's, save more?

A generated start that is confidently wrong (an unseen label order or rotation) can fine-tune slower than
random init (docs/results.md, item 50). The gate asks of each (case, seed): is the sample's cross-entropy on
the first training batch (the recipe's batch size: what `generated-best-of-k` scores on) above the target's
own random init's? If so, start from random init instead. It reads a finished bench of the run, so it
fine-tunes nothing: a gated row takes `random`'s own compute_saved for that seed (the gate's one forward pass,
~1e5-1e7 FLOPs, is left out, which flatters the gate). It prints each row and the split medians with and
without the gate (not reached = 0, as the bench counts them). About a minute on one core:

    .venv/bin/python benchmarks/init_gate_probe.py --suite suites/default.yaml --run runs/xsp-k100-s3-lr1e-4 \
        --bench runs/bench/xsp-k100-s3-lr1e-4
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
import torch.nn.functional as F

from weightgen.data import input_shape, load_task
from weightgen.generate import Generator
from weightgen.models import build_model
from weightgen.specs import parse_arch
from weightgen.suite import load_suite


def gate_rows(suite_file: str, run: str, bench: str, splits=("unseen-arch", "unseen-task")) -> pd.DataFrame:
    suite, generator = load_suite(suite_file), Generator.from_run(run)
    results = pd.read_parquet(f"{bench}/results.parquet")
    rows = []
    for case in suite.cases:
        if case.split not in splits:
            continue
        train = load_task(case.task).train
        batch = suite.recipe_for(parse_arch(case.arch).family).batch_size
        x, y = train.x[:batch], train.y[:batch]
        for seed in suite.seeds_for(case):
            # best-of-1 scores the one sample on the same first batch, as `generated-best-of-k` would
            loss_sample = generator.best_of(case.arch, case.task, 1, seed, batch).scores[0]
            with torch.no_grad():
                random_init = build_model(parse_arch(case.arch), input_shape(case.task), seed=seed).eval()
                loss_random = float(F.cross_entropy(random_init(x), y))
            saved = {}
            for method in ("generated", "random"):
                row = results[(results.arch == case.arch) & (results.task == case.task) & (results.seed == seed)
                              & (results.method == method)]
                if row.empty:
                    raise SystemExit(f"{bench}: no {method} row for {case.case_id} seed {seed}; bench this run first")
                saved[method] = float(row.compute_saved.fillna(0.0).iloc[0])  # not reached = 0, as the bench counts
            gated = loss_sample > loss_random
            rows.append(dict(split=case.split, case=case.case_id, seed=seed, loss_sample=loss_sample,
                             loss_random=loss_random, gated=gated, saved=saved["generated"],
                             saved_gated=saved["random"] if gated else saved["generated"]))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--run", required=True, help="the generator run the bench sampled")
    parser.add_argument("--bench", required=True, help="a bench folder of that run with generated and random rows")
    args = parser.parse_args()
    rows = gate_rows(args.suite, args.run, args.bench)
    pd.set_option("display.width", 200)
    print(rows.to_string(index=False, float_format="%.3f"))
    print("\nmedian compute saved per split, without and with the gate")
    print(rows.groupby("split")[["saved", "saved_gated"]].median().round(3).to_string())


if __name__ == "__main__":
    main()
