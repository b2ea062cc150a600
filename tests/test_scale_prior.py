"""The scale prior: each sampled matrix at its family's trained scale for its layer role, stored beside the DiT."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from weightgen.baselines import CorpusIndex
from weightgen.data import input_shape
from weightgen.generate import Generator, GeneratorError
from weightgen.models import build_model
from weightgen.scale_prior import PRIOR_FILE, calibrate_run, corpus_scale_prior, load_prior, match_scales


def normalised_std(value: torch.Tensor) -> float:
    return float(value.double().std(correction=0)) * math.sqrt(value[0].numel())


def test_match_scales_sets_each_matrix_to_its_roles_scale_and_keeps_directions_and_vectors():
    arch = "mlp:hidden=20x20"
    state = build_model(arch, input_shape("mnist1d"), seed=0).state_dict()
    prior = {"mlp": {"linear_weight@first": 2.0, "linear_weight@middle": 0.7}}  # no entry for the last layer
    matched = match_scales(state, arch, prior)
    assert normalised_std(matched["net.1.weight"]) == pytest.approx(2.0, rel=1e-6)
    assert normalised_std(matched["net.3.weight"]) == pytest.approx(0.7, rel=1e-6)
    for key in ("net.1.weight", "net.3.weight"):  # a positive multiple of what was sampled
        ratio = matched[key] / state[key]
        assert float(ratio.min()) > 0 and float(ratio.max() - ratio.min()) < 1e-5 * float(ratio.max()), key
    assert torch.equal(matched["net.5.weight"], state["net.5.weight"]), "a role the prior lacks keeps its values"
    for key in ("net.1.bias", "net.3.bias", "net.5.bias"):
        assert torch.equal(matched[key], state[key]), key
    other = build_model("cnn1d:channels=4x4", input_shape("mnist1d"), seed=0).state_dict()
    assert all(torch.equal(a, b) for a, b in zip(match_scales(other, "cnn1d:channels=4x4", prior).values(), other.values()))


def test_the_corpus_prior_is_the_moment_baselines_role_std_for_matrices_only(setup):
    _, corpus, _ = setup
    prior = corpus_scale_prior(corpus)
    moments = CorpusIndex(corpus).moments("mlp")
    assert set(prior) == {"mlp"}
    # the corpus's MLPs are 16 and 24x24 wide: first, middle and last weight matrices, and no vector in the prior
    assert set(prior["mlp"]) == {"linear_weight@first", "linear_weight@middle", "linear_weight@last"}
    for role, std in prior["mlp"].items():
        kind, position = role.split("@")
        assert std == pytest.approx(moments[(kind, position)][1]) and std > 0


def test_a_calibrated_copy_samples_at_the_priors_scales_and_leaves_the_run_alone(setup, tmp_path):
    _, corpus, run = setup
    config_before = (run / "dit" / "config.json").read_bytes()
    out = calibrate_run(run, corpus, tmp_path / "matched")
    assert (run / "dit" / "config.json").read_bytes() == config_before and not (run / "dit" / PRIOR_FILE).exists()
    plain, matched = Generator.from_run(run, steps=2), Generator.from_run(out, steps=2)
    assert matched.sampler["match_scales"] and not plain.sampler["match_scales"]
    prior = load_prior(out / "dit")
    arch, task = "mlp:hidden=20x20", "digits"  # a width the corpus never had
    a, b = plain.sample(arch, task, seed=3), matched.sample(arch, task, seed=3)
    assert b.flops == a.flops, "an elementwise rescale adds no counted FLOPs"
    for (key, before), after in zip(a.state_dicts[0].items(), b.state_dicts[0].values()):
        if before.ndim == 2:
            role = {"net.1.weight": "first", "net.3.weight": "middle", "net.5.weight": "last"}[key]
            assert normalised_std(after) == pytest.approx(prior["mlp"][f"linear_weight@{role}"], rel=1e-5), key
            assert torch.nn.functional.cosine_similarity(after.flatten(), before.flatten(), dim=0) > 0.99999
        else:
            assert torch.equal(after, before), key
    again = matched.sample(arch, task, seed=3).state_dicts[0]
    assert all(torch.equal(x, y) for x, y in zip(again.values(), b.state_dicts[0].values()))


def test_bad_calibrations_are_refused_and_touch_nothing(setup, tmp_path):
    _, corpus, run = setup
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        calibrate_run(run, corpus, existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError, match="no dit/config.json"):
        calibrate_run(tmp_path / "nothing", corpus, tmp_path / "x")
    with pytest.raises(ValueError, match="corpus|manifest"):
        calibrate_run(run, tmp_path / "no-corpus", tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "y.partial").exists()

    out = calibrate_run(run, corpus, tmp_path / "matched")
    (out / "dit" / PRIOR_FILE).unlink()  # the sampler asks for a prior that is gone
    with pytest.raises(GeneratorError, match=PRIOR_FILE):
        Generator.from_run(out)
    (out / "dit" / PRIOR_FILE).write_text(json.dumps({"mlp": ["not", "a", "mapping"]}))
    with pytest.raises(GeneratorError, match="not a scale prior"):
        Generator.from_run(out)


def test_a_calibration_for_named_families_leaves_the_other_families_as_drawn(setup, tmp_path, monkeypatch):
    import weightgen.scale_prior as scale_prior

    _, corpus, run = setup
    real = corpus_scale_prior(corpus)
    # a second family in the prior, so that naming one of the two is a real choice
    monkeypatch.setattr(scale_prior, "corpus_scale_prior", lambda root: {**real, "cnn1d": {"conv1d_weight@first": 1.0}})
    only_cnn1d = calibrate_run(run, corpus, tmp_path / "cnn1d", families=["cnn1d"])
    assert load_prior(only_cnn1d / "dit") == {"cnn1d": {"conv1d_weight@first": 1.0}}
    arch, task = "mlp:hidden=20x20", "digits"
    plain = Generator.from_run(run, steps=2).sample(arch, task, seed=3).state_dicts[0]
    as_drawn = Generator.from_run(only_cnn1d, steps=2).sample(arch, task, seed=3).state_dicts[0]
    assert all(torch.equal(a, b) for a, b in zip(plain.values(), as_drawn.values()))
    assert load_prior(calibrate_run(run, corpus, tmp_path / "mlp", families=["mlp"]) / "dit") == real

    with pytest.raises(ValueError, match="no prior for family transformer; it has cnn1d, mlp"):
        calibrate_run(run, corpus, tmp_path / "bad", families=["mlp", "transformer"])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
    with pytest.raises(ValueError, match="name at least one family to match"):
        calibrate_run(run, corpus, tmp_path / "none", families=[])
    assert not (tmp_path / "none").exists()


def test_the_cli_writes_a_calibrated_copy_and_names_a_bad_run(setup, tmp_path):
    from weightgen.cli import app

    _, corpus, run = setup
    runner = CliRunner()
    ok = runner.invoke(app, ["dit", "match-scales", "--run", str(run), "--corpus", str(corpus), "--out", str(tmp_path / "m")])
    assert ok.exit_code == 0, ok.output
    assert "mlp: 3 roles" in ok.output and (tmp_path / "m" / "dit" / PRIOR_FILE).is_file()
    named = runner.invoke(app, ["dit", "match-scales", "--run", str(run), "--corpus", str(corpus), "--out",
                                str(tmp_path / "f"), "--families", "mlp,cnn2d"])
    assert named.exit_code != 0 and "no prior for family cnn2d" in named.output and not (tmp_path / "f").exists()
    bad = runner.invoke(app, ["dit", "match-scales", "--run", str(tmp_path / "none"), "--corpus", str(corpus),
                              "--out", str(tmp_path / "n")])
    assert bad.exit_code != 0 and "no dit/config.json" in bad.output


def test_a_tune_with_matched_scales_trains_through_the_match_and_samples_with_it(setup, tmp_path):
    from weightgen.dit_distill import DistillConfig, DistillError, distill
    from weightgen.dit_tune import TuneConfig, tune

    _, corpus, run = setup
    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2, inner_steps=2, match_scales=True)
    tune(run, corpus, tmp_path / "tuned", cfg, log=lambda line: None)
    tuned = Generator.from_run(tmp_path / "tuned")
    assert tuned.sampler["match_scales"] and load_prior(tmp_path / "tuned" / "dit") == corpus_scale_prior(corpus)
    state = tuned.sample("mlp:hidden=20x20", "digits").state_dicts[0]
    prior = tuned.scale_prior["mlp"]
    for key, role in (("net.1.weight", "first"), ("net.3.weight", "middle"), ("net.5.weight", "last")):
        assert normalised_std(state[key]) == pytest.approx(prior[f"linear_weight@{role}"], rel=1e-5), key
    plain = tune(run, corpus, tmp_path / "plain", TuneConfig(**{**cfg.__dict__, "match_scales": False}), log=lambda line: None)
    matched = json.loads((tmp_path / "tuned" / "dit" / "functional_finetune.json").read_text())
    assert matched["log"][0]["val_acc_median"] != plain["log"][0]["val_acc_median"], "the tune scores the matched samples"

    # a calibrated copy tuned without the option samples as tuned, and a matched run is never a distillation teacher
    calibrated = calibrate_run(tmp_path / "plain", corpus, tmp_path / "calibrated")
    tune(calibrated, corpus, tmp_path / "retuned", TuneConfig(steps=1, pairs_per_step=1, batch_size=8, eval_every=1),
         log=lambda line: None)
    assert not Generator.from_run(tmp_path / "retuned").sampler["match_scales"]
    with pytest.raises(DistillError, match="match-scales"):
        distill(tmp_path / "tuned", corpus, tmp_path / "student", DistillConfig(preset="tiny", steps=1), log=lambda line: None)
    assert not (tmp_path / "student").exists()
