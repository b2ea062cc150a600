"""Nightly regression comparison: thresholds in both directions, missing metrics, the message, the baseline file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from weightgen.regression import compare, load_baseline, markdown_table

ROOT = Path(__file__).resolve().parents[1]

BASELINE = {
    "metrics": {
        "compute_saved": {"baseline": 0.5, "higher_is_better": True, "abs_tol": 0.1},
        "reach_rate": {"baseline": 0.8, "rel_tol": 0.25},
        "wall_time_s": {"baseline": 100.0, "higher_is_better": False, "rel_tol": 0.5},
    }
}


def test_within_limits_passes_and_limits_follow_direction():
    result = compare({"compute_saved": 0.41, "reach_rate": 0.61, "wall_time_s": 149.0, "other": -1}, load_baseline(BASELINE))
    assert result.ok and result.regressed == []
    table = result.table.set_index("metric")
    assert table.loc["compute_saved", "limit"] == pytest.approx(0.4)
    assert table.loc["reach_rate", "limit"] == pytest.approx(0.6)
    assert table.loc["wall_time_s", "limit"] == pytest.approx(150.0)
    assert list(table["status"]) == ["ok"] * 3 and "other" not in table.index  # untracked metrics are not judged
    assert "no regression" in result.message()


def test_each_fallen_metric_is_named_with_value_limit_and_baseline():
    result = compare({"compute_saved": 0.39, "reach_rate": 0.9, "wall_time_s": 151.0}, load_baseline(BASELINE))
    assert not result.ok and result.regressed == ["compute_saved", "wall_time_s"]
    message = result.message()
    assert message.startswith("regression in 2 metrics")
    assert "compute_saved 0.39 < limit 0.4 (baseline 0.5)" in message
    assert "wall_time_s 151 > limit 150 (baseline 100)" in message
    assert "reach_rate" not in message
    assert result.table.set_index("metric").loc["compute_saved", "change"] == pytest.approx(-0.11)


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_missing_or_non_finite_metric_is_a_regression(value):
    metrics = {"compute_saved": 0.5, "reach_rate": 0.8, "wall_time_s": 10.0}
    if value is None:
        del metrics["reach_rate"]
    else:
        metrics["reach_rate"] = value
    result = compare(metrics, load_baseline(BASELINE))
    assert result.regressed == ["reach_rate"]
    assert result.table.set_index("metric").loc["reach_rate", "status"] == "missing"
    assert "reach_rate missing (baseline 0.8)" in result.message()


def test_bad_baselines_are_refused(tmp_path):
    with pytest.raises(ValidationError):
        load_baseline({"metrics": {}})
    with pytest.raises(ValidationError):
        load_baseline({"metrics": {"x": {"baseline": 1.0, "abs_tol": -1}}})
    with pytest.raises(ValidationError):
        load_baseline({"metrics": {"x": {"baseline": 1.0, "tolerance": 1}}})  # a misspelt key is not ignored
    with pytest.raises(FileNotFoundError):
        load_baseline(tmp_path / "absent.yaml")


def test_markdown_table_renders_every_row():
    result = compare({"compute_saved": 0.1}, load_baseline(BASELINE))
    text = markdown_table(result.table)
    lines = text.splitlines()
    assert lines[0].startswith("| metric | baseline | value | limit") and len(lines) == 2 + 3
    assert "| compute_saved | 0.5 | 0.1 | 0.4 | -0.4 | higher | regressed |" in lines


def test_committed_nightly_baseline_loads_and_tracks_the_four_kinds_of_metric():
    baseline = load_baseline(ROOT / "configs" / "nightly-baseline.yaml")
    names = " ".join(baseline.metrics)
    for kind in ("compute_saved", "reach_rate", "acc_kept", "wall_time"):
        assert kind in names
    assert baseline.measured.get("command") and baseline.settings
