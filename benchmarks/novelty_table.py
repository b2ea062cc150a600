"""Novelty of every init method's start, without fine-tuning: its highest test-prediction agreement with a corpus member.

The bench measures novelty as BENCHMARK.md asks (``weightgen.bench.run_job``), but only beside a fine-tune. This
makes each suite job's starts exactly as the bench makes them (``weightgen.bench.make_init``) and scores only their
novelty, so a change to how novelty is measured can be applied to finished benches in seconds per start. A member
trained on another label order counts as it predicts and with its classes renamed into the case's order
(``weightgen.bench._member_predictions``), so a copy up to a renaming is a copy.

    .venv/bin/python benchmarks/novelty_table.py suites/holdout.yaml --corpus corpus/wide --label-map \\
        --run runs/xsp-k100-s4-lr1e-4-ts --methods noisy-nearest,retrieval,generated --splits unseen-arch,unseen-task

Per (split, method), as the bench reports them: the median highest agreement with any member, the median kappa with
the nearest member by kappa, and how many starts copy a member (kappa ≥ 0.9; n/a starts are left out). Cases with no
member of their architecture have no novelty.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from weightgen import bench
from weightgen.bench_score import agreement, kappa
from weightgen.checkpoint import model_for_weights
from weightgen.data import load_task
from weightgen.suite import load_suite


def novelty_rows(suite) -> list[dict]:
    rows = []
    for job in bench.plan(suite):
        case = job.case
        members = bench._member_predictions(suite.corpus, case.arch, case.task)
        x = load_task(case.task).test.x
        for method in suite.methods:
            init = bench.make_init(suite, method, case.arch, case.task, job.seed)
            if init.state_dict is None or not members:
                continue
            start = bench._predictions(model_for_weights(init.state_dict, case.arch, case.task), x)
            nearest = max(members, key=lambda m: kappa(start, members[m]))  # as the bench picks it
            rows.append({"split": case.split, "case": case.case_id, "seed": job.seed, "method": method,
                         "novelty": max(agreement(start, p) for p in members.values()),
                         "kappa": kappa(start, members[nearest]), "nearest": nearest})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--run", default=None, help="generator run folder (for generated methods)")
    parser.add_argument("--label-map", action="store_true", help="the suite's label map on (as `weightgen bench --label-map`)")
    parser.add_argument("--methods", default="", help="comma-separated init methods (default: the suite's)")
    parser.add_argument("--splits", default="", help="comma-separated splits (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = lambda text: [t for t in text.split(",") if t] or None  # noqa: E731
    suite = load_suite(args.suite).with_sources(args.corpus, args.run, None, args.label_map or None).narrowed(
        split(args.methods), split(args.splits))
    table = pd.DataFrame(novelty_rows(suite))
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = table.groupby(["split", "method"]).agg(novelty=("novelty", "median"), kappa=("kappa", "median"),
                                                    copies=("kappa", lambda s: int((s >= 0.9).sum())),
                                                    starts=("kappa", "size"))
    print("\n" + summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
