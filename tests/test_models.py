"""Models: every family builds on the inputs it supports, refuses the rest, seeds its init, and names tensors plainly."""

from __future__ import annotations

import pytest
import torch

from weightgen.models import build_model, count_parameters
from weightgen.specs import SpecError

MNIST1D, DIGITS = (40,), (8, 8)
B = 5

COMPATIBLE = [
    ("mlp", MNIST1D),
    ("mlp", DIGITS),
    ("mlp:hidden=none", MNIST1D),
    ("transformer", MNIST1D),
    ("transformer", DIGITS),
    ("transformer:dim=12,heads=3,depth=1,patch=8", MNIST1D),
    ("cnn1d", MNIST1D),
    ("cnn1d:channels=4x4x4x4x4x4,stride=3,kernel=4,norm=batch", MNIST1D),
    ("cnn2d", DIGITS),
    ("cnn2d:channels=4x6,kernel=2,norm=batch", DIGITS),  # even kernel: same-padding grows the map by one
    ("cnn2d:channels=3,kernel=7", DIGITS),
]


@pytest.mark.parametrize("arch, shape", COMPATIBLE)
def test_builds_and_maps_a_batch_to_logits(arch, shape):
    model = build_model(arch, shape, seed=0)
    x = torch.randn(B, *shape)
    logits = model(x)
    assert logits.shape == (B, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # and every parameter takes part
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (B, 10)


def test_num_classes_sets_the_output_width():
    assert build_model("mlp:hidden=4", MNIST1D, num_classes=3, seed=0)(torch.randn(2, 40)).shape == (2, 3)


@pytest.mark.parametrize(
    "arch, shape, pattern",
    [
        ("cnn1d", DIGITS, r"cnn1d needs sequence inputs.*\(8, 8\)"),
        ("cnn2d", MNIST1D, r"cnn2d needs image inputs.*\(40,\)"),
        ("transformer:patch=3", MNIST1D, r"patch=3 does not divide the input length 40"),
        ("transformer:patch=5", DIGITS, r"patch=5 does not divide the input length 64"),
        ("resnet", MNIST1D, r"unknown family 'resnet'"),
    ],
)
def test_incompatible_pairs_raise_spec_error(arch, shape, pattern):
    with pytest.raises(SpecError, match=pattern):
        build_model(arch, shape, seed=0)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch, shape", [("mlp:hidden=16", MNIST1D), ("cnn1d:channels=4", MNIST1D),
                                         ("cnn2d:channels=4", DIGITS), ("transformer:dim=8,heads=2,depth=1", DIGITS)])
def test_seed_fixes_the_init(arch, shape):
    a = build_model(arch, shape, seed=1).state_dict()
    b = build_model(arch, shape, seed=1).state_dict()
    c = build_model(arch, shape, seed=2).state_dict()
    assert states_equal(a, b)
    assert a.keys() == c.keys()
    assert not states_equal(a, c)
    trainable = [k for k in a if a[k].is_floating_point() and "norm" not in k and not k.endswith("running_var")]
    assert all(not torch.equal(a[k], c[k]) for k in trainable if a[k].numel() > 1 and a[k].std() > 0)


def test_build_model_leaves_global_torch_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_model("transformer:dim=8,heads=2,depth=1", MNIST1D, seed=7)
    build_model("mlp", DIGITS, seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), expected)


def test_mlp_state_dict_names_and_shapes():
    state = build_model("mlp:hidden=16x8", MNIST1D, seed=0).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "net.1.weight": (16, 40), "net.1.bias": (16,),
        "net.3.weight": (8, 16), "net.3.bias": (8,),
        "net.5.weight": (10, 8), "net.5.bias": (10,),
    }
    assert list(build_model("mlp:hidden=none", DIGITS, seed=0).state_dict()) == ["net.1.weight", "net.1.bias"]


def test_transformer_state_dict_names_and_shapes():
    model = build_model("transformer:dim=16,heads=2,depth=2,patch=4,mlp_ratio=2", MNIST1D, seed=0)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["pos_embedding"] == (1, 10, 16)
    assert shapes["embed.weight"] == (16, 4)
    for i in (0, 1):
        assert shapes[f"blocks.{i}.self_attn.in_proj_weight"] == (48, 16)
        assert shapes[f"blocks.{i}.self_attn.out_proj.weight"] == (16, 16)
        assert shapes[f"blocks.{i}.linear1.weight"] == (32, 16)
        assert shapes[f"blocks.{i}.linear2.weight"] == (16, 32)
        assert shapes[f"blocks.{i}.norm1.weight"] == (16,)
    assert "blocks.2.self_attn.in_proj_weight" not in shapes
    assert shapes["norm.weight"] == (16,) and shapes["head.weight"] == (10, 16)
    assert count_parameters(model) == sum(v.numel() for v in model.state_dict().values())


@pytest.mark.parametrize("arch, shape, conv", [("cnn1d:channels=4x6,norm=batch", MNIST1D, (4, 1, 5)),
                                               ("cnn2d:channels=4x6,norm=batch", DIGITS, (4, 1, 3, 3))])
def test_batch_norm_buffers_are_in_the_state_dict(arch, shape, conv):
    model = build_model(arch, shape, seed=0)
    state = model.state_dict()
    assert tuple(state["features.0.weight"].shape) == conv
    for i, c in ((1, 4), (4, 6)):  # conv, norm, relu per layer
        assert tuple(state[f"features.{i}.running_mean"].shape) == (c,)
        assert tuple(state[f"features.{i}.running_var"].shape) == (c,)
        assert f"features.{i}.num_batches_tracked" in state
        assert f"features.{i}.weight" in state
    plain = build_model(arch.replace(",norm=batch", ""), shape, seed=0).state_dict()
    assert not any("running" in k or "num_batches" in k for k in plain)
    assert count_parameters(model) < sum(v.numel() for v in state.values())  # buffers are not parameters
