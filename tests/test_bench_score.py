"""Scoring a bench (weightgen.bench_score) by hand-checked numbers: target, compute saved, the grid's ceiling, final
accuracy against random, the split medians' intervals, the paired gap and kappa."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from weightgen.bench import flat_metrics
from weightgen.bench_score import agreement, generated_beats, grid_limits, kappa, median_interval, score, summarize
from weightgen.suite import load_suite


def job_result(case_index, method, seed, accs, flops_per_step=10, init_flops=0, final_test=0.5, status="ok"):
    """One job's result as `weightgen.bench.run_job` returns it: a row and its curve, evaluated at steps 0-30."""
    steps = [0, 10, 20, 30]
    row = {"suite": "t", "case": f"c{case_index}", "case_index": case_index, "split": "unseen-arch", "family": "mlp",
           "arch": "mlp", "task": "digits", "method": method, "seed": seed, "status": status, "init_flops": init_flops,
           "flops_per_step": flops_per_step, "final_test_acc": final_test, "test_acc_0": accs[0], "novelty": 0.1, "note": ""}
    curves = [{"case_index": case_index, "method": method, "seed": seed, "step": s, "val_acc": a, "val_loss": 0.0}
              for s, a in zip(steps, accs)] if status == "ok" else []
    return {"rows": [row], "curves": curves, "random_predictions": {}, "case_index": case_index}


def _suite(methods=("random", "moment", "generated"), cases=1):
    tasks = ["digits", "digits:noise=0.1"][:cases]
    return load_suite({"name": "t", "recipe": {"steps": 30, "eval_every": 10}, "seeds": [1, 2], "methods": list(methods),
                       "cases": [{"arch": "mlp:hidden=16", "task": t, "split": "unseen-arch"} for t in tasks]})


def test_score_follows_the_protocol_by_hand():
    results = [
        job_result(0, "random", 1, [0.1, 0.5, 0.8, 1.0]),  # reaches 0.99 × mean(1.0, 0.8) = 0.891 at step 30
        job_result(0, "random", 2, [0.1, 0.5, 0.7, 0.8]),  # never reaches it: charged the budget (30 steps)
        job_result(0, "moment", 1, [0.1, 0.9, 0.9, 0.9], init_flops=50),  # reaches at step 10
        job_result(0, "moment", 2, [0.1, 0.2, 0.3, 0.4]),  # never
        job_result(0, "generated", 1, [0.95, 0.9, 0.9, 0.9], init_flops=30),  # at step 0: only the init is paid
        job_result(0, "generated", 2, [0.0, 0.0, 0.0, 0.0], status="n/a"),
    ]
    table, _ = score(_suite(), results)
    row = table.set_index(["method", "seed"])
    assert row.loc[("random", 1), "target"] == pytest.approx(0.99 * 0.9)
    reference = 30 * 10  # both random seeds: 30 steps × 10 FLOPs (the second one censored at the budget)
    assert row.loc[("random", 1), "random_flops_to_target"] == reference
    assert row.loc[("random", 1), "compute_saved"] == pytest.approx(0.0)
    assert row.loc[("moment", 1), "steps_to_target"] == 10
    assert row.loc[("moment", 1), "compute_saved"] == pytest.approx(1 - (10 * 10 + 50) / reference)
    assert math.isnan(row.loc[("moment", 2), "compute_saved"]) and not row.loc[("moment", 2), "reached"]
    assert row.loc[("generated", 1), "steps_to_target"] == 0
    assert row.loc[("generated", 1), "compute_saved"] == pytest.approx(1 - 30 / reference)
    assert math.isnan(row.loc[("random", 2), "compute_saved"])

    summary = summarize(table)
    moment = summary.loc[("unseen-arch", "moment")]
    assert moment["compute_saved_median"] == pytest.approx((1 - 150 / 300 + 0.0) / 2)  # not reached counts as 0
    assert moment["reach_rate"] == 0.5
    assert summary.loc[("unseen-arch", "generated"), "not_applicable"] == 1
    beats = generated_beats(table).set_index("baseline")
    assert beats.loc["moment", "wins"] == 1 and beats.loc["random", "wins"] == 1
    # the paired gap: generated's one run (0.9) against moment's case median (0.5 and not reached = 0 → 0.25)
    assert beats.loc["moment", "median_gap"] == pytest.approx(1 - 30 / reference - (1 - 150 / 300) / 2)
    assert math.isnan(beats.loc["moment", "gap_ci_low"])  # one case: no interval


