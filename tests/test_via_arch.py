"""weightgen/via_arch.py: an unseen architecture is sampled as the nearest seen one and cut to shape, exactly."""

import json

import pytest
import torch

from weightgen.via_arch import arch_distance, nearest_arch

SEEN = ["mlp:hidden=16", "mlp:hidden=24x24", "cnn1d:channels=8x8"]


def test_a_seen_architecture_is_its_own_source_and_an_unseen_one_takes_the_nearest_of_its_family():
    assert nearest_arch("mlp:hidden=16", "digits", SEEN) == "mlp:hidden=16"
    # one hidden layer of 20: 16 is 0.22 in log parameters away and as deep; 24x24 is 0.47 away and a layer deeper
    assert arch_distance("mlp:hidden=16", "mlp:hidden=20", "digits") < arch_distance("mlp:hidden=24x24", "mlp:hidden=20", "digits")
    assert nearest_arch("mlp:hidden=20", "digits", SEEN) == "mlp:hidden=16"
    assert nearest_arch("mlp:hidden=24x24x24", "digits", SEEN) == "mlp:hidden=24x24"
    assert nearest_arch("cnn2d:channels=8x8", "digits", SEEN) == "cnn2d:channels=8x8"  # no cnn2d seen: itself


def test_the_generator_cuts_the_nearest_seen_architecture_s_sample_to_the_target_and_charges_its_flops(setup, tmp_path):
    from weightgen.data import input_shape
    from weightgen.generate import Generator
    from weightgen.models import build_model
    from weightgen.via_arch import corpus_archs, via_archs_run
    from weightgen.weight_selection import fit_state_dict

    _, corpus, run = setup  # mlp:hidden=16 and mlp:hidden=24x24 on digits and digits:rot90=1
    assert corpus_archs(corpus) == ["mlp:hidden=16", "mlp:hidden=24x24"]
    copied = via_archs_run(run, corpus, tmp_path / "via")
    sampler = json.loads((copied / "dit" / "config.json").read_text())["sampler"]
    assert sampler["via_archs"] == ["mlp:hidden=16", "mlp:hidden=24x24"]
    with pytest.raises(ValueError, match="already exists"):
        via_archs_run(run, corpus, copied)  # nothing stored is overwritten

    via, plain = Generator.from_run(copied, steps=2), Generator.from_run(run, steps=2)
    assert via.sampler["via_archs"] == 2 and plain.sampler["via_archs"] == 0
    unseen = via.sample("mlp:hidden=20", "digits", seed=3)
    source = plain.sample("mlp:hidden=16", "digits", seed=3)
    assert unseen.via == "mlp:hidden=16" and source.via == ""
    target = build_model("mlp:hidden=20", input_shape("digits"), seed=3).state_dict()
    expected = fit_state_dict(source.state_dicts[0], target)[0]
    assert unseen.state_dicts[0].keys() == target.keys()
    assert all(torch.equal(unseen.state_dicts[0][k], expected[k]) for k in target)
    assert unseen.flops == source.flops  # the sample of the source is what it cost; the cut is copies
    # the four units the source lacks keep the target's own init at the sample's seed
    assert torch.equal(unseen.state_dicts[0]["net.1.weight"][16:], target["net.1.weight"][16:])
    # a seen architecture samples exactly as without the option
    seen = via.sample("mlp:hidden=24x24", "digits", seed=3)
    assert seen.via == "" and all(torch.equal(seen.state_dicts[0][k], v)
                                  for k, v in plain.sample("mlp:hidden=24x24", "digits", seed=3).state_dicts[0].items())
