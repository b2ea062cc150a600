"""The training loop: anytime curves, exact FLOP counts, bit-for-bit reproducibility, independent checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from weightgen.data import load_task
from weightgen.models import build_model
from weightgen.specs import Recipe
from weightgen.training import count_eval_flops, count_step_flops, evaluate, train




@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


def run(digits, arch="mlp:hidden=16", init_seed=0, seed=0, **recipe):
    model = build_model(arch, digits.input_shape, seed=init_seed)
    recipe = Recipe(**{"batch_size": 32, "steps": 30, "eval_every": 10, **recipe})
    return model, train(model, digits, recipe, seed=seed)


def curve_key(result):
    """Curve as comparable tuples (the step-0 train loss is NaN, which never compares equal)."""
    return [(p.step, None if math.isnan(p.train_loss) else p.train_loss, p.val_loss, p.val_acc) for p in result.curve]


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- curve
@pytest.mark.parametrize("steps, expected", [(25, [0, 10, 20, 25]), (20, [0, 10, 20]), (0, [0]), (3, [0, 3])])
def test_curve_steps(digits, steps, expected):
    _, result = run(digits, steps=steps)
    assert [p.step for p in result.curve] == expected
    assert math.isnan(result.curve[0].train_loss)
    assert all(math.isfinite(p.train_loss) and p.train_loss > 0 for p in result.curve[1:])
    assert all(0 <= p.val_acc <= 1 and p.val_loss > 0 for p in result.curve)
    assert result.final is result.curve[-1]


def test_on_eval_sees_every_point(digits):
    model = build_model("mlp:hidden=8", digits.input_shape, seed=0)
    seen = []
    result = train(model, digits, Recipe(batch_size=32, steps=12, eval_every=5), on_eval=seen.append)
    assert [p.step for p in seen] == [0, 5, 10, 12]
    assert len(seen) == len(result.curve) and all(a is b for a, b in zip(seen, result.curve))


# --------------------------------------------------------------------------- FLOPs
def mlp_step_flops(batch, widths):
    """FlopCounterMode counts 2·B·in·out per Linear forward (addmm) and, backward, 2·B·in·out for the weight
    gradient plus 2·B·in·out for the input gradient — except for the first layer, whose input (the data) needs
    no gradient, so autograd skips that matmul. Bias gradients, activations and the loss are not counted."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return 6 * batch * sum(i * o for i, o in pairs) - 2 * batch * pairs[0][0] * pairs[0][1]


@pytest.mark.parametrize("arch, widths", [("mlp:hidden=16x8", [64, 16, 8, 10]), ("mlp:hidden=none", [64, 10]),
                                          ("mlp:hidden=32,activation=tanh", [64, 32, 10])])
def test_mlp_flops_match_the_analytic_count(digits, arch, widths):
    _, result = run(digits, arch=arch, batch_size=32, steps=4, eval_every=2)
    assert result.flops_per_step == mlp_step_flops(32, widths)
    assert result.eval_flops == 2 * len(digits.val) * sum(i * o for i, o in zip(widths[:-1], widths[1:]))
    assert result.train_flops == result.flops_per_step * 4


def test_batch_larger_than_train_split_is_clipped(digits):
    _, result = run(digits, arch="mlp:hidden=none", batch_size=5000, steps=2, eval_every=1)
    assert result.flops_per_step == mlp_step_flops(len(digits.train), [64, 10])


