import pytest
import torch

from weightgen.models import build_model
from weightgen.rebalance import chain_layers, rebalance, relu_chain

CHAINS = [("mlp:hidden=16x8", (40,)), ("cnn1d:channels=4x6", (40,)), ("cnn2d:channels=3x5", (8, 8))]


def _scaled(arch, shape, seed=1):
    """A network whose layers sit at the wrong scales (3x, 0.2x, ...), as a tuned sample's can."""
    state = build_model(arch, shape, seed=seed).state_dict()
    for i, (w, b) in enumerate(chain_layers(state)):
        factor = (3.0, 0.2, 5.0)[i % 3]
        state[w] = state[w] * factor
        if b:
            state[b] = state[b] * factor + 0.5
    return state


def _logits(arch, shape, state, x):
    model = build_model(arch, shape, seed=0)
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("arch,shape", CHAINS)
def test_logits_mode_keeps_the_function_and_sets_every_hidden_layer_to_the_reference_scale(arch, shape):
    state, reference = _scaled(arch, shape), build_model(arch, shape, seed=7).state_dict()
    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(0))
    out = rebalance(state, arch, reference, "logits")
    torch.testing.assert_close(_logits(arch, shape, out, x), _logits(arch, shape, state, x), rtol=1e-4, atol=1e-5)
    chain = chain_layers(reference)
    for w, _ in chain[:-1]:
        assert out[w].std() == pytest.approx(float(reference[w].std()), rel=1e-5)
    assert out[chain[-1][0]].std() != pytest.approx(float(reference[chain[-1][0]].std()), rel=1e-2)


@pytest.mark.parametrize("arch,shape", CHAINS)
def test_predictions_mode_scales_the_logits_by_one_positive_number(arch, shape):
    state, reference = _scaled(arch, shape), build_model(arch, shape, seed=7).state_dict()
    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(0))
    out = rebalance(state, arch, reference, "predictions")
    before, after = _logits(arch, shape, state, x), _logits(arch, shape, out, x)
    ratio = after / before
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.median())), rtol=1e-3, atol=1e-4)
    assert torch.equal(after.argmax(1), before.argmax(1))
    for w, _ in chain_layers(reference):
        assert out[w].std() == pytest.approx(float(reference[w].std()), rel=1e-5)


def test_non_chains_are_left_as_they_are_and_the_input_is_never_changed():
    assert not relu_chain("transformer:dim=16,depth=1,heads=2,patch=8")
    assert not relu_chain("mlp:hidden=8,activation=gelu") and not relu_chain("cnn1d:channels=4,norm=batch")
    arch, shape = "transformer:dim=16,depth=1,heads=2,patch=8", (40,)
    state = build_model(arch, shape, seed=1).state_dict()
    out = rebalance(state, arch, build_model(arch, shape, seed=2).state_dict())
    assert all(torch.equal(out[k], state[k]) for k in state)
    state = _scaled(*CHAINS[0])
    kept = {k: v.clone() for k, v in state.items()}
    rebalance(state, CHAINS[0][0], build_model(*CHAINS[0], seed=7).state_dict())
    assert all(torch.equal(kept[k], state[k]) for k in state)


def test_an_unknown_mode_is_refused():
    state = build_model(*CHAINS[0], seed=0).state_dict()
    with pytest.raises(ValueError, match="unknown rebalance mode 'loud'"):
        rebalance(state, CHAINS[0][0], state, "loud")
