"""benchmarks/residual_branch_probe.py: which tensors its starts scale, and what its stream statistics read."""

import importlib.util
from pathlib import Path

import pytest
import torch

from weightgen.data import input_shape
from weightgen.models import build_model

spec = importlib.util.spec_from_file_location(
    "residual_branch_probe", Path(__file__).resolve().parents[1] / "benchmarks" / "residual_branch_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)
ARCH = "transformer:dim=16,depth=2,heads=2,patch=8"


def test_the_starts_scale_each_block_s_residual_writes_and_nothing_else():
    sample = build_model(ARCH, input_shape("digits"), seed=1).state_dict()
    init = build_model(ARCH, input_shape("digits"), seed=0).state_dict()
    starts = probe.starts(sample, init)
    written = {k for k in sample if probe.writes_to_stream(k)}
    assert written == {f"blocks.{i}.{leaf}" for i in (0, 1) for leaf in probe.BRANCH_OUTPUTS}
    for name, tensor in sample.items():
        if name not in written:  # embedding, norms, attention inputs, the first feedforward layer, head: as sampled
            assert all(torch.equal(start[name], tensor) for key, start in starts.items() if key != "random")
            continue
        torch.testing.assert_close(starts["branches x0.5"][name], 0.5 * tensor)
        assert not starts["branches x0"][name].any()
        if name.endswith("weight"):  # the weights at random init's norm, in the sample's direction; biases as sampled
            assert float(starts["branches at init norm"][name].norm()) == pytest.approx(float(init[name].norm()), rel=1e-5)
        else:
            assert torch.equal(starts["branches at init norm"][name], tensor)
    assert starts["random"] is init and starts["generated"] is sample


def test_stream_statistics_read_silent_branches_and_uniform_attention():
    model = build_model(ARCH, input_shape("digits"), seed=0)
    x = torch.randn(32, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for block in model.blocks:
            block.self_attn.out_proj.weight.zero_()
            block.self_attn.out_proj.bias.zero_()
            block.linear2.weight.zero_()
            block.linear2.bias.zero_()
            dim = block.self_attn.embed_dim
            block.self_attn.in_proj_weight[: 2 * dim].zero_()  # queries and keys: every logit 0
            block.self_attn.in_proj_bias[: 2 * dim].zero_()
        stats = probe.stream_stats(model, x)
    for i in (0, 1):
        assert stats[f"block {i} attention RMS / stream"] == 0 and stats[f"block {i} feedforward RMS / stream"] == 0
        assert stats[f"block {i} logit std"] == 0
        assert stats[f"block {i} attention entropy / largest"] == pytest.approx(1.0)
    assert stats["embedding output RMS"] > 0
