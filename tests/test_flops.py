"""Counting FLOPs (weightgen.flops): attention and inference fast paths seen on CPU, and recurring work counted once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from weightgen.flops import RepeatedFlops, counting_flops


def _work(size: int) -> None:
    a = torch.randn(size, size, requires_grad=True)
    (a @ a).sum().backward()


def test_repeated_work_is_counted_once_per_key_and_added_each_time():
    with counting_flops() as once:
        _work(8)
    with counting_flops() as small:
        _work(4)
    counted = RepeatedFlops()
    with counting_flops() as everything:
        for key, size in (("a", 8), ("b", 4), ("a", 8), ("a", 8), ("b", 4)):
            with counted.count(key):
                _work(size)
    assert once.get_total_flops() > small.get_total_flops() > 0
    assert counted.total == 3 * once.get_total_flops() + 2 * small.get_total_flops() == everything.get_total_flops()


@pytest.mark.parametrize("masked", [False, True])
def test_attention_on_cpu_is_counted_as_its_matmuls(masked):
    # torch's own counter gives the CPU kernel 0 FLOPs. Forward: Q·Kᵀ and (softmax)·V, 2·N·N·d each per head;
    # backward: Q·Kᵀ again, then the gradients of V, of the scores, of Q and of K, five of the same size.
    b, h, n, d = 2, 3, 40, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    mask = None
    if masked:  # every query attends to at least one key
        mask = (torch.rand(b, 1, 1, n) > 0.2) | (torch.arange(n) == 0)
    matmul = 2 * b * h * n * n * d
    with counting_flops() as forward:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with counting_flops() as backward:
        out.sum().backward()
    assert forward.get_total_flops() == 2 * matmul
    assert backward.get_total_flops() == 5 * matmul


def tiny_transformer_forward_flops(batch: int, tokens: int, dim: int, depth: int, patch: int, mlp_ratio: int,
                                   classes: int = 10) -> int:
    """The matmuls of weightgen.models.TinyTransformer's forward pass, by hand (2 FLOPs a multiply-add)."""
    rows = batch * tokens
    block = (2 * rows * dim * 3 * dim  # Q, K and V
             + 2 * 2 * batch * tokens * tokens * dim  # scores and their weighted sum, over all heads
             + 2 * rows * dim * dim  # the attention's output projection
             + 2 * 2 * rows * dim * mlp_ratio * dim)  # the feed-forward's two layers
    return 2 * rows * patch * dim + depth * block + 2 * batch * dim * classes


def test_a_zoo_transformer_is_counted_whole_in_training_and_in_inference():
    # In eval mode under no_grad nn.TransformerEncoderLayer runs one fused op, which torch's counter gives 0 FLOPs;
    # counting_flops turns that fast path off while it counts, and back on after.
    from weightgen.models import build_model
    from weightgen.specs import parse_arch

    model = build_model(parse_arch("transformer:dim=16,depth=2,heads=2,patch=8"), (8, 8), seed=0)
    x = torch.randn(5, 8, 8)
    expected = tiny_transformer_forward_flops(5, 64 // 8, 16, 2, 8, 2)
    with counting_flops() as training:
        model.train()(x)
    with counting_flops() as inference, torch.no_grad():
        model.eval()(x)
    assert training.get_total_flops() == inference.get_total_flops() == expected
    assert torch.backends.mha.get_fastpath_enabled()


def test_the_fast_path_setting_is_restored_when_the_counted_work_fails():
    before = torch.backends.mha.get_fastpath_enabled()
    try:
        for setting in (True, False):
            torch.backends.mha.set_fastpath_enabled(setting)
            with pytest.raises(RuntimeError, match="inside"):
                with counting_flops():
                    assert not torch.backends.mha.get_fastpath_enabled()
                    raise RuntimeError("inside")
            assert torch.backends.mha.get_fastpath_enabled() is setting
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
