"""Relabelled tasks (weightgen.relabel): a task that permutes another's labels, and the exact map between their networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightgen.data import input_shape, load_task
from weightgen.models import build_model
from weightgen.relabel import base_task, label_order, label_permutation, output_layer, relabel_classes, to_label_order


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


@pytest.mark.parametrize("source, target", [("digits:label_perm=1", "digits:label_perm=4"), ("digits", "digits:label_perm=2"),
                                            ("digits:label_perm=3", "digits"), ("digits:label_perm=3", "mnist1d:label_perm=3")])
def test_a_network_moved_to_another_label_order_gives_each_class_its_row_there(source, target):
    arch, shape = "mlp:hidden=16", input_shape("digits")
    model = build_model(arch, shape, seed=3).eval()
    layer = output_layer(arch, shape)
    moved_state = to_label_order(model.state_dict(), layer, source, target)
    if np.array_equal(label_order(source), label_order(target)):  # the same order: nothing to move
        assert moved_state is model.state_dict() or all(torch.equal(moved_state[k], v) for k, v in model.state_dict().items())
        return
    moved = build_model(arch, shape, seed=4).eval()
    moved.load_state_dict(moved_state)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        before, after = model(x), moved(x)
    # class c scores at row source[c] before and at row target[c] after
    torch.testing.assert_close(after[:, label_order(target)], before[:, label_order(source)], rtol=0, atol=1e-6)
    assert (after - before).abs().max() > 1e-3
    back = to_label_order(moved_state, layer, target, source)
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


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


def test_a_suite_with_the_label_map_gives_it_to_generated_and_to_the_corpus_methods(setup):
    from weightgen import bench
    from weightgen.baselines import make_init as baseline_init
    from weightgen.suite import load_suite

    _, corpus, run = setup
    arch, task = "mlp:hidden=16", "digits:label_perm=2"
    suite = load_suite({"name": "mapped", "corpus": str(corpus), "generator": str(run), "ddim_steps": 2,
                        "methods": ["random", "retrieval", "generated"], "label_map": True,
                        "cases": [{"arch": arch, "task": "digits", "split": "seen"}]})
    mapped = bench.make_init(suite, "generated", arch, task, 1).state_dict
    sampled = bench.make_init(suite.with_sources(label_map=False), "generated", arch, "digits", 1).state_dict
    expected = relabel_classes(sampled, output_layer(arch, input_shape(task)), label_permutation(task))
    assert all(torch.equal(mapped[k], expected[k]) for k in expected)
    retrieved = bench.make_init(suite, "retrieval", arch, task, 1)
    direct = baseline_init("retrieval", arch, task, 1, bench._corpus_index(str(corpus)), label_map=True)
    assert retrieved.source == direct.source and all(torch.equal(retrieved.state_dict[k], v) for k, v in direct.state_dict.items())
    plain = baseline_init("retrieval", arch, task, 1, bench._corpus_index(str(corpus)))
    assert not all(torch.equal(retrieved.state_dict[k], v) for k, v in plain.state_dict.items())


def test_novelty_sees_a_member_copied_up_to_a_renaming_of_the_classes(setup):
    from weightgen import bench
    from weightgen.bench_score import agreement
    from weightgen.checkpoint import model_for_weights

    _, corpus, _ = setup
    arch, task = "mlp:hidden=16", "digits:label_perm=2"
    members = bench._member_predictions(str(corpus), arch, task)
    base_members = bench._member_predictions(str(corpus), arch, "digits")
    assert set(base_members) < set(members)  # every member as it predicts, and (not in this order) relabelled
    assert len(members) == 2 * len(base_members)
    member = sorted(base_members)[0]
    index = bench._corpus_index(str(corpus))
    row = index.finals.set_index("member").loc[member]
    copy = to_label_order(index.state_dict(member), output_layer(arch, input_shape(task)), row["task"], task)
    predictions = bench._predictions(model_for_weights(copy, arch, task), load_task(task).test.x)
    assert agreement(predictions, members[f"{member} (relabelled)"]) == 1.0  # the renamed copy is a copy
    assert agreement(predictions, members[member]) < 0.5  # and as it predicts, the member looks nothing like it


def test_the_generate_cli_relabels_by_default_and_says_so(setup, tmp_path):
    import json

    from typer.testing import CliRunner

    from weightgen.checkpoint import load_model
    from weightgen.cli import app
    from weightgen.generate import Generator

    _, _, run = setup
    arch, task = "mlp:hidden=16", "digits:label_perm=2"
    common = ["generate", "--arch", arch, "--task", task, "--run", str(run), "--ddim-steps", "2", "--seed", "1"]
    for flag, relabel in (([], True), (["--no-relabel"], False)):
        out = tmp_path / str(relabel)
        result = CliRunner().invoke(app, [*common, *flag, "--out", str(out)])
        assert result.exit_code == 0, result.output
        expected = Generator.from_run(run, steps=2, relabel=relabel).sample(arch, task, seed=1).state_dicts[0]
        assert all(torch.equal(load_model(out).state_dict()[k], v) for k, v in expected.items())
        assert json.loads((out / "config.json").read_text())["generator"]["relabel"] is relabel


def test_a_bench_summary_says_when_the_label_map_was_on():
    import pandas as pd

    from weightgen.bench import summary_markdown
    from weightgen.suite import load_suite

    columns = ["cases", "runs", "compute_saved_median", "saved_ci_low", "saved_ci_high", "reach_rate", "final_test_acc",
               "final_vs_random", "test_acc_at_init", "novelty_median", "novelty_kappa_median", "random_kappa",
               "not_applicable"]
    summary = pd.DataFrame([[1, 2, 0.5, float("nan"), float("nan"), 1.0, 0.9, 0.0, 0.3, 0.4, 0.3, 0.8, 0]], columns=columns,
                           index=pd.MultiIndex.from_tuples([("seen", "random")], names=["split", "method"]))
    suite = load_suite({"name": "s", "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"}]})
    empty = pd.DataFrame()
    assert "Label map on" not in summary_markdown(suite, summary, empty, {}, empty)
    assert "Label map on" in summary_markdown(suite.with_sources(label_map=True), summary, empty, {}, empty)