def test_the_grid_ceiling_names_cases_where_the_eval_interval_caps_the_saving():
    # random reaches the target at step 20 (seed 1) and 30 (seed 2): 25 steps on average, evaluated every 10,
    # so an init that needs any training is charged >= 10 steps and saves at most 1 - 10/25 = 0.6
    results = [job_result(0, "random", 1, [0.1, 0.5, 0.99, 1.0]), job_result(0, "random", 2, [0.1, 0.5, 0.8, 0.99]),
               job_result(0, "moment", 1, [0.1, 0.99, 1.0, 1.0]), job_result(0, "moment", 2, [0.1, 0.99, 1.0, 1.0])]
    table, _ = score(_suite(("random", "moment")), results)
    assert table["grid_ceiling"].to_numpy() == pytest.approx([0.6] * 4)
    moment = table[table["method"] == "moment"]
    assert (moment["compute_saved"] == moment["grid_ceiling"]).all()  # reached at the first evaluation: the ceiling
    limits = grid_limits(table)
    assert limits[["case", "random_steps_to_target"]].to_dict("records") == [{"case": "c0", "random_steps_to_target": 25}]
    assert limits["grid_ceiling"].iloc[0] == pytest.approx(0.6)
    assert grid_limits(table, goal=0.5).empty  # a goal the grid can show: nothing to warn of


def test_an_init_below_random_at_the_end_shows_as_a_negative_final_delta():
    results = [job_result(0, "random", s, [0.1, 0.5, 0.9, 1.0], final_test=0.9) for s in (1, 2)]
    results += [job_result(0, "moment", s, [0.1, 0.5, 0.9, 1.0], final_test=0.8) for s in (1, 2)]
    summary = summarize(score(_suite(("random", "moment")), results)[0])
    assert summary.loc[("unseen-arch", "moment"), "final_vs_random"] == pytest.approx(-0.1)


def test_a_split_median_comes_with_a_seeded_bootstrap_interval_over_cases():
    # two cases whose runs sit apart: the interval resamples whole cases, so it spans both cases' values
    saved, cases = pd.Series([0.1, 0.2, 0.8, 0.9]), pd.Series([0, 0, 1, 1])
    low, high = median_interval(saved, cases)
    assert (low, high) == median_interval(saved, cases)  # seeded: the same table gives the same interval
    assert low == pytest.approx(0.15) and high == pytest.approx(0.85)  # all-first / all-second case resamples
    spread = pd.Series([0.99, -0.11, 0.73, 0.8, 0.05, 0.31, 1.28, 1.26, 0.83, 0.57, 0.97, 0.33])  # order mattered here
    labels = pd.Series([i // 2 for i in range(12)])
    assert median_interval(spread, labels) == median_interval(spread, 5 - labels)  # however the cases are numbered
    assert median_interval(pd.Series([0.4] * 4), cases) == (0.4, 0.4)  # no spread, no width
    assert all(math.isnan(v) for v in median_interval(saved[:2], cases[:2]))  # one case: nothing to resample
    # more cases that agree narrow it around the median
    many = pd.Series([0.5 + 0.01 * (i % 5) for i in range(24)])
    narrow = median_interval(many, pd.Series([i // 2 for i in range(24)]))
    assert narrow[0] <= many.median() <= narrow[1] and narrow[1] - narrow[0] < 0.05
    # summarize carries it per split and method
    results = [job_result(c, m, s, curve) for c, curve in ((0, [0.1, 0.5, 0.9, 1.0]), (1, [0.1, 0.99, 1.0, 1.0]))
               for m in ("random", "moment") for s in (1, 2)]
    summary = summarize(score(_suite(("random", "moment"), cases=2), results)[0])
    row = summary.loc[("unseen-arch", "moment")]
    assert row["saved_ci_low"] <= row["compute_saved_median"] <= row["saved_ci_high"]
    metrics = flat_metrics(summary, {}, 1.0)  # what MLflow gets
    assert metrics["saved_ci_high/unseen-arch/moment"] == row["saved_ci_high"]
    # paired by case: generated starts at the target on case 1 and reaches it 10 steps before random on case 0
    results = [r for r in results if r["rows"][0]["method"] == "random"]
    results += [job_result(c, "generated", s, [0.1, 0.5, 0.99, 1.0] if c == 0 else [0.99, 1.0, 1.0, 1.0])
                for c in (0, 1) for s in (1, 2)]
    table = score(_suite(("random", "generated"), cases=2), results)[0]
    gap = generated_beats(table).set_index("baseline").loc["random"]
    saved = table[table["method"] == "generated"].groupby("case_index")["compute_saved"].median()
    assert gap["median_gap"] == pytest.approx(saved.median())  # random saves 0 on every case
    assert gap["gap_ci_low"] == pytest.approx(saved.min()) and gap["gap_ci_high"] == pytest.approx(saved.max())


def test_kappa_tells_a_copy_from_two_degenerate_predictors():
    varied = torch.arange(100) % 10
    mostly_three = torch.where(torch.arange(100) < 95, 3, varied)
    also_mostly_three = torch.where(torch.arange(100) >= 8, 3, varied)  # its few other calls fall elsewhere
    assert agreement(mostly_three, also_mostly_three) > 0.85
    assert abs(kappa(mostly_three, also_mostly_three)) < 0.1
    assert kappa(varied, varied) == pytest.approx(1.0)
    assert kappa(torch.full((50,), 4), torch.full((50,), 4)) == 0.0
