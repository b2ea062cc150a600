"""Counting FLOPs (weightgen.flops): work that recurs with the same shapes, counted once per key."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from weightgen.flops import RepeatedFlops


def _work(size: int) -> None:
    a = torch.randn(size, size, requires_grad=True)
    (a @ a).sum().backward()


def test_repeated_work_is_counted_once_per_key_and_added_each_time():
    with FlopCounterMode(display=False) as once:
        _work(8)
    with FlopCounterMode(display=False) as small:
        _work(4)
    counted = RepeatedFlops()
    with FlopCounterMode(display=False) as everything:
        for key, size in (("a", 8), ("b", 4), ("a", 8), ("a", 8), ("b", 4)):
            with counted.count(key):
                _work(size)
    assert once.get_total_flops() > small.get_total_flops() > 0
    assert counted.total == 3 * once.get_total_flops() + 2 * small.get_total_flops() == everything.get_total_flops()
