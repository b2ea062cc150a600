"""Label-permuted cases: each init as drawn for the permuted task, and drawn for its base task then relabelled.

A task with ``label_perm`` renames the classes of its base task, and ``weightgen.relabel`` maps a base-task
network onto it exactly (the output layer's rows move). For each label-permuted case of a suite, this scores
on the permuted task's validation split: each generator run's seed-``--seed`` sample, as drawn and with the
map; and the corpus baselines' init (``retrieval``, ``weight-selection``), as fitted and with the map. No
training; about a minute on one core:

    .venv/bin/python benchmarks/relabel_probe.py --corpus corpus/wide --run runs/xsp-k100-s0 --run runs/xsp-k100-fw1-s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from weightgen.baselines import CorpusIndex, make_init
from weightgen.data import input_shape, load_task
from weightgen.generate import Generator
from weightgen.models import build_model
from weightgen.relabel import base_task, label_permutation, output_layer, relabel_classes
from weightgen.suite import load_suite
from weightgen.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("suites/default.yaml"))
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--run", type=Path, action="append", default=[], help="a generator run folder (repeatable)")
    parser.add_argument("--seed", type=int, default=100, help="the sampling and init seed (the suite's first fine-tune seed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    index = CorpusIndex(args.corpus)
    generators = {run.name: (Generator.from_run(run), Generator.from_run(run, relabel=True)) for run in args.run}
    rows = []
    for case in load_suite(args.suite).cases:
        if label_permutation(case.task) is None:
            continue
        shape, val = input_shape(case.task), load_task(case.task).val
        model = build_model(case.arch, shape, seed=args.seed)

        def score(state) -> float:
            model.load_state_dict(state)
            with torch.no_grad():
                return round(evaluate(model, val)[1], 3)

        row = {"case": f"{case.arch} @ {case.task}", "split": case.split}
        for name, (as_drawn, relabelled) in generators.items():
            row[f"{name} as drawn"] = score(as_drawn.sample(case.arch, case.task, seed=args.seed).state_dicts[0])
            row[f"{name} relabelled"] = score(relabelled.sample(case.arch, case.task, seed=args.seed).state_dicts[0])
        for method in ("retrieval", "weight-selection"):
            row[f"{method} as fitted"] = score(make_init(method, case.arch, case.task, args.seed, index).state_dict)
            base = make_init(method, case.arch, base_task(case.task), args.seed, index).state_dict
            row[f"{method} relabelled"] = score(relabel_classes(base, output_layer(case.arch, shape), label_permutation(case.task)))
        rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
