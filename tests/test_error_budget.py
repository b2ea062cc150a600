"""benchmarks/error_budget.py: the starts it builds sit at the distance it reports, and suite pairs stay out."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from weightgen.data import input_shape
from weightgen.models import build_model

spec = importlib.util.spec_from_file_location(
    "error_budget", Path(__file__).resolve().parents[1] / "benchmarks" / "error_budget.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)
ARCH = "transformer:dim=16,depth=1,heads=2,patch=8"


def _state(seed: int) -> dict[str, torch.Tensor]:
    return build_model(ARCH, input_shape("digits"), seed=seed).state_dict()


def _names(arch: str, task: str) -> set[str]:
    return {name for name, _ in build_model(arch, input_shape(task), seed=0).named_parameters()}


def test_noise_of_r_times_each_tensor_s_rms_is_relative_error_r_and_repeatable():
    member, names = _state(0), _names(ARCH, "digits")
    for r in (0.1, 0.5, 1.0):
        noised = probe.with_noise(member, r, seed=3, names=names)
        # every tensor gets error r x its own RMS, so the whole state does too (up to sampling noise; 4k numbers)
        assert probe.relative_error(noised, member, names) == pytest.approx(r, rel=0.1)
        again = probe.with_noise(member, r, seed=3, names=names)
        assert all(torch.equal(noised[k], again[k]) for k in member)
    assert probe.relative_error(member, member, names) == 0


def test_batchnorm_running_statistics_are_neither_noised_nor_counted():
    arch = "cnn1d:channels=8x8,norm=batch"
    member = build_model(arch, input_shape("mnist1d"), seed=0).state_dict()
    names = _names(arch, "mnist1d")
    noised = probe.with_noise(member, 1.0, seed=0, names=names)
    buffers = [k for k in member if k not in names]
    assert any(k.endswith("running_var") for k in buffers)
    assert all(torch.equal(noised[k], member[k]) for k in buffers)
    # every parameter moves but an all-zero one (a fresh norm's shift), whose RMS scales its noise to nothing
    assert all(not torch.equal(noised[k], member[k]) for k in names if member[k].any())


def test_toward_moves_the_member_a_share_of_the_way_to_the_sample():
    member, sample, names = _state(0), _state(1), _names(ARCH, "digits")
    full = probe.relative_error(sample, member, names)
    for a in (0.0, 0.25, 1.0):
        moved = probe.toward(member, sample, a)
        assert probe.relative_error(moved, member, names) == pytest.approx(a * full, rel=1e-5)
    torch.testing.assert_close(probe.toward(member, sample, 1.0)["head.weight"], sample["head.weight"])


def test_the_suites_pairs_are_named_in_the_corpus_s_spelling():
    pairs = probe.suite_pairs(["suites/default.yaml"])
    # the default suite's unseen transformer, in the canonical spelling (defaults left out) the corpus's members use
    assert any(arch.startswith("transformer:") and "dim=24" in arch for arch, _ in pairs)
    assert probe.suite_pairs(["no/such/suite.yaml"]) == set()


def test_geometry_reads_the_norm_ratio_and_the_cosine_that_make_the_distance():
    member, names = _state(0), _names(ARCH, "digits")
    doubled = {k: 2 * v for k, v in member.items()}
    assert probe.geometry(doubled, member, names) == pytest.approx({"norm_ratio": 2.0, "cosine": 1.0})
    other = _state(1)
    g = probe.geometry(other, member, names)
    # ‖a − b‖² = ‖a‖² + ‖b‖² − 2‖a‖‖b‖cos, in units of ‖b‖²
    expected = (g["norm_ratio"] ** 2 + 1 - 2 * g["norm_ratio"] * g["cosine"]) ** 0.5
    assert probe.relative_error(other, member, names) == pytest.approx(expected, rel=1e-4)


def test_held_out_corpus_starts_come_from_the_rest_of_the_corpus_and_leave_the_index_whole(setup):
    from weightgen.baselines import CorpusIndex, make_init

    _, corpus, _ = setup  # mlp:hidden=16 and mlp:hidden=24x24 on digits and digits:rot90=1, two seeds each
    index = CorpusIndex(corpus)
    finals = index.finals
    starts = probe.held_out_starts(index, "mlp:hidden=16", "digits", seed=0)
    assert index.finals is finals
    assert set(starts) == {f"{m}, {h} held out" for m in ("retrieval", "weight-selection") for h in ("arch", "task")}
    # with its own architecture held out, retrieval for mlp:hidden=16 can only cut down a 24x24 member
    index.finals = finals[finals["arch"] == "mlp:hidden=24x24"].reset_index(drop=True)
    only_wide = make_init("retrieval", "mlp:hidden=16", "digits", 0, index)
    index.finals = finals
    assert "24x24" in only_wide.source
    assert all(torch.equal(starts["retrieval, arch held out"][k], v.float()) for k, v in only_wide.state_dict.items())
    # with its own task held out, the start differs from the seen pair's retrieval (the pair's own member)
    seen = make_init("retrieval", "mlp:hidden=16", "digits", 0, index).state_dict
    assert not all(torch.equal(starts["retrieval, task held out"][k], v.float()) for k, v in seen.items())


def test_a_soup_is_the_average_of_every_member_of_the_nearest_pairs_fitted_to_the_target(setup):
    from weightgen.baselines import CorpusIndex, _Case
    from weightgen.specs import parse_arch, parse_task
    from weightgen.weight_selection import fit_state_dict

    _, corpus, _ = setup  # mlp:hidden=16 and mlp:hidden=24x24 on digits and digits:rot90=1, two seeds each
    index = CorpusIndex(corpus)
    arch, task = "mlp:hidden=16", "digits"
    model = build_model(arch, input_shape(task), seed=5)
    case = _Case(parse_arch(arch), parse_task(task), 5, model, index, 0.0)
    own = index.finals[(index.finals["arch"] == arch) & (index.finals["task"] == task)]["member"].tolist()
    assert len(own) == 2  # the pair is in the corpus, so its own two seeds are the nearest pair
    mean = {k: (index.state_dict(own[0])[k].double() + index.state_dict(own[1])[k].double()).div(2).float()
            for k in index.state_dict(own[0])}
    one = probe.soup(case, 1)
    assert one.keys() == model.state_dict().keys()
    assert all(torch.allclose(one[k], mean[k]) for k in one)
    # retrieval ranks the task before the architecture, so the second pair is the other width on the same task
    other = index.finals[(index.finals["arch"] != arch) & (index.finals["task"] == task)]["member"].tolist()
    assert len(other) == 2
    fitted = [fit_state_dict(index.state_dict(m), model.state_dict())[0] for m in own + other]
    two = probe.soup(case, 2)
    assert all(torch.allclose(two[k], sum(f[k] for f in fitted) / 4) for k in two)
    first = next(iter(two))
    assert not torch.equal(two[first], one[first])
    assert torch.equal(probe.soup(case, 2)[first], two[first])  # no draw: the same every time


def test_geometry_only_places_every_start_without_fine_tuning(setup, tmp_path, monkeypatch):
    _, corpus, run = setup  # a tiny corpus (two seeds per pair) and a tiny DiT
    monkeypatch.setattr(probe, "finetune_scores", lambda *a, **k: pytest.fail("--geometry-only fine-tuned a start"))
    monkeypatch.setattr(sys, "argv", ["error_budget.py", "--corpus", str(corpus), "--run", str(run), "--geometry-only",
                                      "--noise", "0.5", "--toward", "", "--seeds", "0", "--per-family", "1",
                                      "--out", str(tmp_path)])
    probe.main()
    table = pd.read_csv(tmp_path / "geometry.csv")
    assert set(table["start"]) == {"random", "member", "twin", "noise=0.5", "sample"}
    by_start = table.set_index("start")
    assert by_start.loc["member", "distance"] == 0 and by_start.loc["member", "cosine"] == pytest.approx(1)
    assert by_start.loc["noise=0.5", "distance"] == pytest.approx(0.5, rel=0.05)
    assert 0 < by_start.loc["twin", "distance"] and 0 < by_start.loc["sample", "distance"]
    assert not (tmp_path / "error_budget.csv").exists()  # nothing was priced, so no budget table
