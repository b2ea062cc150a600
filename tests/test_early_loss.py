"""benchmarks/early_loss.py: how often a method's validation loss rises over the first fine-tune steps."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

spec = importlib.util.spec_from_file_location("early_loss", Path(__file__).resolve().parents[1] / "benchmarks" / "early_loss.py")
early = importlib.util.module_from_spec(spec)
spec.loader.exec_module(early)


def _bench(folder: Path, losses: dict[tuple[int, str, str], list[float]]) -> Path:
    """A bench folder: (case, family, method) → validation loss at steps 0, 5, 10, one seed; case 9 is a seen case."""
    results, curves = [], []
    for (case_index, family, method), values in losses.items():
        split = "seen" if case_index == 9 else "unseen-arch"
        results.append(dict(case_index=case_index, family=family, split=split, method=method, seed=100))
        curves += [dict(case_index=case_index, method=method, seed=100, step=step, val_acc=0.5, val_loss=value)
                   for step, value in zip([0, 5, 10], values)]
    folder.mkdir()
    pd.DataFrame(results).to_parquet(folder / "results.parquet")
    pd.DataFrame(curves).to_parquet(folder / "curves.parquet")
    return folder


def test_the_share_rising_and_the_ratio_are_per_family_and_method_over_the_chosen_splits(tmp_path):
    a = _bench(tmp_path / "a", {(0, "mlp", "random"): [2.0, 1.5, 1.0], (0, "mlp", "generated+head"): [1.0, 1.2, 0.9],
                                (9, "mlp", "generated+head"): [1.0, 3.0, 3.0]})
    b = _bench(tmp_path / "b", {(0, "mlp", "random"): [2.0, 1.8, 1.6], (0, "mlp", "generated+head"): [1.0, 0.8, 0.5]})
    table = early.early_loss([a, b], [5, 10], ["unseen-arch"])
    row = table.loc[("mlp", "generated+head")]
    assert row["runs"] == 2   # the seen case is left out
    assert row["share rising by step 5"] == pytest.approx(0.5)   # 1.0 → 1.2 rose, 1.0 → 0.8 did not
    assert row["share rising by step 10"] == pytest.approx(0.0)
    assert row["median loss ratio at 10"] == pytest.approx((0.9 + 0.5) / 2)
    assert table.loc[("mlp", "random"), "share rising by step 5"] == 0.0


def test_a_step_the_curves_never_reached_is_refused_by_name(tmp_path):
    a = _bench(tmp_path / "a", {(0, "mlp", "random"): [2.0, 1.5, 1.0]})
    with pytest.raises(SystemExit, match=r"not evaluated at step\(s\) \[20\]"):
        early.early_loss([a], [5, 20], ["unseen-arch"])
