"""Specs: canonical strings round-trip, dict/file inputs, and every bad input is a SpecError naming the culprit."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightgen.specs import (
    DATASETS,
    FAMILIES,
    CNN1dSpec,
    CNN2dSpec,
    DigitsTask,
    MLPSpec,
    MNIST1DTask,
    Recipe,
    SpecError,
    TransformerSpec,
    parse_arch,
    parse_recipe,
    parse_task,
)

SLUG = re.compile(r"^[A-Za-z0-9._-]+$")

ARCH_STRINGS = [
    "mlp",
    "mlp:hidden=64",
    "mlp:hidden=",
    "mlp:hidden=32x16x8,activation=tanh",
    "cnn1d:channels=8x16,kernel=3,stride=1,norm=batch",
    "cnn2d:channels=4,kernel=5",
    "transformer:dim=16,depth=1,heads=2,patch=8,mlp_ratio=4",
]
TASK_STRINGS = [
    "mnist1d",
    "mnist1d:noise=0.5,iid_noise=0.0,shift=10,scale=0.1,shear=1.5,template_seed=3,label_perm=2,samples=1000,seed=7",
    "digits",
    "digits:noise=0.3,rot90=2,flip=true,label_perm=5,seed=1",
]


# --------------------------------------------------------------------------- canonical strings
@pytest.mark.parametrize("text", ARCH_STRINGS)
def test_arch_string_round_trips_and_is_canonical(text):
    spec = parse_arch(text)
    assert parse_arch(spec.to_string()) == spec
    assert spec.to_string() == text  # these are written in canonical form already
    assert str(spec) == text


@pytest.mark.parametrize("text", TASK_STRINGS)
def test_task_string_round_trips_and_is_canonical(text):
    spec = parse_task(text)
    assert parse_task(spec.to_string()) == spec
    assert spec.to_string() == text


def test_defaults_are_omitted_and_fields_come_in_declaration_order():
    assert MLPSpec().to_string() == "mlp"
    assert parse_arch("mlp:hidden=100x100,activation=relu").to_string() == "mlp"
    assert parse_arch("mlp:activation=gelu,hidden=100x100").to_string() == "mlp:activation=gelu"
    assert parse_arch("transformer:heads=2,dim=16").to_string() == "transformer:dim=16,heads=2"
    assert parse_task("mnist1d:seed=42,noise=0.25").to_string() == "mnist1d"
    assert parse_task("digits:flip=false,rot90=1").to_string() == "digits:rot90=1"


def test_whitespace_and_case_of_booleans_are_tolerated():
    assert parse_task(" digits: flip = TRUE , rot90 = 3 ") == DigitsTask(flip=True, rot90=3)


def test_single_hidden_width_is_a_one_layer_list():
    assert parse_arch("mlp:hidden=64").hidden == [64]
    assert parse_arch({"family": "mlp", "hidden": 64}).hidden == [64]


@pytest.mark.parametrize("text", ["mlp:hidden=none", "mlp:hidden="])
def test_hidden_none_is_a_linear_classifier(text):
    spec = parse_arch(text)
    assert spec.hidden == []
    assert parse_arch(spec.to_string()) == spec


def test_parsed_values_have_field_types():
    task = parse_task("mnist1d:noise=1,shift=3")
    assert task.noise == 1.0 and isinstance(task.noise, float)
    assert task.shift == 3 and isinstance(task.shift, int)


def test_spec_objects_are_returned_as_is():
    spec = CNN2dSpec(channels=[4])
    assert parse_arch(spec) is spec
    task = MNIST1DTask(noise=0.5)
    assert parse_task(task) is task


# --------------------------------------------------------------------------- dicts and files
def test_dict_input():
    assert parse_arch({"family": "cnn1d", "channels": [8, 8], "norm": "batch"}) == CNN1dSpec(channels=[8, 8], norm="batch")
    assert parse_task({"dataset": "digits", "rot90": 1}) == DigitsTask(rot90=1)
    assert parse_arch(MLPSpec(hidden=[5]).model_dump()) == MLPSpec(hidden=[5])


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_file_input(tmp_path, suffix):
    path = tmp_path / f"arch{suffix}"
    path.write_text("family: transformer\ndim: 24\nheads: 3\n")
    expected = TransformerSpec(dim=24, heads=3)
    assert parse_arch(path) == expected
    assert parse_arch(str(path)) == expected


def test_json_file_input(tmp_path):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"dataset": "mnist1d", "noise": 0.1, "template_seed": 4}))
    assert parse_task(path) == MNIST1DTask(noise=0.1, template_seed=4)
    assert parse_task(str(path)) == MNIST1DTask(noise=0.1, template_seed=4)


def test_yaml_file_holding_a_spec_string(tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text("'mlp:hidden=8x8'\n")
    assert parse_arch(path) == MLPSpec(hidden=[8, 8])


def test_slug_is_file_name_safe():
    for text in ARCH_STRINGS:
        assert SLUG.match(parse_arch(text).slug), text
    for text in TASK_STRINGS:
        assert SLUG.match(parse_task(text).slug), text
    assert parse_arch("mlp:hidden=64x64").slug == "mlp-hidden_64x64"
    assert parse_task("mnist1d:noise=1e-05").slug == "mnist1d-noise_1e-05"


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "parse, value, pattern",
    [
        (parse_arch, "resnet:depth=3", r"unknown family 'resnet'.*mlp"),
        (parse_arch, {"family": "vgg"}, r"unknown family 'vgg'"),
        (parse_arch, {"hidden": [3]}, r"unknown family None"),
        (parse_task, "cifar10", r"unknown dataset 'cifar10'.*digits"),
        (parse_arch, "mlp:hidden=-5", r"hidden"),
        (parse_arch, "mlp:hidden=8x0", r"hidden\.1"),
        (parse_arch, "cnn1d:channels=5000", r"channels"),
        (parse_arch, "transformer:dim=30,heads=4", r"dim=30 is not divisible by heads=4"),
        (parse_arch, "mlp:depth=3", r"depth.*[Ee]xtra"),
        (parse_task, {"dataset": "digits", "colour": True}, r"colour"),
        (parse_task, "digits:rot90=4", r"rot90"),
        (parse_task, "mnist1d:noise=abc", r"noise"),
        (parse_arch, "mlp:hidden", r"'hidden' is not key=value"),
        (parse_arch, "mlp:=5", r"'=5' is not key=value"),
        (parse_arch, "mlp:hidden=3,hidden=4", r"'hidden' given twice"),
        (parse_arch, "mlp:family=mlp", r"'family' given twice"),
        (parse_arch, "", r"empty spec string"),
        (parse_arch, ":hidden=3", r"empty spec string"),
        (parse_arch, 42, r"not int"),
        (parse_task, ["digits"], r"not list"),
        (parse_task, None, r"not NoneType"),
    ],
)
def test_errors_name_the_culprit(parse, value, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse(value)


def test_missing_file_is_a_spec_error(tmp_path):
    for value in (tmp_path / "nope.yaml", str(tmp_path / "nope.json")):
        with pytest.raises(SpecError, match=r"cannot read spec file .*nope"):
            parse_arch(value)


def test_non_text_file_is_a_spec_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(SpecError, match="cannot read spec file"):
        parse_arch(path)


def test_bad_yaml_and_json_are_spec_errors(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("family: [mlp\nhidden: 3\n")
    with pytest.raises(SpecError, match=r"bad\.yaml is not valid YAML"):
        parse_arch(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'dataset': 'digits'")
    with pytest.raises(SpecError, match=r"bad\.json is not valid JSON"):
        parse_task(bad_json)


def test_file_holding_a_non_mapping_is_a_spec_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- mlp\n- cnn1d\n")
    with pytest.raises(SpecError, match="must be a string, a dict"):
        parse_arch(path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="not NoneType"):
        parse_arch(empty)


# --------------------------------------------------------------------------- recipes
def test_parse_recipe_accepts_none_dict_and_recipe():
    assert parse_recipe(None) == Recipe()
    recipe = parse_recipe({"lr": 0.01, "steps": 50})
    assert (recipe.lr, recipe.steps, recipe.batch_size) == (0.01, 50, 100)
    assert parse_recipe(recipe) is recipe


@pytest.mark.parametrize(
    "value, pattern",
    [
        ("lr=0.1", r"must be a mapping, not str"),
        ([("lr", 0.1)], r"must be a mapping, not list"),
        ({"lr": 0}, r"lr"),
        ({"lr": 2.0}, r"lr"),
        ({"batch_size": 0}, r"batch_size"),
        ({"steps": -1}, r"steps"),
        ({"eval_every": 0}, r"eval_every"),
        ({"momentum": 0.9}, r"momentum"),
    ],
)
def test_parse_recipe_errors(value, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_recipe(value)


# --------------------------------------------------------------------------- property-based
FIELD_NAMES = sorted(
    {name for cls in (MLPSpec, CNN1dSpec, CNN2dSpec, TransformerSpec, MNIST1DTask, DigitsTask) for name in cls.model_fields}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
value_text = st.text(alphabet="0123456789x-.+eE_ ntrufalsoXb²٣:=,", max_size=12) | st.lists(
    # list-shaped values whose parts look numeric to some test but not to int(): the dangerous cases
    st.sampled_from(["1", "64", " 7 ", "-3", "--5", "²", "٣", "1.5", "", "9" * 5000]), min_size=2, max_size=4
).map("x".join)


@st.composite
def spec_like_strings(draw):
    """Strings shaped like specs (so the fuzzing reaches validation), with junk in every slot."""
    head = draw(st.sampled_from(FAMILIES + DATASETS) | st.text(max_size=8))
    pairs = draw(st.lists(st.tuples(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), value_text), max_size=5))
    sep = draw(st.sampled_from([":", "", "::"]))
    return head + sep + ",".join(f"{k}={v}" if draw(st.booleans()) else f"{k}{v}" for k, v in pairs)


@st.composite
def spec_like_dicts(draw):
    head_key = draw(st.sampled_from(["family", "dataset"]))
    out = {head_key: draw(st.sampled_from(FAMILIES + DATASETS) | json_values)}
    out.update(draw(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values, max_size=5)))
    return out


def _spec_or_spec_error(parse, value):
    try:
        result = parse(value)
    except SpecError as exc:
        assert str(exc)
        return
    assert isinstance(result, (MLPSpec, CNN1dSpec, CNN2dSpec, TransformerSpec, MNIST1DTask, DigitsTask))
    assert parse(result.to_string()) == result  # anything accepted has a canonical string


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text() | spec_like_strings() | spec_like_dicts() | json_values)
def test_fuzzed_inputs_give_a_spec_or_a_spec_error(value):
    _spec_or_spec_error(parse_arch, value)
    _spec_or_spec_error(parse_task, value)


widths = st.integers(1, 4096)
units = st.floats(0.0, 10.0, allow_nan=False)
seeds = st.integers(0, 2**40)


@st.composite
def transformer_specs(draw):
    heads = draw(st.integers(1, 16))
    dim = heads * draw(st.integers(max(1, -(-4 // heads)), 1024 // heads))
    return TransformerSpec(dim=dim, heads=heads, depth=draw(st.integers(1, 12)), patch=draw(st.integers(1, 64)),
                           mlp_ratio=draw(st.integers(1, 8)))


arch_specs = st.one_of(
    st.builds(MLPSpec, hidden=st.lists(widths, max_size=8), activation=st.sampled_from(["relu", "gelu", "tanh"])),
    st.builds(CNN1dSpec, channels=st.lists(widths, min_size=1, max_size=6), kernel=st.integers(1, 15),
              stride=st.integers(1, 3), norm=st.sampled_from(["none", "batch"])),
    st.builds(CNN2dSpec, channels=st.lists(widths, min_size=1, max_size=6), kernel=st.integers(1, 7),
              norm=st.sampled_from(["none", "batch"])),
    transformer_specs(),
)
task_specs = st.one_of(
    st.builds(MNIST1DTask, noise=units, iid_noise=units, shift=st.integers(0, 60), scale=units, shear=units,
              template_seed=seeds, label_perm=seeds, samples=st.integers(100, 100_000), seed=seeds),
    st.builds(DigitsTask, noise=units, rot90=st.integers(0, 3), flip=st.booleans(), label_perm=seeds, seed=seeds),
)


@settings(max_examples=400, deadline=None)
@given(case=st.one_of(arch_specs.map(lambda s: (s, parse_arch)), task_specs.map(lambda s: (s, parse_task))))
def test_generated_specs_round_trip(case):
    spec, parse = case
    assert parse(spec.to_string()) == spec
    assert parse(spec.model_dump()) == spec
    assert SLUG.match(spec.slug)


@settings(max_examples=100, deadline=None)
@given(a=arch_specs, b=arch_specs)
def test_distinct_specs_have_distinct_strings(a, b):
    assert (a == b) == (a.to_string() == b.to_string())
