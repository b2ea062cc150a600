"""Sequences: fan-in normalisation, task features, and sequence sets built from a corpus."""

from __future__ import annotations

import pytest
import torch

from weightgen.models import build_model
from weightgen.sequences import (
    TASK_FEATURES, SequenceSet, corpus_sequences, denormalize, fan_in_scales, from_tokens, normalize, task_features,
)
from weightgen.tokens import tokenize
from weightgen.zoo import expand, load_grid, train_member


def test_fan_in_scales_follow_the_architecture():
    state = build_model("mlp:hidden=16", (40,), seed=0).state_dict()
    tokens = tokenize(state, 8)
    scales = fan_in_scales(tokens)
    frame = tokens.coords_frame()
    weight = frame["tensor_name"] == "net.1.weight"  # Linear(40, 16): fan-in 40
    bias = frame["tensor_name"] == "net.1.bias"
    assert torch.allclose(scales[torch.tensor(weight.to_numpy())], torch.tensor(40.0).rsqrt())
    assert (scales[torch.tensor(bias.to_numpy())] == 1).all()
    restored = denormalize(tokens, normalize(tokens))
    for k, v in state.items():
        assert torch.allclose(restored[k], v, atol=1e-6, rtol=1e-6)


def test_task_features_tell_tasks_apart():
    tasks = ["mnist1d", "mnist1d:template_seed=1", "mnist1d:label_perm=1", "mnist1d:noise=0.1,shift=24",
             "digits", "digits:rot90=1", "digits:label_perm=1", "digits:noise=0.3", "digits:flip=true"]
    feats = torch.stack([task_features(t) for t in tasks])
    assert feats.shape == (len(tasks), TASK_FEATURES)
    assert torch.cdist(feats, feats).add(torch.eye(len(tasks))).min() > 0  # every pair differs
    perm = task_features("digits:label_perm=1")[-100:].reshape(10, 10)
    assert (perm.sum(0) == 1).all() and (perm.sum(1) == 1).all() and not torch.equal(perm, torch.eye(10))
    assert torch.equal(task_features("digits")[-100:].reshape(10, 10), torch.eye(10))
    assert torch.equal(task_features("mnist1d:seed=3"), task_features("mnist1d"))  # the sample seed is not the task


def test_sequence_sets_subset_save_and_load(tmp_path):
    items = []
    for i, arch in enumerate(["mlp:hidden=8", "mlp:hidden=4x4"]):
        tokens = tokenize(build_model(arch, (8, 8), seed=i).state_dict(), 8)
        items.append((tokens, "mlp", "digits", {"member": f"m{i}", "step": 1}))
    seqs = from_tokens(items)
    assert len(seqs) == 2 and seqs.lengths().tolist() == [len(items[0][0]), len(items[1][0])]
    values, coords, depth = seqs.sequence(1)
    assert torch.equal(values, normalize(items[1][0])) and torch.equal(coords, items[1][0].coords)
    sub = seqs.subset([1])
    assert len(sub) == 1 and torch.equal(sub.values, values) and sub.meta == [{"member": "m1", "step": 1}]
    seqs.save(tmp_path / "s.safetensors")
    loaded = SequenceSet.load(tmp_path / "s.safetensors")
    assert torch.equal(loaded.values, seqs.values) and torch.equal(loaded.offsets, seqs.offsets)
    assert loaded.meta == seqs.meta and torch.equal(loaded.task, seqs.task)
    with pytest.raises(ValueError, match="rows"):
        seqs.with_values(seqs.values[:3])
    tokens_file = tmp_path / "other.safetensors"
    items[0][0].save(tokens_file)
    with pytest.raises(ValueError, match="not a weightgen sequence set"):
        SequenceSet.load(tokens_file)


def test_corpus_sequences(tmp_path):
    grid = load_grid({"seeds": [0], "checkpoint_steps": [10], "recipe": {"steps": 20, "eval_every": 10},
                      "archs": ["mlp:hidden=8", "cnn2d:channels=2"], "tasks": ["digits"]})
    for member in expand(grid):
        train_member(member, tmp_path)
    seqs = corpus_sequences(tmp_path, 16)
    assert len(seqs) == 4 and {m["step"] for m in seqs.meta} == {10, 20}
    late = corpus_sequences(tmp_path, 16, min_step=20)
    assert len(late) == 2 and sorted(late.family.tolist()) == [0, 2]  # mlp, cnn2d
    assert torch.equal(late.task[0], task_features("digits"))
