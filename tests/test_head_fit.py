"""The head fit: which layer it fits, that it fits it (and nothing else), what it costs, and its refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weightgen.bench import make_init
from weightgen.data import input_shape, load_task
from weightgen.head_fit import HeadFitError, classifier_head, fit_head, training_examples, with_fitted_head
from weightgen.models import build_model
from weightgen.suite import SuiteError, load_suite


def _blobs(n: int = 200, features: int = 6, classes: int = 3, seed: int = 0):
    """Linearly separable classes around random centres, so a fitted head must get the labels right."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, features, generator=g) * 4
    return centres[y] + 0.3 * torch.randn(n, features, generator=g), y


@pytest.mark.parametrize("arch, head", [("mlp:hidden=16x16", "net.5"), ("cnn1d:channels=4x4", "head"),
                                        ("cnn2d:channels=4", "head"), ("transformer:dim=8,depth=1,heads=2,patch=8", "head")])
def test_the_head_of_every_family_is_its_last_linear_layer(arch, head):
    task = "digits" if not arch.startswith("cnn1d") else "mnist1d"
    model = build_model(arch, input_shape(task), seed=0)
    name, module = classifier_head(model, torch.randn(2, *input_shape(task)))
    assert name == head and module.out_features == 10


def test_a_network_whose_last_linear_is_not_its_output_is_refused():
    model = nn.Sequential(nn.Linear(6, 3), nn.LayerNorm(3))
    with pytest.raises(HeadFitError, match="not what the network outputs"):
        classifier_head(model, torch.randn(2, 6))
    with pytest.raises(HeadFitError, match="no nn.Linear"):
        classifier_head(nn.Sequential(nn.ReLU()), torch.randn(2, 6))


def test_the_fit_replaces_the_head_alone_and_the_model_predicts_what_the_solver_scored():
    x, y = _blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit = fit_head(model, x, y, 3)
    assert model.training  # the mode is put back
    assert fit.head == "2" and fit.examples == len(x)
    for key in ("0.weight", "0.bias"):  # the body is untouched
        assert torch.equal(fit.state_dict[key], before[key])
    assert not torch.equal(fit.state_dict["2.weight"], before["2.weight"])
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    # the standardisation folded into the head is exact: the network scores what the solver did
    assert accuracy == pytest.approx(fit.train_acc_after, abs=1e-6)
    assert fit.train_acc_after > 0.95 > fit.train_acc_before
    # charged: the body's forward pass over the examples and every solver step
    body_forward = 2 * len(x) * 6 * 12
    assert fit.flops > body_forward and fit.wall_time > 0


def test_a_fit_that_keeps_the_norm_predicts_the_same_classes_at_the_old_head_s_size():
    x, y = _blobs()
    heads = []
    for keep_norm in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
        old = model[2].weight.detach().norm()
        fit_head(model, x, y, 3, keep_norm=keep_norm)
        with torch.no_grad():
            heads.append((model(x).argmax(1), model[2].weight.norm(), old))
    (full_pred, full_norm, old), (kept_pred, kept_norm, _) = heads
    assert torch.equal(full_pred, kept_pred)
    assert float(kept_norm) == pytest.approx(float(old), rel=1e-5) and float(full_norm) > 2 * float(old)


def test_the_fit_is_deterministic_and_reads_a_seeded_subset():
    x, y = _blobs()
    fits = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
        fits.append(fit_head(model, *training_examples(x, y, 50, seed=3), 3))
    assert all(torch.equal(fits[0].state_dict[k], fits[1].state_dict[k]) for k in fits[0].state_dict)
    a, _ = training_examples(x, y, 50, seed=3)
    b, _ = training_examples(x, y, 50, seed=4)
    assert len(a) == 50 and not torch.equal(a, b)
    assert len(training_examples(x, y, 10_000, seed=3)[0]) == len(x)  # fewer than asked: all of them


