"""Baseline inits and weight selection: uniform selection, layer mapping, and each method's choice of checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from weightgen.baselines import BASELINE_METHODS, CorpusIndex, make_init
from weightgen.corpus import Checkpoint, Corpus
from weightgen.data import input_shape
from weightgen.models import build_model, count_parameters
from weightgen.specs import parse_arch, parse_task
from weightgen.weight_selection import fit_state_dict

TRANSFORMER = "transformer:dim=8,depth=2,heads=2,patch=8"
# (arch, task, seed, scale): untrained inits scaled by a per-member factor, so corpus stats differ from an init's
MEMBERS = [
    ("mlp:hidden=16", "mnist1d", 0, 1.5),
    ("mlp:hidden=16", "mnist1d:label_perm=1", 1, 2.0),
    ("mlp:hidden=24", "mnist1d:label_perm=1", 2, 1.2),  # the exact shape for some targets, on a far task
    ("mlp:hidden=32x32", "mnist1d", 3, 1.8),  # the largest mlp on mnist1d
    ("mlp:hidden=64", "digits", 4, 1.3),  # larger still, on the other dataset
    ("cnn1d:channels=4x6,norm=batch", "mnist1d", 5, 1.5),
    ("cnn2d:channels=4x6", "digits", 6, 1.5),
    (TRANSFORMER, "mnist1d", 7, 1.5),
]
FINAL = 20


def member_id(arch: str, task: str, seed: int) -> str:
    return f"{parse_arch(arch).slug}--{parse_task(task).slug}--{seed}"


def write_member(corpus: Corpus, arch: str, task: str, seed: int, scale: float) -> None:
    """An init at step 10 and a scaled, perturbed copy as the final step: a member without training."""
    a, t = parse_arch(arch), parse_task(task)
    model = build_model(a, input_shape(t), seed=seed)
    generator = torch.Generator().manual_seed(1000 + seed)
    init = model.state_dict()
    final = {k: v * scale + 0.01 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v + 3
             for k, v in init.items()}  # fmt: skip
    info = {"source": "zoo", "arch": a.model_dump(), "arch_string": a.to_string(), "task": t.model_dump(),
            "task_string": t.to_string(), "seed": seed, "num_params": count_parameters(model), "flops_per_step": 1}
    corpus.write_member(member_id(arch, task, seed), info, [Checkpoint(10, init, {}), Checkpoint(FINAL, final, {})])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    corpus = Corpus(tmp_path_factory.mktemp("corpus"))
    for member in MEMBERS:
        write_member(corpus, *member)
    corpus.write_member("hub-import", {"source": "hub"}, [Checkpoint(0, {"w": torch.ones(3)}, {})])
    corpus.rebuild_manifest()
    return corpus


@pytest.fixture(scope="module")
def index(corpus) -> CorpusIndex:
    return CorpusIndex(corpus.root)


def final_state(corpus: Corpus, arch: str, task: str, seed: int) -> dict[str, torch.Tensor]:
    """The stored final weights in module order (safetensors returns them sorted by name)."""
    loaded = corpus.load(member_id(arch, task, seed), FINAL)[0]
    return {k: loaded[k] for k in build_model(arch, input_shape(task)).state_dict()}


def state(arch: str, seed: int, shape=(40,)) -> dict[str, torch.Tensor]:
    return build_model(arch, shape, seed=seed).state_dict()


# --------------------------------------------------------------------------- weight selection
@pytest.mark.parametrize("arch", ["mlp:hidden=8x8", "cnn1d:channels=4x6,norm=batch", TRANSFORMER])
def test_fit_same_shapes_is_an_exact_copy(arch):
    source, target = state(arch, 0), state(arch, 1)
    for key in source:
        if not source[key].is_floating_point():
            source[key] = source[key] + 7  # num_batches_tracked is copied as is
    out, report = fit_state_dict(source, target)
    assert list(out) == list(target) and report["filled"] == len(target) and report["kept"] == []
    for key in target:
        assert out[key].dtype == target[key].dtype and torch.equal(out[key], source[key]), key


def test_fit_smaller_target_takes_evenly_spaced_units():
    source, target = state("mlp:hidden=10x10", 0), state("mlp:hidden=4x4", 1)
    out, _ = fit_state_dict(source, target)
    idx = torch.tensor([0, 3, 6, 9])  # linspace(0, 9, 4)
    assert torch.equal(out["net.1.weight"], source["net.1.weight"][idx])
    assert torch.equal(out["net.1.bias"], source["net.1.bias"][idx])
    assert torch.equal(out["net.3.weight"], source["net.3.weight"][idx][:, idx])  # rows and columns both
    assert torch.equal(out["net.5.weight"], source["net.5.weight"][:, idx])
    assert torch.equal(out["net.5.bias"], source["net.5.bias"])

    source, target = state("cnn1d:channels=8,kernel=5", 0), state("cnn1d:channels=4,kernel=3", 1)
    out, _ = fit_state_dict(source, target)
    channels, taps = torch.tensor([0, 2, 5, 7]), torch.tensor([0, 2, 4])  # round(linspace(0, 7, 4)), linspace(0, 4, 3)
    assert torch.equal(out["features.0.weight"], source["features.0.weight"][channels][:, :, taps])


def test_fit_larger_target_keeps_its_own_init_in_the_surplus():
    source, target = state("mlp:hidden=4", 0), state("mlp:hidden=10", 1)
    out, report = fit_state_dict(source, target)
    assert report["filled"] == 4
    assert torch.equal(out["net.1.weight"][:4], source["net.1.weight"])
    assert torch.equal(out["net.1.weight"][4:], target["net.1.weight"][4:])
    assert torch.equal(out["net.1.bias"][4:], target["net.1.bias"][4:])
    assert torch.equal(out["net.3.weight"][:, :4], source["net.3.weight"])
    assert torch.equal(out["net.3.weight"][:, 4:], target["net.3.weight"][:, 4:])


def test_fit_maps_first_to_first_and_last_to_last_for_other_depths():
    deep, shallow = state("mlp:hidden=8x8x8", 0), state("mlp:hidden=8", 1)
    out, report = fit_state_dict(deep, shallow)  # shallower target: net.1 <- net.1, head net.3 <- net.7
    assert report["layers"] == {"net.1": "net.1", "net.3": "net.7"}
    assert torch.equal(out["net.3.weight"], deep["net.7.weight"])

    target = state("mlp:hidden=8x8x8", 2)
    out, report = fit_state_dict(shallow, target)  # deeper target: the extra middle layers keep their own init
    assert report["layers"] == {"net.1": "net.1", "net.7": "net.3"}
    assert report["kept"] == ["net.3.weight", "net.3.bias", "net.5.weight", "net.5.bias"]
    assert torch.equal(out["net.7.weight"], shallow["net.3.weight"])
    assert torch.equal(out["net.1.bias"], shallow["net.1.bias"])
    assert torch.equal(out["net.5.weight"], target["net.5.weight"])

    two, one = state(TRANSFORMER, 0), state("transformer:dim=8,depth=1,heads=2,patch=8", 1)
    out, report = fit_state_dict(two, one)  # the final norm pairs with the norm, not with the second block
    assert report["layers"] == {"pos_embedding": "pos_embedding", "embed": "embed", "blocks.0": "blocks.0",
                                "norm": "norm", "head": "head"}  # fmt: skip
    assert all(torch.equal(out[k], two[k]) for k in one)


def test_fit_refuses_another_family():
    with pytest.raises(ValueError, match="first layer 'net.1'.*another model family"):
        fit_state_dict(state("mlp:hidden=8", 0), state("cnn1d:channels=4", 0))


# --------------------------------------------------------------------------- the methods
def test_index_reads_final_native_checkpoints(index):
    assert len(index.finals) == len(MEMBERS)
    assert set(index.finals["step"]) == {FINAL} and "external" not in set(index.finals["family"])


CASES = [  # (arch, task, has a same-shape corpus checkpoint)
    ("mlp:hidden=20", "mnist1d:noise=0.3", False),
    ("cnn1d:channels=4x6,norm=batch", "mnist1d", True),
    ("cnn2d:channels=4x6", "digits", True),
    (TRANSFORMER, "mnist1d", True),
    ("transformer:dim=16,depth=1,heads=4,patch=4", "digits", False),
]


@pytest.mark.parametrize("method", BASELINE_METHODS)
@pytest.mark.parametrize("arch,task,seen", CASES)
def test_every_init_loads_strictly_and_is_finite(index, method, arch, task, seen):
    init = make_init(method, arch, task, 0, index)
    assert init.method == method and init.flops >= 0 and init.wall_time > 0
    if method == "noisy-nearest" and not seen:
        assert init.state_dict is None and "no corpus checkpoint has this architecture's shapes" in init.note
        return
    model = build_model(arch, input_shape(task), seed=0)
    model.load_state_dict(init.state_dict, strict=True)
    target = model.state_dict()
    for key, value in init.state_dict.items():
        assert value.dtype == target[key].dtype
        assert torch.isfinite(value.float()).all(), key
    if method != "random":
        assert init.source


def test_noisy_nearest_picks_the_same_task_and_adds_relative_noise(corpus, index):
    arch, task = "mlp:hidden=16", "mnist1d:label_perm=1"
    for scale in (0.1, 0.3):
        init = make_init("noisy-nearest", arch, task, 0, index, noise_scale=scale)
        assert init.source == f"{member_id(arch, task, 1)}/step-{FINAL:07d}"
        base = final_state(corpus, arch, task, 1)
        for key in ("net.1.weight", "net.3.weight"):
            ratio = float((init.state_dict[key] - base[key]).std() / base[key].std())
            assert ratio == pytest.approx(scale, rel=0.2), key
    assert make_init("noisy-nearest", arch, "mnist1d", 0, index).source.startswith(member_id(arch, "mnist1d", 0))


def test_noisy_nearest_keeps_buffers_noise_free(corpus, index):
    arch, task = "cnn1d:channels=4x6,norm=batch", "mnist1d"
    init, base = make_init("noisy-nearest", arch, task, 0, index), final_state(corpus, arch, task, 5)
    for key in ("features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"):
        assert torch.equal(init.state_dict[key], base[key])
    assert not torch.equal(init.state_dict["features.1.weight"], base["features.1.weight"])


def test_retrieval_prefers_the_nearest_task_then_the_nearest_architecture(corpus, index):
    unseen = "mnist1d:noise=0.3"
    assert index.task_distance(unseen, "mnist1d") < index.task_distance(unseen, "mnist1d:label_perm=1")
    # the exact architecture exists only on the farther task: the nearest task wins
    init = make_init("retrieval", "mlp:hidden=24", unseen, 0, index)
    assert init.source.startswith(member_id("mlp:hidden=16", "mnist1d", 0))
    expected, _ = fit_state_dict(final_state(corpus, "mlp:hidden=16", "mnist1d", 0), state("mlp:hidden=24", 0))
    assert all(torch.equal(init.state_dict[k], expected[k]) for k in expected)
    # on that task, the exact architecture beats the narrower one
    init = make_init("retrieval", "mlp:hidden=24", "mnist1d:label_perm=1", 0, index)
    assert init.source.startswith(member_id("mlp:hidden=24", "mnist1d:label_perm=1", 2))


def test_with_a_label_map_members_of_any_label_order_compete_and_come_in_the_targets_order(corpus, index):
    from weightgen.relabel import output_layer, to_label_order

    target = "mnist1d:label_perm=3"  # an order no member has
    layer = output_layer("mlp:hidden=24", input_shape(target))  # the logits layer of every one-hidden-layer mlp here
    # By base task every mnist1d member is at distance 0, so the exact architecture wins (a label_perm=1 member),
    # and its rows move from label order 1 to 3.
    init = make_init("retrieval", "mlp:hidden=24", target, 0, index, label_map=True)
    member = ("mlp:hidden=24", "mnist1d:label_perm=1", 2)
    assert init.source.startswith(member_id(*member))
    fitted, _ = fit_state_dict(final_state(corpus, *member), state("mlp:hidden=24", 0))
    expected = to_label_order(fitted, layer, member[1], target)
    assert all(torch.equal(init.state_dict[k], expected[k]) for k in expected)
    assert not torch.equal(init.state_dict[f"{layer}.weight"], fitted[f"{layer}.weight"])
    # Without the map the label order counts in the distance and nothing is moved.
    plain = make_init("retrieval", "mlp:hidden=24", target, 0, index)
    fitted_plain, _ = fit_state_dict(index.state_dict(plain.source.split("/")[0]), state("mlp:hidden=24", 0))
    assert all(torch.equal(plain.state_dict[k], fitted_plain[k]) for k in fitted_plain)
    # noisy-nearest and weight-selection move theirs the same way; random and moment have no labels to map.
    nearest = make_init("noisy-nearest", "mlp:hidden=16", target, 0, index, noise_scale=0.0, label_map=True)
    source = index.finals.set_index("member").loc[nearest.source.split("/")[0], "task"]
    copied = to_label_order(index.state_dict(nearest.source.split("/")[0]), layer, source, target)
    assert all(torch.equal(nearest.state_dict[k], copied[k]) for k in copied)
    selected = make_init("weight-selection", "mlp:hidden=12", target, 0, index, label_map=True)
    fitted, _ = fit_state_dict(final_state(corpus, "mlp:hidden=32x32", "mnist1d", 3), state("mlp:hidden=12", 0))
    expected = to_label_order(fitted, layer, "mnist1d", target)
    assert all(torch.equal(selected.state_dict[k], expected[k]) for k in expected)
    # Among equally near base tasks the member already in the case's label order wins (no member-id tie-break):
    # with the map, mlp:hidden=16 on label order 1 comes from the label_perm=1 member, as it does without it.
    for mapped in (True, False):
        exact = make_init("noisy-nearest", "mlp:hidden=16", "mnist1d:label_perm=1", 0, index, label_map=mapped)
        assert exact.source.startswith(member_id("mlp:hidden=16", "mnist1d:label_perm=1", 1))
    assert make_init("retrieval", "mlp:hidden=16", "mnist1d", 0, index, label_map=True).source.startswith(
        member_id("mlp:hidden=16", "mnist1d", 0))
    for method in ("random", "moment"):
        mapped, unmapped = (make_init(method, "mlp:hidden=24", target, 0, index, label_map=m) for m in (True, False))
        assert all(torch.equal(mapped.state_dict[k], unmapped.state_dict[k]) for k in unmapped.state_dict)


def test_weight_selection_uses_the_largest_member_on_the_dataset(corpus, index):
    init = make_init("weight-selection", "mlp:hidden=12", "mnist1d:label_perm=1", 0, index)
    assert init.source.startswith(member_id("mlp:hidden=32x32", "mnist1d", 3))  # not the larger digits member
    expected, _ = fit_state_dict(final_state(corpus, "mlp:hidden=32x32", "mnist1d", 3), state("mlp:hidden=12", 0))
    assert all(torch.equal(init.state_dict[k], expected[k]) for k in expected)
    init = make_init("weight-selection", "mlp:hidden=12", "digits", 0, index)
    assert init.source.startswith(member_id("mlp:hidden=64", "digits", 4))


def test_moment_matches_the_corpus_role_stats_for_an_unseen_width(corpus, index):
    finals = [final_state(corpus, arch, task, seed) for arch, task, seed, _ in MEMBERS if arch.startswith("mlp")]
    deepest = final_state(corpus, "mlp:hidden=32x32", "mnist1d", 3)
    assert len(finals) == 5

    def pooled(tensors):  # fan-in-normalised values of one role over the corpus
        values = torch.cat([(t * math.sqrt(t.shape[1]) if t.ndim == 2 else t).flatten() for t in tensors])
        return float(values.mean()), float(values.std(unbiased=False))

    roles = {  # target key -> the same role's corpus tensors
        "net.1.weight": [s["net.1.weight"] for s in finals],
        "net.1.bias": [s["net.1.bias"] for s in finals],
        "net.3.weight": [deepest["net.3.weight"]],  # the only middle layer in the corpus
        "net.5.weight": [s[list(s)[-2]] for s in finals],  # the heads
    }
    arch, task = "mlp:hidden=20x20", "mnist1d"
    init, random = make_init("moment", arch, task, 0, index), state(arch, 0)
    for key, tensors in roles.items():
        mean, std = pooled(tensors)
        value = init.state_dict[key]
        scaled = value * math.sqrt(value.shape[1]) if value.ndim == 2 else value
        assert float(scaled.std()) == pytest.approx(std, rel=1e-4), key
        assert float(scaled.mean()) == pytest.approx(mean, abs=1e-4 * std), key
        random_scaled = random[key] * math.sqrt(value.shape[1]) if value.ndim == 2 else random[key]
        assert abs(float(random_scaled.std()) - std) > 0.1 * std, f"{key}: the corpus scale must differ from an init's"


def test_moment_leaves_buffers_alone(index):
    arch = "cnn1d:channels=4x6,norm=batch"
    init, random = make_init("moment", arch, "mnist1d", 0, index), state(arch, 0)
    for key in ("features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"):
        assert torch.equal(init.state_dict[key], random[key])
    assert not torch.equal(init.state_dict["features.0.weight"], random["features.0.weight"])


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_same_seed_same_init(index, method):
    arch, task = "mlp:hidden=16", "mnist1d"
    first, again, other = (make_init(method, arch, task, seed, index).state_dict for seed in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    if method in ("random", "moment", "noisy-nearest"):  # the others copy a same-shape checkpoint exactly
        assert not torch.equal(first["net.1.weight"], other["net.1.weight"])


def test_the_seed_draws_among_equally_near_members_and_only_among_them(tmp_path):
    corpus = Corpus(tmp_path)
    for seed in (0, 1):  # two training seeds of one (architecture, task): a tie on every key
        write_member(corpus, "mlp:hidden=16", "mnist1d", seed, 1.0 + seed)
    write_member(corpus, "mlp:hidden=16", "mnist1d:label_perm=1", 2, 1.5)  # farther: never drawn
    corpus.rebuild_manifest()
    index = CorpusIndex(tmp_path)
    for method in ("noisy-nearest", "retrieval", "weight-selection"):
        picks = {seed: make_init(method, "mlp:hidden=16", "mnist1d", seed, index) for seed in (100, 101, 102)}
        members = {seed: init.source.split("/")[0] for seed, init in picks.items()}
        assert members[100] == members[102] == member_id("mlp:hidden=16", "mnist1d", 0), method
        assert members[101] == member_id("mlp:hidden=16", "mnist1d", 1), method
        assert picks[100].note.endswith("member 1 of 2 equally near") and picks[101].note.endswith("2 of 2 equally near")
    # a member nearer than the rest is taken for every seed, and the note names no tie
    for seed in (100, 101):
        init = make_init("retrieval", "mlp:hidden=16", "mnist1d:label_perm=1", seed, index)
        assert init.source.startswith(member_id("mlp:hidden=16", "mnist1d:label_perm=1", 2))
        assert "equally near" not in init.note


def test_unknown_method_and_missing_family(tmp_path, index):
    with pytest.raises(ValueError, match="unknown init method 'best'; valid: random, moment, noisy-nearest"):
        make_init("best", "mlp:hidden=16", "mnist1d", 0, index)
    corpus = Corpus(tmp_path)
    write_member(corpus, "mlp:hidden=16", "mnist1d", 0, 1.0)
    only_mlp = CorpusIndex(tmp_path)
    for method in BASELINE_METHODS[1:]:
        init = make_init(method, "cnn1d:channels=4", "mnist1d", 0, only_mlp)
        assert init.state_dict is None and init.note == "the corpus has no cnn1d member"
    assert make_init("random", "cnn1d:channels=4", "mnist1d", 0, only_mlp).state_dict is not None


def test_the_init_cli_writes_a_corpus_start_that_loads_and_refuses_what_it_cannot_make(corpus, index, tmp_path):
    from typer.testing import CliRunner

    from weightgen.checkpoint import load_model
    from weightgen.cli import app
    from weightgen.head_fit import with_fitted_head

    runner = CliRunner()
    common = ["init", "--corpus", str(corpus.root), "--seed", "3"]
    task = "mnist1d:label_perm=3"  # a label order no member has
    ok = runner.invoke(app, [*common, "--arch", "mlp:hidden=24", "--task", task, "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    model = load_model(tmp_path / "r")  # the defaults: retrieval+head with the label map, its cost counted
    base = make_init("retrieval", "mlp:hidden=24", task, 3, index, label_map=True)
    fit = with_fitted_head("mlp:hidden=24", task, base.state_dict, 3)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fit.state_dict.items())
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["method"] == "retrieval+head" and config["source"] == base.source and config["label_map"]
    assert config["flops"] == base.flops + fit.flops > 0
    plain = runner.invoke(app, [*common, "--arch", "mlp:hidden=24", "--task", task, "--out", str(tmp_path / "p"),
                                "--method", "retrieval", "--no-label-map"])
    assert plain.exit_code == 0, plain.output
    unmapped = make_init("retrieval", "mlp:hidden=24", task, 3, index)
    assert all(torch.equal(load_model(tmp_path / "p").state_dict()[k], v) for k, v in unmapped.state_dict.items())
    unknown = runner.invoke(app, [*common, "--arch", "mlp:hidden=24", "--task", "mnist1d", "--out", str(tmp_path / "u"),
                                  "--method", "generated"])
    assert unknown.exit_code == 2 and "weightgen generate" in unknown.output and not (tmp_path / "u").exists()
    none = runner.invoke(app, [*common, "--arch", "mlp:hidden=40", "--task", "mnist1d", "--out", str(tmp_path / "n"),
                               "--method", "noisy-nearest"])  # no member has these shapes
    assert none.exit_code == 2 and "architecture's shapes" in none.output and not (tmp_path / "n").exists()
