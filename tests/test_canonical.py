"""Canonical unit order: the function is unchanged, the order is the documented one, and it is a fixed point."""

from __future__ import annotations

import pytest
import torch

from weightgen.canonical import canonicalize
from weightgen.models import build_model

CASES = [("mlp:hidden=8x6x5", (40,)), ("cnn1d:channels=4x6x3", (40,)), ("cnn1d:channels=4x6,norm=batch", (40,)),
         ("cnn2d:channels=3x5", (8, 8)), ("cnn2d:channels=3x5,norm=batch", (8, 8))]


def _trained_like(arch, shape, seed=0):
    """A network whose units differ in importance, and batch norm statistics that are not the defaults."""
    model = build_model(arch, shape, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                p.mul_(1 + torch.rand(p.shape, generator=g)).add_(0.1 * torch.rand(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("arch, shape", CASES)
def test_the_network_computes_the_same_function(arch, shape):
    model = _trained_like(arch, shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, *shape)
    expected = model(x)
    canonical = canonicalize(model.state_dict(), arch)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is left alone
    assert any(not torch.equal(before[k], canonical[k]) for k in before)  # something was actually reordered
    model.load_state_dict(canonical)
    assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize("arch, shape", CASES)
def test_units_are_sorted_by_importance_and_canonicalising_twice_changes_nothing(arch, shape):
    canonical = canonicalize(_trained_like(arch, shape, seed=1).state_dict(), arch)
    first = next(k for k, v in canonical.items() if v.ndim >= 2)
    following = [k for k, v in canonical.items() if v.ndim >= 2][1]
    units = canonical[first].shape[0]
    incoming = canonical[following].reshape(canonical[following].shape[0], units, -1).transpose(0, 1).reshape(units, -1)
    importance = canonical[first].reshape(units, -1).norm(dim=1) * incoming.norm(dim=1)
    assert torch.all(importance[:-1] >= importance[1:])
    again = canonicalize(canonical, arch)
    assert all(torch.equal(again[k], canonical[k]) for k in canonical)


def test_two_permuted_copies_of_one_network_become_identical():
    arch = "mlp:hidden=7x5"
    model = _trained_like(arch, (40,))
    state = model.state_dict()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    permuted = dict(state, **{"net.1.weight": state["net.1.weight"][perm], "net.1.bias": state["net.1.bias"][perm],
                              "net.3.weight": state["net.3.weight"][:, perm]})
    a, b = canonicalize(state, arch), canonicalize(permuted, arch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_transformers_are_returned_unchanged():
    arch = "transformer:dim=8,depth=1,heads=2,patch=8"
    state = build_model(arch, (40,), seed=0).state_dict()
    assert all(torch.equal(v, canonicalize(state, arch)[k]) for k, v in state.items())
