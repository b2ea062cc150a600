"""benchmarks/refiner_probe.py: an untrained refiner gives back retrieval's start, and a view leaves its index whole."""

import importlib.util
from pathlib import Path

import pandas as pd
import torch

from weightgen.data import input_shape
from weightgen.models import build_model
from weightgen.tune_target import TuneTarget, patches_from_state

spec = importlib.util.spec_from_file_location(
    "refiner_probe", Path(__file__).resolve().parents[1] / "benchmarks" / "refiner_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_an_untrained_refiner_writes_its_input_network_back_exactly():
    # the probe's step-0 row ("the refiner *is* retrieval") rests on this: adaLN-Zero's zero output and an exact
    # patch round trip, including a matrix whose rows do not fill their last patch (the 64-input first layer)
    arch, task = "mlp:hidden=24x20", "digits"
    p = TuneTarget(arch, task, probe.PATCH, probe.PATCH, "gaussian")
    start = build_model(arch, input_shape(task), seed=3).state_dict()
    x = patches_from_state(p.tokens, start)
    with torch.no_grad():
        out = probe.refined_patches(probe.new_refiner("tiny").eval(), p, x)
    assert torch.equal(out, x)
    back = p.state_from_patches(out)
    for name, tensor in start.items():
        torch.testing.assert_close(back[name], tensor)


def test_a_trained_refiner_changes_values_and_never_the_padding():
    arch, task = "mlp:hidden=24x20", "digits"
    p = TuneTarget(arch, task, probe.PATCH, probe.PATCH, "gaussian")
    x = patches_from_state(p.tokens, build_model(arch, input_shape(task), seed=3).state_dict())
    refiner = probe.new_refiner("tiny").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for q in refiner.parameters():  # as if trained: every weight, the zero-initialised ones included, moved
            q.add_(0.05 * torch.randn_like(q))
        out = probe.refined_patches(refiner, p, x)
    padding = ~probe.valid_mask(p.coords[0], probe.PATCH)
    assert padding.any() and not out[padding].any()
    assert not torch.equal(out[~padding], x[~padding])


def test_a_view_drops_rows_and_leaves_the_index_it_came_from_whole():
    class Index:  # what `without` touches: a finals table, copied shallowly
        finals = pd.DataFrame({"arch": ["a", "b", "a"], "task": ["t", "t", "u"], "member": ["m1", "m2", "m3"]})

    index = Index()
    view = probe.without(index, lambda f: f["arch"] == "a")
    assert view.finals["member"].tolist() == ["m2"]
    assert index.finals["member"].tolist() == ["m1", "m2", "m3"]