def test_bad_examples_are_refused_before_the_model_changes():
    x, y = _blobs()
    model = nn.Sequential(nn.Linear(6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(HeadFitError, match="labels must lie in"):
        fit_head(model, x, y + 5, 3)
    with pytest.raises(HeadFitError, match="at least 2 examples"):
        fit_head(model, x[:1], y[:1], 3)
    with pytest.raises(HeadFitError, match="3 outputs, the task 10"):
        fit_head(model, x, y, 10)
    with pytest.raises(HeadFitError, match="examples must be"):
        training_examples(x, y, 0, seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_random_body_with_a_fitted_head_beats_chance_on_digits():
    arch, task = "mlp:hidden=32", "digits"
    state = build_model(arch, input_shape(task), seed=1).state_dict()
    fit = with_fitted_head(arch, task, state, seed=1, examples=300)
    from weightgen.checkpoint import model_for_weights
    from weightgen.training import evaluate

    _, val_acc = evaluate(model_for_weights(fit.state_dict, arch, task), load_task(task).val)
    assert val_acc > 0.5  # chance is 0.1; a random ReLU layer's features are enough for digits' classes


def test_head_fit_methods_in_a_suite_and_the_bench(setup):
    _, corpus, run = setup
    suite = load_suite({
        "name": "heads", "corpus": str(corpus), "generator": str(run), "seeds": [100], "ddim_steps": 2,
        "recipe": {"steps": 20, "eval_every": 10, "batch_size": 64},
        "methods": ["random", "random+head", "retrieval", "retrieval+head", "noisy-nearest+head", "generated+head"],
        "cases": [{"arch": "mlp:hidden=20", "task": "digits", "split": "unseen-arch"}]})
    base = make_init(suite, "retrieval", "mlp:hidden=20", "digits", 100)
    fitted = make_init(suite, "retrieval+head", "mlp:hidden=20", "digits", 100)
    assert fitted.method == "retrieval+head" and fitted.source == base.source
    assert fitted.flops > base.flops and "fitted on" in fitted.note
    body = [k for k in base.state_dict if not k.startswith("net.3")]
    assert all(torch.equal(base.state_dict[k], fitted.state_dict[k]) for k in body)
    generated = make_init(suite, "generated+head", "mlp:hidden=20", "digits", 100)
    assert generated.state_dict is not None and generated.flops > 0
    # a method that does not apply (no member has this architecture) stays n/a with its head fit
    assert make_init(suite, "noisy-nearest+head", "mlp:hidden=20", "digits", 100).state_dict is None
    with pytest.raises(SuiteError, match="unknown method"):
        suite.narrowed(["retrieval+tail"])


def test_a_suite_with_head_fit_methods_runs_scores_and_logs_to_mlflow(setup, tmp_path):
    import mlflow

    from weightgen.bench import run_suite
    from weightgen.tracking import tracking_uri

    _, corpus, run = setup
    suite = load_suite({
        "name": "heads-e2e", "corpus": str(corpus), "generator": str(run), "seeds": [100], "ddim_steps": 2,
        "recipe": {"steps": 20, "eval_every": 10, "batch_size": 64},
        "methods": ["random", "retrieval", "retrieval+head", "generated", "generated+head"],
        "cases": [{"arch": "mlp:hidden=20", "task": "digits", "split": "unseen-arch"}]})
    outcome = run_suite(suite, tmp_path / "out")
    table = outcome["table"]
    assert list(table["method"]) == ["random", "retrieval", "retrieval+head", "generated", "generated+head"]
    head_rows = table[table["method"].str.endswith("+head")]
    assert (head_rows["status"] == "ok").all() and head_rows["note"].str.contains("fitted on").all()
    beats = outcome["beats"]
    assert set(beats["method"]) == {"generated", "generated+head"}
    mlflow.set_tracking_uri(tracking_uri())
    logged = mlflow.get_run(outcome["mlflow_run_id"]).data.metrics  # MLflow takes no "+" in a metric's name
    assert "compute_saved_median/unseen-arch/retrieval_head" in logged
    assert "compute_saved_median/unseen-arch/generated_head" in logged


def test_generate_fit_head_writes_the_fitted_head_and_charges_it(setup, tmp_path):
    import json

    from typer.testing import CliRunner

    from weightgen.checkpoint import load_model
    from weightgen.cli import app

    _, _, run = setup
    runner = CliRunner()
    common = ["generate", "--arch", "mlp:hidden=20", "--task", "digits", "--run", str(run), "--ddim-steps", "2"]
    plain = runner.invoke(app, common + ["--out", str(tmp_path / "plain")])
    fitted = runner.invoke(app, common + ["--out", str(tmp_path / "fitted"), "--fit-head", "--head-examples", "200"])
    assert plain.exit_code == 0 and fitted.exit_code == 0, fitted.output
    plain_config = json.loads((tmp_path / "plain" / "config.json").read_text())
    config = json.loads((tmp_path / "fitted" / "config.json").read_text())
    assert config["head_fit"]["examples"] == 200 and config["head_fit"]["head"] == "net.3"
    assert config["flops"] == plain_config["flops"] + config["head_fit"]["flops"]
    a, b = load_model(tmp_path / "plain").state_dict(), load_model(tmp_path / "fitted").state_dict()
    assert torch.equal(a["net.1.weight"], b["net.1.weight"]) and not torch.equal(a["net.3.weight"], b["net.3.weight"])


def test_a_head_fit_method_is_drawn_in_its_base_method_s_colour():
    from weightgen.bench_score import method_order
    from weightgen.plots import method_styles

    styles = method_styles(["random", "retrieval", "retrieval+head", "generated+head"])
    assert styles["retrieval+head"]["color"] == styles["retrieval"]["color"] != styles["random"]["color"]
    assert styles["retrieval+head"]["head"] and not styles["retrieval"]["head"]
    assert len({styles[m]["color"] for m in ("random", "retrieval", "generated+head")}) == 3
    ordered = sorted(["generated+head", "retrieval+head", "random", "retrieval", "no-such"], key=method_order)
    assert ordered == ["random", "retrieval", "retrieval+head", "generated+head", "no-such"]
