"""Relabelled tasks (weightgen.relabel): a task that permutes another's labels, and the exact map between their networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightgen.data import input_shape, load_task
from weightgen.models import build_model
from weightgen.relabel import base_task, label_permutation, output_layer, relabel_classes


@pytest.mark.parametrize("arch, task", [("mlp:hidden=16x16", "digits"), ("mlp:hidden=none", "digits"),
                                        ("cnn1d:channels=8x8", "mnist1d"), ("cnn2d:channels=4x8", "digits"),
                                        ("transformer:dim=16,depth=1,heads=2,patch=8", "digits")])
def test_relabelling_the_output_layer_renames_the_classes_of_the_same_function(arch, task):
    shape = input_shape(task)
    model = build_model(arch, shape, seed=3).eval()
    perm = np.random.default_rng(5).permutation(10)
    moved = build_model(arch, shape, seed=4).eval()  # other weights, to show every tensor is loaded
    moved.load_state_dict(relabel_classes(model.state_dict(), output_layer(arch, shape), perm))
    x = torch.randn(7, *shape)
    with torch.no_grad():
        before, after = model(x), moved(x)
    # logit c of the base network is logit perm[c] of the relabelled one (to float rounding: rows move in the matmul)
    torch.testing.assert_close(after[:, perm], before, rtol=0, atol=1e-6)
    assert (after - before).abs().max() > 1e-3


def test_the_permutation_is_the_one_the_data_applies():
    perm = label_permutation("digits:label_perm=2")
    assert label_permutation("digits") is None and sorted(perm.tolist()) == list(range(10))
    assert base_task("digits:label_perm=2,rot90=1").to_string() == "digits:rot90=1"
    base, relabelled = load_task("digits"), load_task("digits:label_perm=2")
    assert torch.equal(torch.as_tensor(perm)[base.train.y], relabelled.train.y)
    assert torch.equal(base.train.x, relabelled.train.x)


def test_the_generator_samples_a_relabelled_task_as_its_base_task_relabelled(setup, tmp_path):
    from weightgen.generate import Generator, copy_run_with_sampler

    _, _, run = setup
    arch, task = "mlp:hidden=16", "digits:label_perm=2"
    generator = Generator.from_run(run, steps=2, relabel=True)
    mine, base = generator.sample(arch, task, seed=1), generator.sample(arch, "digits", seed=1)
    layer = output_layer(arch, input_shape(task))
    expected = relabel_classes(base.state_dicts[0], layer, label_permutation(task))
    assert set(mine.state_dicts[0]) == set(expected)
    assert all(torch.equal(mine.state_dicts[0][k], expected[k]) for k in expected)
    assert mine.flops == base.flops > 0  # relabelling costs no FLOPs
    plain = Generator.from_run(run, steps=2).sample(arch, task, seed=1)  # the default: the DiT reads the permutation itself
    assert not torch.equal(plain.state_dicts[0][f"{layer}.weight"], mine.state_dicts[0][f"{layer}.weight"])
    assert generator.sampler["relabel"] and not Generator.from_run(run).sampler["relabel"]
    # A run copied with the option in its sampler relabels without being asked (what a bench of it samples).
    copied = Generator.from_run(copy_run_with_sampler(run, tmp_path / "relabelled", {"relabel": True}), steps=2)
    assert copied.sampler["relabel"]
    again = copied.sample(arch, task, seed=1).state_dicts[0]
    assert all(torch.equal(again[k], expected[k]) for k in expected)
