"""benchmarks/pooled_summary.py: benches of several suites pooled keep their cases apart and summarise as one."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

spec = importlib.util.spec_from_file_location(
    "pooled_summary", Path(__file__).resolve().parents[1] / "benchmarks" / "pooled_summary.py")
pooled = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pooled)


def _bench(folder: Path, saved: list[float | None], family: str) -> Path:
    """A bench folder with one case per ``saved`` value (None: not reached), random and generated, one seed each."""
    rows = []
    for case_index, value in enumerate(saved):
        row = dict(suite=folder.name, case=f"c{case_index}", case_index=case_index, split="unseen-arch", family=family,
                   arch="mlp:hidden=16", task="digits", seed=0, status="ok", init_flops=10, test_acc_0=0.1,
                   final_test_acc=0.9, novelty=float("nan"), novelty_kappa=float("nan"), random_kappa=float("nan"))
        rows.append({**row, "method": "random", "compute_saved": 0.0, "reached": True})
        rows.append({**row, "method": "generated", "compute_saved": value, "reached": value is not None,
                     "final_test_acc": 0.85})
    folder.mkdir()
    pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    return folder


def test_suites_pool_as_separate_cases_and_the_summary_is_the_bench_s_over_all_of_them(tmp_path):
    a = _bench(tmp_path / "a", [0.2, 0.4], "mlp")
    b = _bench(tmp_path / "b", [0.9, None, 0.8], "cnn1d")
    results = pooled.pooled_results([a, b])
    assert sorted(results["case_index"].unique()) == [0, 1, 2, 3, 4]  # b's cases 0-2 moved past a's 0-1
    summary, families = pooled.pooled_summary(results, ["unseen-arch"], ["generated"])
    row = summary.loc[("unseen-arch", "generated")]
    assert row["cases"] == 5 and row["runs"] == 5
    assert row["compute_saved_median"] == pytest.approx(0.4)  # median of 0.2, 0.4, 0.9, 0 (not reached), 0.8
    assert row["reach_rate"] == pytest.approx(0.8)
    assert row["worst_final_vs_random"] == pytest.approx(-0.05)
    assert list(summary.index.get_level_values("method")) == ["generated"]  # random is not asked for
    assert families.loc[("generated", "mlp"), "unseen-arch"] == pytest.approx(0.3)
    assert families.loc[("generated", "cnn1d"), "unseen-arch"] == pytest.approx(0.8)


def test_a_folder_without_results_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no results.parquet"):
        pooled.pooled_results([tmp_path / "empty"])
    with pytest.raises(ValueError, match="at least one"):
        pooled.pooled_results([])
