"""benchmarks/price_ceiling.py: a preset's sample is priced in the case's own budget, as the bench charges it."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

spec = importlib.util.spec_from_file_location(
    "price_ceiling", Path(__file__).resolve().parents[1] / "benchmarks" / "price_ceiling.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def _results(arch: str, task: str, random_flops: float, init_flops: int) -> pd.DataFrame:
    row = dict(suite="t", case=f"{arch}@{task}", case_index=0, split="unseen-arch", family="mlp", arch=arch,
               task=task, seed=0, status="ok", random_flops_to_target=random_flops, compute_saved=0.5, reached=True,
               final_test_acc=0.9, test_acc_0=0.1, novelty=float("nan"), novelty_kappa=float("nan"),
               random_kappa=float("nan"))
    return pd.DataFrame([{**row, "method": "random", "init_flops": 0},
                         {**row, "method": "generated", "init_flops": init_flops}])


def test_each_preset_is_priced_against_random_s_flops_to_target_and_the_own_preset_matches_the_bench(setup):
    from weightgen.generate import Generator

    _, _, run = setup  # a tiny DiT
    generator = Generator.from_run(run, steps=2)
    arch, task = "mlp:hidden=16", "digits"
    own = generator.sample(arch, task, seed=7).flops  # what the bench records as init_flops
    assert own > 0
    results = _results(arch, task, random_flops=own * 10.0, init_flops=own)
    table = probe.price_table(results, generator, ["tiny", "XS"])
    tiny, xs = (table[table["preset"] == p].iloc[0] for p in ("tiny", "XS"))
    assert tiny["sample_flops"] == own and tiny["price"] == pytest.approx(0.1) and tiny["ceiling"] == pytest.approx(0.9)
    assert xs["sample_flops"] > 2 * own and xs["parameters"] > tiny["parameters"]  # twice the width: more per token
    assert probe.check_against_bench(results, table, "tiny") == 0
    assert probe.check_against_bench(_results(arch, task, 1.0, own * 2), table, "tiny") == pytest.approx(0.5)
    summary = probe.summary(table, results)
    assert summary.loc[("unseen-arch", "tiny"), "room_for_90"] == 1.0  # price 0.1 leaves exactly 90 %
    assert summary.loc[("unseen-arch", "XS"), "room_for_90"] == 0.0
    assert summary.loc[("unseen-arch", "tiny"), "generated_saved"] == 0.5
    assert generator.dit.cfg.dim == 32  # the copies never touch the run's own DiT
