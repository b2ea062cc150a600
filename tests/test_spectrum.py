"""The init-spectrum sampler option (weightgen.spectrum): what it keeps, what it changes, what it costs, the run copy,
and the tune through it."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from typer.testing import CliRunner

from weightgen.cli import app
from weightgen.data import input_shape
from weightgen.dit_distill import DistillError, teacher_sampler
from weightgen.dit_train import load_dit
from weightgen.dit_tune import TuneConfig, tune
from weightgen.generate import Generator
from weightgen.models import build_model
from weightgen.spectrum import init_singular_values, init_spectrum_run, reshaped, svd_flops, with_init_spectrum


def _low_rank(rows: int, cols: int, rank: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=g) @ torch.randn(rank, cols, generator=g)


def test_a_reshaped_matrix_keeps_its_directions_and_norm_and_takes_the_reference_s_spread():
    sample, reference = _low_rank(12, 8, 2), torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    out, flops = reshaped(sample, reference)
    assert out.shape == sample.shape and flops > svd_flops(12, 8, True)
    assert float(out.norm()) == pytest.approx(float(sample.norm()), rel=1e-5)
    values = torch.linalg.svdvals(out)
    expected = torch.linalg.svdvals(reference)
    torch.testing.assert_close(values / values.norm(), expected / expected.norm(), rtol=1e-4, atol=1e-5)
    # the sample's top directions are the output's top directions (up to sign)
    u_sample = torch.linalg.svd(sample)[0][:, :2]
    u_out = torch.linalg.svd(out)[0][:, :2]
    torch.testing.assert_close((u_sample.T @ u_out).abs().diagonal(), torch.ones(2), rtol=1e-4, atol=1e-4)
    # a sample whose energy sits in two directions now spreads it over all eight
    assert int((torch.linalg.svdvals(sample) > 1e-4 * float(sample.norm())).sum()) == 2
    assert int((values > 1e-4 * float(values.norm())).sum()) == 8


def test_vectors_and_kernels_and_shape_mismatches():
    bias = torch.randn(5)
    assert reshaped(bias, torch.randn(5)) == (bias, 0)  # a vector stays as sampled, at no cost
    row = torch.randn(1, 8, 24)
    assert reshaped(row, torch.randn(1, 8, 24))[0] is row  # one row: nothing to spread
    with pytest.raises(ValueError, match="reference shape"):
        reshaped(torch.randn(4, 3), torch.randn(3, 4))
    model = build_model("cnn1d:channels=4x6", input_shape("mnist1d"), seed=0)
    reference = build_model("cnn1d:channels=4x6", input_shape("mnist1d"), seed=1).state_dict()
    state = model.state_dict()
    out, flops = with_init_spectrum(state, reference)
    assert set(out) == set(state) and flops > 0
    # The reference's singular values taken once (a tune's every step, a seed's k samples): the same matrices, and
    # their FLOPs charged once rather than with every reshape.
    values, taken = init_singular_values(reference)
    assert set(values) == {k for k, v in reference.items() if v.dim() >= 2 and min(v.shape[0], v[0].numel()) >= 2}
    again, cheaper = with_init_spectrum(state, reference, values)
    assert all(torch.equal(again[k], out[k]) for k in out) and taken > 0 and cheaper + taken == flops
    for name, tensor in state.items():
        assert out[name].shape == tensor.shape
        if tensor.dim() < 2:
            assert out[name] is tensor
    kernel = next(k for k, v in state.items() if v.dim() == 3)  # a conv kernel, flattened to [out, in × k] and back
    assert not torch.equal(out[kernel], state[kernel])


def test_the_run_copy_samples_with_the_reshape_and_leaves_the_run_as_it_was(setup, tmp_path):
    _, corpus, run = setup
    before = (run / "dit" / "config.json").read_text()
    copy = init_spectrum_run(run, tmp_path / "spec")
    assert (run / "dit" / "config.json").read_text() == before
    assert json.loads((copy / "dit" / "config.json").read_text())["sampler"]["init_spectrum"] is True
    with pytest.raises(ValueError, match="already exists"):
        init_spectrum_run(run, copy)
    with pytest.raises(ValueError, match="no dit/config.json"):
        init_spectrum_run(tmp_path / "nowhere", tmp_path / "other")
    plain, spectral = Generator.from_run(run, steps=2), Generator.from_run(copy, steps=2)
    assert spectral.sampler["init_spectrum"] and not plain.sampler["init_spectrum"]
    a, b = plain.sample("mlp:hidden=16", "digits", seed=3), spectral.sample("mlp:hidden=16", "digits", seed=3)
    assert b.flops > a.flops  # the SVDs are charged
    reference = build_model("mlp:hidden=16", input_shape("digits"), seed=3).state_dict()
    expected, _ = with_init_spectrum(a.state_dicts[0], reference)
    assert all(torch.equal(expected[k], b.state_dicts[0][k]) for k in expected)
    # A plain tune's loss never sees the reshape, so a tuned copy drops it; a distillation refuses such a teacher.
    tuned = tmp_path / "tuned"
    tune(copy, corpus, tuned, TuneConfig(steps=1, pairs_per_step=1, batch_size=8, eval_every=1), log=lambda line: None)
    assert json.loads((tuned / "dit" / "config.json").read_text())["sampler"]["init_spectrum"] is False
    retuned = init_spectrum_run(tuned, tmp_path / "tuned-spec")
    with pytest.raises(DistillError, match="init-spectrum"):
        teacher_sampler(retuned)
    result = CliRunner().invoke(app, ["dit", "init-spectrum", "--run", str(run), "--out", str(copy)])
    assert result.exit_code != 0 and "already exists" in result.output


def test_the_reshape_is_differentiable_where_the_singular_values_are_distinct():
    sample = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    reference = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda m: reshaped(m, reference)[0], (sample,))


def test_a_tune_through_the_reshape_scores_the_reshaped_sample_and_keeps_the_option(setup, tmp_path):
    _, corpus, run = setup
    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2, inner_steps=2)
    plain = tune(run, corpus, tmp_path / "plain", cfg, log=lambda line: None)
    through = tune(run, corpus, tmp_path / "through", TuneConfig(**{**asdict(cfg), "init_spectrum": True}),
                   log=lambda line: None)
    assert through["init_spectrum"] and not plain["init_spectrum"] and through["skipped_steps"] == []
    assert through["own_flops"] > plain["own_flops"]  # the SVDs are charged
    # Same seed, pairs and batches: the gradient through the reshape moves the DiT elsewhere than the plain tune's.
    tuned, without = load_dit(tmp_path / "through" / "dit"), load_dit(tmp_path / "plain" / "dit")
    assert any(not torch.allclose(a, b) for a, b in zip(tuned.state_dict().values(), without.state_dict().values()))
    assert all(torch.isfinite(v).all() for v in tuned.state_dict().values())
    # The tuned run samples the way it was scored: with the reshape.
    assert Generator.from_run(tmp_path / "through").sampler["init_spectrum"] is True
    assert Generator.from_run(tmp_path / "plain").sampler["init_spectrum"] is False


def test_a_step_whose_gradient_is_not_finite_is_skipped_and_never_reaches_the_dit(setup, tmp_path, monkeypatch):
    import weightgen.dit_tune

    def poisoned(state, reference, values=None):  # a stand-in for an SVD whose gradient is not finite: NaN reaches the gradient
        return {k: v * torch.tensor(float("nan")) if v.dim() >= 2 else v for k, v in state.items()}, 0

    monkeypatch.setattr(weightgen.dit_tune, "with_init_spectrum", poisoned)
    _, corpus, run = setup
    lines = []
    summary = tune(run, corpus, tmp_path / "poisoned", TuneConfig(steps=2, pairs_per_step=1, batch_size=8, eval_every=2,
                                                                  init_spectrum=True), log=lines.append)
    assert summary["skipped_steps"] == [1, 2] and sum("non-finite gradient" in line for line in lines) == 2
    tuned, base = load_dit(tmp_path / "poisoned" / "dit"), load_dit(run / "dit")
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))
