"""Why do tuned generated inits fine-tune to less than random's final accuracy? Rescale them and see.

For each suite case and seed, the generated init is fine-tuned as it is and after transforms that
test one hypothesis each, beside random, retrieval and weight-selection, with the bench's own recipe
and scoring (target, steps_to_target, compute_saved; the init's counted FLOPs included):

``generated+logits``       rebalanced to the target's random-init std per layer, logits unchanged
                           (:func:`weightgen.rebalance.rebalance`; exact for ReLU chains)
``generated+predictions``  the same with the last layer rescaled too: predictions unchanged, logits scaled
``generated+no-bias``      every bias set to zero (does the bias scale alone explain the plateau?)

It also prints each generated tensor's std over the random init's, by layer position.

    .venv/bin/python benchmarks/rescale_probe.py --suite suites/default.yaml --run runs/tuned --workers 2
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import torch

from weightgen import bench, bench_score
from weightgen.rebalance import chain_layers, rebalance
from weightgen.suite import load_suite

BASES = ("random", "retrieval", "weight-selection", "generated")
TRANSFORMS = {
    "generated+logits": lambda s, arch, ref: rebalance(s, arch, ref, "logits"),
    "generated+predictions": lambda s, arch, ref: rebalance(s, arch, ref, "predictions"),
    "generated+no-bias": lambda s, arch, ref: {k: torch.zeros_like(v) if k.endswith("bias") else v.clone()
                                               for k, v in s.items()},
}


def run_job(suite, job: bench.Job) -> dict:
    """bench.run_job's result format, for this probe's methods."""
    from weightgen.checkpoint import model_for_weights
    from weightgen.data import load_task
    from weightgen.training import evaluate, train

    torch.set_num_threads(1)
    case, seed = job.case, job.seed
    family = case.arch.split(":")[0]
    data, recipe = load_task(case.task), suite.recipe_for(family)
    inits = {m: bench.make_init(suite, m, case.arch, case.task, seed) for m in BASES}
    reference = inits["random"].state_dict
    generated = inits["generated"]
    states = {m: (i.state_dict, i.flops) for m, i in inits.items()}
    states.update({name: (fn(generated.state_dict, case.arch, reference), generated.flops)
                   for name, fn in TRANSFORMS.items()})
    ratios = [{"case": case.case_id, "seed": seed, "layer": i, "of": len(chain_layers(reference)),
               "weight_std_ratio": float(generated.state_dict[w].std() / reference[w].std()),
               "bias_std": float(generated.state_dict[b].std()) if b else math.nan}
              for i, (w, b) in enumerate(chain_layers(reference))]
    rows, curves, final_predictions = [], [], {}
    for method, (state, flops) in states.items():
        model = model_for_weights(state, case.arch, case.task, where=method)
        test_acc_0 = evaluate(model, data.test)[1]
        result = train(model, data, recipe, seed=seed)
        if method == "random":
            final_predictions[seed] = bench._predictions(model, data.test.x)
        rows.append({"suite": suite.name, "case": case.case_id, "case_index": job.case_index, "split": case.split,
                     "family": family, "arch": case.arch, "task": case.task, "method": method, "seed": seed,
                     "status": "ok", "init_flops": flops, "flops_per_step": result.flops_per_step,
                     "val_acc_0": result.curve[0].val_acc, "test_acc_0": test_acc_0,
                     "final_val_acc": result.final.val_acc, "final_test_acc": result.test_acc})
        curves += [{"case_index": job.case_index, "method": method, "seed": seed, "step": p.step,
                    "val_acc": p.val_acc, "val_loss": p.val_loss} for p in result.curve]
    return {"rows": rows, "curves": curves, "random_predictions": final_predictions,
            "case_index": job.case_index, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="suites/default.yaml")
    parser.add_argument("--run", required=True, help="generator run folder (a tuned DiT)")
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--splits", default="", help="comma-separated splits to keep (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    suite = load_suite(args.suite).with_sources(corpus=args.corpus, generator=args.run)
    suite = suite.model_copy(update={"methods": ["random", "generated"]})
    bench.check_suite(suite)
    keep = set(filter(None, args.splits.split(",")))
    jobs = [j for j in bench.plan(suite) if not keep or j.case.split in keep]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_job, [suite] * len(jobs), jobs))
    table, _ = bench_score.score(suite, results)
    summary = bench_score.summarize(table)
    pd.set_option("display.width", 200)
    cols = ["cases", "runs", "compute_saved_median", "reach_rate", "final_vs_random", "test_acc_at_init"]
    print(summary[cols].to_string(float_format="%.3f"))
    print("\nper case (median over seeds):")
    per_case = table.groupby(["split", "case", "method"], sort=False)[["test_acc_0", "steps_to_target",
                                                                        "compute_saved", "final_test_acc"]].median()
    print(per_case.to_string(float_format="%.3f"))
    ratios = pd.DataFrame([r for res in results for r in res["ratios"]])
    ratios["position"] = ["first" if l == 0 else "last" if l == n - 1 else "middle"
                          for l, n in zip(ratios["layer"], ratios["of"])]
    print("\ngenerated weight std / random init's, and generated bias std (median over cases, seeds):")
    print(ratios.groupby("position")[["weight_std_ratio", "bias_std"]].median().to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
