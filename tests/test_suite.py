"""Suite files: schema, clear errors for bad files, the split/leak check against a corpus manifest, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightgen.suite import PROTOCOL_METHODS, SPLITS, SuiteError, check_splits, load_suite
from weightgen.zoo import load_grid

ROOT = Path(__file__).resolve().parents[1]


def suite_dict(**changes):
    base = {"name": "t", "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"}]}
    return {**base, **changes}


def manifest(*members):
    """A manifest frame from (arch, task, seed) triples, one final checkpoint each."""
    rows = [{"member": f"m{i}", "family": arch.split(":")[0], "arch": arch, "task": task, "seed": seed,
             "dataset": task.split(":")[0], "step": 40} for i, (arch, task, seed) in enumerate(members)]
    return pd.DataFrame(rows)


CORPUS = manifest(("mlp:hidden=16", "digits", 0), ("mlp:hidden=16", "mnist1d", 0), ("mlp:hidden=32", "digits", 0))


# --------------------------------------------------------------------------- schema and files
def test_the_committed_suites_load_and_cover_what_the_issue_asks():
    default, smoke = load_suite(ROOT / "suites" / "default.yaml"), load_suite(ROOT / "suites" / "smoke.yaml")
    assert len(default.cases) >= 12
    assert {c.split for c in default.cases} == set(SPLITS) == {c.split for c in smoke.cases}
    assert len({c.arch.split(":")[0] for c in default.cases}) >= 3
    assert set(PROTOCOL_METHODS) <= set(default.methods)  # every method BENCHMARK.md names
    # the architectures a distillation keeps out of its neighbours: unseen-arch and unseen-both, once each
    assert default.unseen_archs() == ["cnn1d:channels=24x24x24", "cnn1d:channels=48x48", "cnn2d:channels=12x24",
                                      "mlp:hidden=48x48x48", "mlp:hidden=96x96", "transformer:dim=24,patch=8"]


GRIDS = sorted(p.stem for p in (ROOT / "configs" / "grids").glob("*.yaml"))
SUITES = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))
# The tiny suite is scored on the tiny grid only: its unseen cases are small members of the zoo grids.
GRID_SUITE_PAIRS = [(g, s) for g in GRIDS for s in SUITES if s != "tiny" or g == "tiny"]


@pytest.mark.parametrize(("grid_name", "suite_name"), GRID_SUITE_PAIRS)
def test_no_committed_grid_builds_a_committed_suites_unseen_case(grid_name, suite_name):
    grid = load_grid(ROOT / "configs" / "grids" / f"{grid_name}.yaml")
    for case in load_suite(ROOT / "suites" / f"{suite_name}.yaml").cases:
        if case.split in ("unseen-arch", "unseen-both"):
            assert case.arch not in grid.archs or case.arch in grid.exclude.archs, case
            assert case.arch not in grid.parents.values(), case  # a shared parent is a corpus member too
        if case.split in ("unseen-task", "unseen-both"):
            assert case.task not in grid.tasks or case.task in grid.exclude.tasks, case


def test_spec_strings_are_stored_canonically_and_recipes_merge_per_family():
    suite = load_suite(suite_dict(recipe={"steps": 50}, recipes={"cnn1d": {"lr": 0.01}},
                                  cases=[{"arch": "mlp:hidden=16,activation=relu", "task": "digits:rot90=0", "split": "seen"}]))
    assert (suite.cases[0].arch, suite.cases[0].task) == ("mlp:hidden=16", "digits")
    assert suite.recipe_for("cnn1d").lr == 0.01 and suite.recipe_for("cnn1d").steps == 50
    assert suite.recipe_for("mlp").lr == 3e-3


@pytest.mark.parametrize("changes, needle", [
    ({"methds": ["random"]}, "methds"),
    ({"methods": ["random", "magic"]}, "methods.1"),
    ({"methods": ["moment"]}, "must include 'random'"),
    ({"methods": ["random", "random"]}, "listed twice"),
    ({"cases": []}, "cases"),
    ({"cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "unseen"}]}, "cases.0.split"),
    ({"cases": [{"arch": "mlp:hidden=-3", "task": "digits", "split": "seen"}]}, "cases.0.arch"),
    ({"cases": [{"arch": "mlp:hidden=16", "task": "cifar", "split": "seen"}]}, "cases.0.task"),
    ({"cases": [{"arch": "cnn2d", "task": "mnist1d", "split": "seen"}]}, "cannot take"),
    ({"cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"}] * 2}, "cases listed twice"),
    ({"recipes": {"resnet": {"lr": 0.1}}}, "unknown families"),
    ({"recipes": {"mlp": {"lr": -1}}}, "recipes"),
    ({"samples": 0}, "samples"),
    ({"name": "has space"}, "name"),
])  # fmt: skip
def test_bad_fields_are_named(changes, needle):
    with pytest.raises(SuiteError, match="invalid suite") as error:
        load_suite(suite_dict(**changes))
    assert needle in str(error.value)


def test_overrides_replace_only_what_they_name_and_are_checked():
    suite = load_suite(suite_dict())
    moved = suite.with_sources(corpus="corpus/other", ddim_steps=1)
    assert (moved.corpus, moved.ddim_steps, moved.generator) == ("corpus/other", 1, suite.generator)
    assert suite.with_sources() == suite and not suite.label_map
    assert suite.with_sources(label_map=True).label_map and suite.with_sources(label_map=True).cases == suite.cases
    with pytest.raises(SuiteError, match="ddim_steps"):
        suite.with_sources(ddim_steps=0)
    guided = suite.with_sources(guidance=0.0)  # 0 is a value (the unconditional sample), not "keep the suite's"
    assert guided.guidance == 0.0 != suite.guidance and guided.cases == suite.cases
    with pytest.raises(SuiteError, match="guidance"):
        suite.with_sources(guidance=-1.0)


def test_a_narrowed_suite_keeps_random_and_only_the_cases_of_the_splits_asked():
    suite = load_suite(Path("suites/default.yaml"))
    narrow = suite.narrowed(methods=["generated"], splits=["unseen-arch", "unseen-task"])
    assert narrow.methods == ["random", "generated"]  # the target is relative to random's runs
    assert [c for c in suite.cases if c.split in ("unseen-arch", "unseen-task")] == narrow.cases and len(narrow.cases) == 12
    assert (narrow.recipe, narrow.seeds, narrow.name) == (suite.recipe, suite.seeds, suite.name)
    assert suite.narrowed() == suite and suite.narrowed(splits=["seen"]).methods == suite.methods
    with pytest.raises(SuiteError, match="unknown split"):
        suite.narrowed(splits=["unseen"])
    with pytest.raises(SuiteError, match=r"unknown method\(s\) \[.generatd.\]"):
        suite.narrowed(methods=["generatd"])
    only_seen = load_suite({**suite.model_dump(), "cases": [c.model_dump() for c in suite.cases if c.split == "seen"]})
    with pytest.raises(SuiteError, match=r"no case in split\(s\) \['unseen-both'\]"):
        only_seen.narrowed(splits=["unseen-both"])
    from typer.testing import CliRunner

    from weightgen.cli import app

    result = CliRunner().invoke(app, ["bench", "suites/default.yaml", "--splits", "unseen-arch,unseen"])
    assert result.exit_code == 2 and "unknown split(s) ['unseen']" in result.output


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SuiteError, match="must hold a mapping"):
        load_suite(tmp_path / "list.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SuiteError):
        load_suite(tmp_path / "binary.yaml")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(suite_dict(seeds="many")))
    with pytest.raises(SuiteError, match=r"typo.yaml.*seeds"):
        load_suite(tmp_path / "typo.yaml")


# --------------------------------------------------------------------------- splits and leaks
@pytest.mark.parametrize("case", [
    {"arch": "mlp:hidden=16", "task": "digits", "split": "seen", "seeds": [100]},
    {"arch": "mlp:hidden=24", "task": "digits", "split": "unseen-arch"},
    {"arch": "mlp:hidden=16", "task": "digits:rot90=2", "split": "unseen-task"},
    {"arch": "mlp:hidden=24", "task": "digits:rot90=2", "split": "unseen-both"},
])  # fmt: skip
def test_cases_that_match_their_split_pass(case):
    check_splits(load_suite(suite_dict(cases=[case])), CORPUS)


@pytest.mark.parametrize("case, needle", [
    ({"arch": "mlp:hidden=16", "task": "digits", "split": "unseen-arch"}, "2 corpus members have this architecture"),
    ({"arch": "mlp:hidden=24", "task": "mnist1d", "split": "unseen-both"}, "have this task"),
    ({"arch": "mlp:hidden=16", "task": "digits", "split": "unseen-task"}, "have this task"),
    ({"arch": "mlp:hidden=16", "task": "digits:rot90=2", "split": "seen"}, "cannot be 'seen'"),
    ({"arch": "mlp:hidden=16", "task": "digits", "split": "seen", "seeds": [0, 5]}, "seeds [0]"),
    ({"arch": "mlp:hidden=24", "task": "digits:rot90=3", "split": "unseen-arch"}, "tag it unseen-both"),
    ({"arch": "mlp:hidden=24", "task": "digits", "split": "unseen-task"}, "tag it unseen-both"),
    ({"arch": "cnn1d:channels=4", "task": "mnist1d", "split": "unseen-arch"}, "no cnn1d member"),
])  # fmt: skip
def test_a_case_that_leaks_or_mislabels_its_split_is_refused_naming_it(case, needle):
    with pytest.raises(SuiteError, match="does not match corpus") as error:
        check_splits(load_suite(suite_dict(cases=[case])), CORPUS)
    assert needle in str(error.value) and case["arch"] in str(error.value)


def test_every_problem_is_listed_at_once():
    cases = [{"arch": "mlp:hidden=16", "task": "digits", "split": "unseen-arch"},
             {"arch": "mlp:hidden=16", "task": "mnist1d", "split": "unseen-task"}]
    with pytest.raises(SuiteError) as error:
        check_splits(load_suite(suite_dict(cases=cases)), CORPUS)
    assert "case 0" in str(error.value) and "case 1" in str(error.value)


def test_external_members_do_not_count_as_leaks():
    corpus = pd.concat([CORPUS, manifest(("mlp:hidden=24", "digits", 0)).assign(family="external", member="ext")])
    check_splits(load_suite(suite_dict(cases=[{"arch": "mlp:hidden=24", "task": "digits", "split": "unseen-arch"}])), corpus)


# --------------------------------------------------------------------------- fuzzing
_keys = st.sampled_from(["name", "corpus", "seeds", "methods", "cases", "recipe", "recipes", "samples", "guidance",
                         "ddim_steps", "target_fraction", "arch", "task", "split", "bogus"])
_leaves = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20) | \
    st.sampled_from(["mlp:hidden=16", "digits", "seen", "unseen-arch", "random", "generated", "cnn2d", "mnist1d"])
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
                       max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(_keys, _values, max_size=8) | _values)
def test_fuzzed_suites_give_a_suite_or_a_suite_error(value):
    if not isinstance(value, dict):
        value = {"cases": value}
    try:
        suite = load_suite({"name": "fuzz", **value} if "name" not in value else value)
    except SuiteError:
        return
    assert suite.cases and "random" in suite.methods  # a suite that loads is a runnable one


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_suite_files_give_a_suite_or_a_suite_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "suite.yaml"
    path.write_text(text)
    try:
        load_suite(path)
    except SuiteError:
        pass