def test_flop_counting_leaves_the_model_untouched(digits):
    model = build_model("cnn2d:channels=4,norm=batch", digits.input_shape, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_step_flops(model, digits.train, 16) > 0
    assert count_eval_flops(model, digits.val) > 0
    assert states_equal(model.state_dict(), before)  # batch-norm statistics did not absorb the batches
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- determinism
def test_same_seed_is_bit_identical_and_other_seeds_differ(digits):
    model_a, a = run(digits, seed=3)
    model_b, b = run(digits, seed=3)
    model_c, c = run(digits, seed=4)  # same init, other batch order
    model_d, d = run(digits, init_seed=1, seed=3)  # other init, same batch order
    assert curve_key(a) == curve_key(b)
    assert (a.test_loss, a.test_acc) == (b.test_loss, b.test_acc)
    assert states_equal(model_a.state_dict(), model_b.state_dict())
    for model, result in ((model_c, c), (model_d, d)):
        assert curve_key(result) != curve_key(a)
        assert not states_equal(model.state_dict(), model_a.state_dict())


def test_transformer_training_is_deterministic(digits):
    model_a, a = run(digits, arch="transformer:dim=8,heads=2,depth=1,patch=8", steps=6, eval_every=3)
    model_b, b = run(digits, arch="transformer:dim=8,heads=2,depth=1,patch=8", steps=6, eval_every=3)
    assert curve_key(a) == curve_key(b)
    assert states_equal(model_a.state_dict(), model_b.state_dict())


# --------------------------------------------------------------------------- checkpoints
def test_checkpoints_at_exactly_the_requested_steps(digits):
    arch = "cnn2d:channels=4,norm=batch"
    init = build_model(arch, digits.input_shape, seed=0).state_dict()
    model = build_model(arch, digits.input_shape, seed=0)
    result = train(model, digits, Recipe(batch_size=32, steps=30, eval_every=10), checkpoint_steps=[30, 0, 7, 7])
    assert sorted(result.checkpoints) == sorted(result.checkpoint_metrics) == [0, 7, 30]
    assert [p.step for p in result.curve] == [0, 7, 10, 20, 30]  # a checkpoint step is also evaluated
    assert states_equal(result.checkpoints[0], init)  # step 0 is the init, batch-norm buffers included
    assert states_equal(result.checkpoints[30], model.state_dict())
    assert not states_equal(result.checkpoints[7], result.checkpoints[30])
    by_step = {p.step: p for p in result.curve}
    for step, metrics in result.checkpoint_metrics.items():
        assert set(metrics) == {"val_acc", "val_loss", "test_acc", "test_loss"}
        assert metrics["val_acc"] == by_step[step].val_acc and metrics["val_loss"] == by_step[step].val_loss
    assert (result.checkpoint_metrics[30]["test_loss"], result.checkpoint_metrics[30]["test_acc"]) == (
        result.test_loss, result.test_acc)
    # A checkpoint reloaded reproduces its metrics.
    probe = build_model(arch, digits.input_shape, seed=99)
    probe.load_state_dict(result.checkpoints[7])
    val_loss, val_acc = evaluate(probe, digits.val)
    assert val_acc == result.checkpoint_metrics[7]["val_acc"]
    assert val_loss == pytest.approx(result.checkpoint_metrics[7]["val_loss"], rel=1e-6)
    # The copies are independent of the live model.
    saved = {k: v.clone() for k, v in result.checkpoints[30].items()}
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()
    assert states_equal(result.checkpoints[30], saved)
    assert all(v.data_ptr() != p.data_ptr() for v, p in zip(result.checkpoints[30].values(), model.state_dict().values()))


@pytest.mark.parametrize("steps", [[-1], [31], [0, 10, 31]])
def test_out_of_range_checkpoint_steps_raise_before_training(digits, steps):
    model = build_model("mlp:hidden=8", digits.input_shape, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="outside 0..30"):
        train(model, digits, Recipe(batch_size=32, steps=30, eval_every=10), checkpoint_steps=steps)
    assert states_equal(model.state_dict(), before)


# --------------------------------------------------------------------------- learning and evaluation
def test_short_run_on_digits_learns(digits):
    model, result = run(digits, arch="mlp:hidden=32", batch_size=100, steps=200, eval_every=50)
    assert result.curve[0].val_acc < 0.3
    assert result.final.val_acc > 0.8
    assert result.test_acc > 0.8
    assert result.curve[-1].train_loss < result.curve[1].train_loss
    assert result.train_flops == result.flops_per_step * 200
    assert result.wall_time > 0


def test_evaluate_restores_mode_and_matches_a_manual_pass(digits):
    model = build_model("cnn2d:channels=4,norm=batch", digits.input_shape, seed=0)
    with torch.no_grad():
        model(digits.train.x[:64])  # move the running statistics away from their init
    for training in (True, False):
        model.train(training)
        loss, acc = evaluate(model, digits.val, batch_size=7)  # uneven batches
        assert model.training is training
        model.eval()
        with torch.no_grad():
            logits = model(digits.val.x)
        assert loss == pytest.approx(F.cross_entropy(logits, digits.val.y).item(), rel=1e-5)
        assert acc == (logits.argmax(1) == digits.val.y).sum().item() / len(digits.val)
