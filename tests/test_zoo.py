"""Zoo grids: expansion, exclusion, validation, and members that train once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weightgen.corpus import Corpus, CorpusError
from weightgen.specs import SpecError
from weightgen.zoo import expand, load_grid, require_one_history, train_member, training_waves

GRID = {
    "name": "t",
    "seeds": [0, 1],
    "checkpoint_steps": [5],
    "recipe": {"steps": 10, "eval_every": 5, "batch_size": 32},
    "archs": ["mlp:hidden=8", "cnn1d:channels=4", "cnn2d:channels=2", "transformer:dim=8,depth=1,heads=2,patch=8"],
    "tasks": ["mnist1d", "digits"],
}


def test_expand_pairs_only_compatible_families():
    members = expand(load_grid(GRID))
    pairs = {(m.arch, m.task) for m in members}
    # mlp and transformer take both tasks, cnn1d only sequences, cnn2d only images: 6 pairs × 2 seeds
    assert len(members) == 12 and len(pairs) == 6
    assert ("cnn1d:channels=4", "digits") not in pairs and ("cnn2d:channels=2", "mnist1d") not in pairs
    assert all(m.checkpoint_steps == (5, 10) for m in members)  # the last step is always kept
    assert len({m.member_id for m in members}) == 12


def test_exclude_keeps_archs_and_tasks_out_whatever_their_spelling():
    grid = load_grid({**GRID, "exclude": {"archs": ["mlp:hidden=8,activation=relu"], "tasks": ["digits:rot90=0"]}})
    members = expand(grid)
    assert all(m.arch != "mlp:hidden=8" and m.task != "digits" for m in members)
    assert len(members) == 4  # cnn1d and transformer on mnist1d, 2 seeds


def test_per_family_recipe_and_member_id_follow_the_recipe():
    base = {m.arch: m for m in expand(load_grid(GRID))}
    tuned = {m.arch: m for m in expand(load_grid({**GRID, "recipes": {"cnn1d": {"lr": 0.01}}}))}
    assert tuned["cnn1d:channels=4"].recipe.lr == 0.01 and tuned["mlp:hidden=8"].recipe.lr == base["mlp:hidden=8"].recipe.lr
    assert tuned["cnn1d:channels=4"].member_id != base["cnn1d:channels=4"].member_id
    assert tuned["mlp:hidden=8"].member_id == base["mlp:hidden=8"].member_id


@pytest.mark.parametrize(
    "change, message",
    [
        ({"archs": ["mlp:hidden=-3"]}, "hidden"),
        ({"tasks": ["imagenet"]}, "unknown dataset 'imagenet'"),
        ({"checkpoint_steps": [50]}, r"checkpoint_steps \[50\] fall outside 0..10"),
        ({"recipes": {"rnn": {}}}, "unknown families"),
        ({"seeds": []}, "seeds"),
        ({"archs": []}, "archs"),
        ({"colour": "red"}, "colour"),
        ({"parents": {"rnn": "mlp:hidden=8"}}, "unknown family 'rnn'"),
        ({"parents": {"mlp": "cnn1d:channels=4"}}, "not a mlp architecture"),
        ({"parents": {"mlp": "mlp:hidden=8"}, "exclude": {"archs": ["mlp:hidden=8"]}}, "in exclude.archs"),
    ],
)
def test_bad_grids_are_refused_naming_the_problem(change, message):
    with pytest.raises(SpecError, match=message):
        expand(load_grid({**GRID, **change}))


def test_grid_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_grid(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("archs: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_grid(bad)
    bad.write_text("- a list")
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_grid(bad)
    grids = Path(__file__).resolve().parents[1] / "configs" / "grids"
    independent = expand(load_grid(grids / "independent.yaml"))
    assert len(independent) == 144 and sum(len(m.checkpoint_steps) for m in independent) == 576
    default = expand(load_grid(grids / "default.yaml"))  # the same zoo in a shared frame: + 3 parents outside the grid
    assert len(default) == 147 and sum(len(m.checkpoint_steps) for m in default) == 588
    assert {(m.arch, m.task, m.seed) for m in independent} <= {(m.arch, m.task, m.seed) for m in default}
    assert sum(m.parent is None for m in default) == 6  # one parent per family and dataset the family takes


def test_train_member_trains_once(tmp_path):
    spec = expand(load_grid(GRID))[0]
    first = train_member(spec, tmp_path)
    assert first["status"] == "trained" and first["train_flops"] > 0
    corpus = Corpus(tmp_path)
    assert corpus.is_complete(spec.member_id)
    state, config = corpus.load(spec.member_id, 10)
    assert config["arch_string"] == spec.arch and config["seed"] == spec.seed and len(config["curve"]) == 3
    assert set(config["metrics"]) == {"val_acc", "val_loss", "test_acc", "test_loss"}
    mtime = (corpus.member_dir(spec.member_id) / "member.json").stat().st_mtime_ns
    second = train_member(spec, tmp_path)
    assert second["status"] == "skipped"
    assert (corpus.member_dir(spec.member_id) / "member.json").stat().st_mtime_ns == mtime
    other = expand(load_grid(GRID))[1]
    with corpus.claim(other.member_id):  # as if another build were training it right now
        assert train_member(other, tmp_path)["status"] == "busy"
    assert not corpus.is_complete(other.member_id)


def test_training_is_reproducible_across_members(tmp_path):
    spec = expand(load_grid(GRID))[0]
    train_member(spec, tmp_path / "a")
    train_member(spec, tmp_path / "b")
    a, _ = Corpus(tmp_path / "a").load(spec.member_id, 10)
    b, _ = Corpus(tmp_path / "b").load(spec.member_id, 10)
    assert all(torch.equal(a[k], b[k]) for k in a)


PARENT_GRID = {**GRID, "archs": ["mlp:hidden=8", "mlp:hidden=4x4", "cnn1d:channels=4"], "tasks": ["mnist1d", "mnist1d:label_perm=1"],
               "parents": {"mlp": "mlp:hidden=12x12"}}


def test_parents_come_first_and_every_family_member_names_its_own():
    members = expand(load_grid(PARENT_GRID))
    parents, children = training_waves(members)
    assert [(p.arch, p.task, p.seed, p.parent) for p in parents] == [
        ("mlp:hidden=12x12", "mnist1d", 0, None),  # the family's parent on the dataset's first task, first seed
        ("cnn1d:channels=4", "mnist1d", 0, None), ("cnn1d:channels=4", "mnist1d", 1, None),
        ("cnn1d:channels=4", "mnist1d:label_perm=1", 0, None), ("cnn1d:channels=4", "mnist1d:label_perm=1", 1, None),
    ]  # a family without a parent trains from random init, in the first wave
    assert len(children) == 8 and {c.parent for c in children} == {parents[0].member_id}
    no_parent = {(m.arch, m.task, m.seed): m.member_id for m in expand(load_grid({**PARENT_GRID, "parents": {}}))}
    assert all(no_parent[c.arch, c.task, c.seed] != c.member_id for c in children)  # the parent is part of the id


def test_a_child_starts_from_its_parents_weights(tmp_path):
    grid = load_grid({**PARENT_GRID, "recipe": {**GRID["recipe"], "steps": 0}, "checkpoint_steps": []})
    parents, children = training_waves(expand(load_grid(grid.model_dump())))
    child = next(c for c in children if c.arch == "mlp:hidden=8")
    with pytest.raises(CorpusError, match="train the parents first"):
        train_member(child, tmp_path)
    assert not Corpus(tmp_path).is_complete(child.member_id)
    train_member(parents[0], tmp_path)
    train_member(child, tmp_path)
    corpus = Corpus(tmp_path)
    parent_state, _ = corpus.load(parents[0].member_id, 0)
    child_state, config = corpus.load(child.member_id, 0)
    assert config["parent"] == parents[0].member_id
    # 0 training steps: the child is its parent's weights, uniformly selected (12 -> 8 hidden units, first layer)
    keep = torch.linspace(0, 11, 8).round().long()
    assert torch.equal(child_state["net.1.weight"], parent_state["net.1.weight"][keep])  # all 40 inputs kept


def test_a_corpus_keeps_one_history_per_architecture_task_and_seed(tmp_path):
    independent = load_grid({**GRID, "archs": ["mlp:hidden=8"], "tasks": ["mnist1d"], "seeds": [0, 1],
                             "recipe": {**GRID["recipe"], "steps": 0}, "checkpoint_steps": []})
    for member in expand(independent):
        train_member(member, tmp_path)
    stored = sorted(p.name for p in (tmp_path / "members").iterdir())
    require_one_history(expand(independent), tmp_path, "again")  # the same grid again: nothing to refuse
    require_one_history(expand(load_grid({**independent.model_dump(), "seeds": [2]})), tmp_path, "seed 2")  # new seeds add
    shared = load_grid({**independent.model_dump(), "archs": ["mlp:hidden=8", "mlp:hidden=12"],
                        "parents": {"mlp": "mlp:hidden=12"}})  # the same networks, now fine-tuned from a parent
    with pytest.raises(CorpusError, match=r"already holds 2 of grid .*trained another way.*seed1__r.*another folder"):
        require_one_history(expand(shared), tmp_path, "shared")
    other_recipe = load_grid({**independent.model_dump(), "recipe": {**GRID["recipe"], "steps": 0, "lr": 0.1}})
    with pytest.raises(CorpusError, match="already holds 2 of grid"):
        require_one_history(expand(other_recipe), tmp_path, "lr")
    assert sorted(p.name for p in (tmp_path / "members").iterdir()) == stored  # refused before anything was written
