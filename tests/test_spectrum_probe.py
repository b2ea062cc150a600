"""benchmarks/spectrum_probe.py's matrix scores: known spectra give known figures."""

import importlib.util
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "spectrum_probe", Path(__file__).resolve().parents[1] / "benchmarks" / "spectrum_probe.py")
spectrum_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(spectrum_probe)


def test_a_flat_spectrum_scores_full_rank_and_a_rank_one_matrix_a_single_direction():
    flat, = spectrum_probe.matrix_scores({"w": 3 * torch.eye(8)})
    assert flat["erank"] == pytest.approx(1.0) and flat["stable_rank"] == pytest.approx(1.0)
    assert flat["row_spread"] == pytest.approx(0.0, abs=1e-12)
    assert flat["scale"] == pytest.approx(3 / 8**0.5 * 8**0.5)  # RMS 3/sqrt(8), fan-in 8
    u, v = torch.arange(1.0, 5.0), torch.ones(6)
    single, = spectrum_probe.matrix_scores({"w": torch.outer(u, v)})
    assert single["erank"] == pytest.approx(1 / 4, rel=1e-6) and single["stable_rank"] == pytest.approx(1 / 4, rel=1e-6)


def test_kernels_are_flattened_and_vectors_and_single_rows_are_left_out():
    rows = spectrum_probe.matrix_scores({"conv.weight": torch.randn(16, 4, 3), "conv.bias": torch.zeros(16),
                                         "cls": torch.randn(1, 32), "head.weight": torch.randn(10, 16)})
    assert [(r["tensor"], r["shape"]) for r in rows] == [("conv.weight", "16x12"), ("head.weight", "10x16")]
    assert [r["position"] for r in rows] == [0, 2]  # positions count the left-out row, so first/last stay true
