"""Tuning the DiT by the task (weightgen.dit_tune): the task loss, the lookahead, the bias penalty, two processes.

The tiny corpus and generator it starts from is conftest's ``setup``; distilling a tuned DiT is tests/test_distill.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from weightgen.cli import app
from weightgen.dit_train import load_dit
from weightgen.dit_tune import TuneConfig, of_families, tune
from weightgen.flops import generator_training_flops
from weightgen.generate import Generator, GeneratorError
from weightgen.tune_runs import tuned_already

ROOT = Path(__file__).resolve().parents[1]


def test_tuning_by_the_task_writes_a_new_run_that_samples_the_way_it_was_tuned(setup, tmp_path):
    _, corpus, run = setup
    base_bytes = (run / "dit" / "model.safetensors").read_bytes()
    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=1, holdout_archs=["mlp:hidden=24x24"])
    summary = tune(run, corpus, tmp_path / "tuned", cfg, log=lambda line: None)
    assert (run / "dit" / "model.safetensors").read_bytes() == base_bytes  # the base run is left as it was
    assert [row["step"] for row in summary["log"]] == [0, 1, 2] and summary["flops"] > 0
    assert {"heldout/mlp:hidden=24x24@digits", "heldout/mlp:hidden=24x24@digits:rot90=1"} <= set(summary["log"][-1])
    tuned, base = load_dit(tmp_path / "tuned" / "dit"), load_dit(run / "dit")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))
    assert generator_training_flops(tmp_path / "tuned") == generator_training_flops(run) + summary["flops"]
    generator = Generator.from_run(tmp_path / "tuned", steps=25)
    assert generator.sampler == {"steps": 1, "guidance": 1.0, "noise": "coords", "keep_noise": "matrices",
                                 "rebalance": "none", "output": "latents", "relabel": False, "match_scales": False,
                                 "init_spectrum": False, "via_archs": 0, "canvas": {}}
    assert generator.sample("mlp:hidden=20", "digits").flops > 0  # an unseen width samples too
    again = tune(run, corpus, tmp_path / "again", cfg, log=lambda line: None)
    assert again["log"] == summary["log"]  # seeded: the same tune twice gives the same curve
    assert tuned_already(run, corpus, tmp_path / "again", cfg)  # what lets `weightgen run` skip it on a rerun
    written = tmp_path / "again" / "dit" / "functional_finetune.json"
    older = {k: v for k, v in json.loads(written.read_text()).items() if k != "families"}
    written.write_text(json.dumps(older))  # a tune written before `families` existed ran at its default
    assert tuned_already(run, corpus, tmp_path / "again", cfg)
    assert not tuned_already(run, corpus, tmp_path / "again", TuneConfig(**{**asdict(cfg), "families": ["mlp"]}))
    assert not tuned_already(run, corpus, tmp_path / "again", TuneConfig(steps=3, pairs_per_step=2, batch_size=16,
                                                                         eval_every=1, holdout_archs=["mlp:hidden=24x24"]))
    assert not tuned_already(tmp_path / "tuned", corpus, tmp_path / "again", cfg)  # another base DiT
    assert not tuned_already(run, corpus, tmp_path / "nowhere", cfg)
    with pytest.raises(ValueError, match="new run folder"):
        tune(run, corpus, run, cfg)
    with pytest.raises(ValueError, match="unknown noise"):
        TuneConfig(noise="uniform")
    result = CliRunner().invoke(app, ["dit", "tune", "--run", str(run), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--noise", "uniform"])
    assert result.exit_code != 0 and "unknown noise 'uniform'" in result.output and not (tmp_path / "cli").exists()


def test_a_tune_can_train_on_named_families_alone(setup, tmp_path):
    _, corpus, run = setup
    pairs = [SimpleNamespace(arch=a) for a in ("mlp:hidden=16", "transformer:patch=8", "cnn1d:channels=8", "mlp:hidden=24")]
    assert of_families(pairs, ["mlp"]) == [pairs[0], pairs[3]]
    assert of_families(pairs, ["transformer", "cnn1d"]) == pairs[1:3]
    assert of_families(pairs, []) == pairs
    with pytest.raises(ValueError, match="unknown families rnn"):
        TuneConfig(families=["mlp", "rnn"])
    with pytest.raises(ValueError, match="no pair of the families cnn2d"):  # the test corpus holds MLPs only
        tune(run, corpus, tmp_path / "cnn2d", TuneConfig(steps=1, families=["cnn2d"]), log=lambda line: None)
    assert not (tmp_path / "cnn2d").exists()
    result = CliRunner().invoke(app, ["dit", "tune", "--run", str(run), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--families", "mlp,rnn"])
    assert result.exit_code != 0 and "unknown families rnn" in result.output and not (tmp_path / "cli").exists()


def test_a_tune_on_two_processes_makes_the_update_of_one(setup, tmp_path):
    """accelerate launch × 2 (MULTI_CPU, each process a share of every step's pairs) ends at one process's weights."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from weightgen.dit_tune import launch_tune

    _, corpus, run = setup
    # 3 pairs a step split 2 + 1; the lookahead, the bias penalty and the DiT's task dropout all draw per pair.
    cfg = TuneConfig(steps=3, pairs_per_step=3, batch_size=16, eval_every=3, inner_steps=2, bias_penalty=1.0)
    one = tune(run, corpus, tmp_path / "one", cfg, log=lambda line: None)
    lines = []
    two = launch_tune(run, corpus, tmp_path / "two", cfg, processes=2, log=lines.append)
    assert any("2 processes (MULTI_CPU)" in line for line in lines) and any("step     3" in line for line in lines)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["own_flops"] == one["own_flops"]  # the same work, counted on two processes and summed
    a, b = (load_file(tmp_path / d / "dit" / "model.safetensors") for d in ("one", "two"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert any(not torch.equal(a[k], v) for k, v in load_file(run / "dit" / "model.safetensors").items())
    for key in ("val_acc_median", "lookahead_val_acc_median"):
        assert two["log"][-1][key] == pytest.approx(one["log"][-1][key], abs=1e-6)
    bad = subprocess.run([sys.executable, "-m", "weightgen.dit_tune", "--run-dir", str(run), "--corpus-dir", str(corpus),
                          "--out-dir", str(tmp_path / "bad"), "--config", '{"steps": 0}'], capture_output=True, text=True)
    assert bad.returncode == 2 and "--config" in bad.stderr and "steps" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_the_bias_penalty_shrinks_the_tuned_samples_biases(setup, tmp_path):
    _, corpus, run = setup

    def bias_square(penalty: float) -> float:
        cfg = TuneConfig(steps=3, pairs_per_step=2, batch_size=16, eval_every=3, bias_penalty=penalty)
        tune(run, corpus, tmp_path / f"p{penalty}", cfg, log=lambda line: None)
        state = Generator.from_run(tmp_path / f"p{penalty}").sample("mlp:hidden=16", "digits").state_dicts[0]
        return float(sum(v.pow(2).mean() for k, v in state.items() if k.endswith("bias")))

    assert bias_square(100.0) < bias_square(0.0)
    with pytest.raises(ValueError, match="bias_penalty"):
        TuneConfig(bias_penalty=-1.0)


def test_a_lookahead_tune_with_rebalancing_counts_its_steps_and_samples_at_the_targets_init_scale(setup, tmp_path):
    from weightgen.data import input_shape
    from weightgen.models import build_model
    from weightgen.rebalance import chain_layers

    _, corpus, run = setup
    plain = tune(run, corpus, tmp_path / "plain", TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2),
                 log=lambda line: None)
    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2, inner_steps=3, rebalance="logits")
    looked = tune(run, corpus, tmp_path / "looked", cfg, log=lambda line: None)
    assert looked["flops"] > plain["flops"]  # the fine-tune steps of the lookahead are part of the tune's cost
    assert 0.0 <= looked["log"][-1]["lookahead_val_acc_median"] <= 1.0 and "lookahead_val_acc_median" not in plain["log"][-1]
    generator = Generator.from_run(tmp_path / "looked")
    assert generator.sampler["rebalance"] == "logits"
    state = generator.sample("mlp:hidden=20x12", "digits", seed=5).state_dicts[0]
    reference = build_model("mlp:hidden=20x12", input_shape("digits"), seed=5).state_dict()
    for weight, _ in chain_layers(reference)[:-1]:  # every layer but the last, which keeps the logits as they were
        assert float(state[weight].std()) == pytest.approx(float(reference[weight].std()), rel=1e-4)
    # A tune of a tuned run carries the first tune's FLOPs, so the amortisation misses none of them.
    second = tune(tmp_path / "looked", corpus, tmp_path / "second", TuneConfig(steps=1, pairs_per_step=1, batch_size=8,
                                                                               eval_every=1), log=lambda line: None)
    assert second["base_tune_flops"] == looked["flops"] and second["flops"] == looked["flops"] + second["own_flops"]
    assert generator_training_flops(tmp_path / "second") == generator_training_flops(run) + second["flops"]
    with pytest.raises(ValueError, match="inner_steps"):
        TuneConfig(inner_steps=-1)
    with pytest.raises(ValueError, match="unknown rebalance mode .all."):
        TuneConfig(rebalance="all")
    with pytest.raises(ValueError, match="unknown rebalance"):
        Generator(generator.dit, generator.encoder, rebalance="weights")
    config = json.loads((tmp_path / "second" / "dit" / "config.json").read_text())
    config["sampler"]["rebalance"] = "weights"
    (tmp_path / "second" / "dit" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match="unknown rebalance mode .weights."):
        Generator.from_run(tmp_path / "second")



def test_distillation_pulls_the_samples_toward_their_pairs_trained_member(setup, tmp_path):
    from weightgen.corpus import Corpus, final_checkpoints
    from weightgen.dit_tune import _teachers
    from weightgen.tune_target import TuneTarget
    from weightgen.encoder import PatchAutoencoder

    _, corpus, run = setup
    store = Corpus(corpus)
    frame = store.manifest()
    arch, task = frame["arch"].iloc[0], frame["task"].iloc[0]
    encoder = PatchAutoencoder.load(run / "encoder")
    pair = TuneTarget(arch, task, encoder.config.patch_size, load_dit(run / "dit").cfg.latent_dim, "coords")
    (teacher,) = _teachers(store, frame, [pair]).values()
    finals = final_checkpoints(frame)
    first = finals[(finals["arch"] == arch) & (finals["task"] == task)].sort_values("seed").iloc[0]
    expected, _ = store.load(first["member"], int(first["step"]))
    assert all(torch.equal(teacher[k], expected[k].float()) for k in expected)  # the lowest seed's final checkpoint
    batch = torch.arange(32)
    assert float(pair.distill_loss(teacher, teacher, batch)) == pytest.approx(0.0, abs=1e-6)

    def kl_to_teacher(distill: float) -> float:
        cfg = TuneConfig(steps=4, pairs_per_step=4, batch_size=16, eval_every=4, distill=distill)
        tune(run, corpus, tmp_path / f"d{distill}", cfg, log=lambda line: None)
        dit = load_dit(tmp_path / f"d{distill}" / "dit").eval()
        with torch.no_grad():
            return float(pair.distill_loss(pair.weights(dit, encoder, pair.start, cfg.keep_noise), teacher, batch))

    assert kl_to_teacher(100.0) < kl_to_teacher(0.0)
    with pytest.raises(ValueError, match="distill"):
        TuneConfig(distill=-1.0)


def test_the_anchor_pulls_the_samples_toward_their_pairs_trained_member_in_weight_space(setup, tmp_path):
    from weightgen.corpus import Corpus
    from weightgen.dit_tune import _teachers
    from weightgen.encoder import PatchAutoencoder
    from weightgen.tune_target import TuneTarget

    _, corpus, run = setup
    store = Corpus(corpus)
    frame = store.manifest()
    encoder = PatchAutoencoder.load(run / "encoder")
    pair = TuneTarget(frame["arch"].iloc[0], frame["task"].iloc[0], encoder.config.patch_size,
                      load_dit(run / "dit").cfg.latent_dim, "coords")
    (member,) = _teachers(store, frame, [pair]).values()
    assert float(pair.anchor_loss(member, member)) == 0.0
    zeros = {k: torch.zeros_like(v) for k, v in member.items()}
    assert float(pair.anchor_loss(zeros, member)) == pytest.approx(1.0)  # relative: zero weights are one norm away

    def distance_to_member(anchor: float) -> float:
        cfg = TuneConfig(steps=4, pairs_per_step=4, batch_size=16, eval_every=4, anchor=anchor)
        tune(run, corpus, tmp_path / f"a{anchor}", cfg, log=lambda line: None)
        dit = load_dit(tmp_path / f"a{anchor}" / "dit").eval()
        with torch.no_grad():
            return float(pair.anchor_loss(pair.weights(dit, encoder, pair.start, cfg.keep_noise), member))

    assert distance_to_member(100.0) < distance_to_member(0.0)
    with pytest.raises(ValueError, match="anchor"):
        TuneConfig(anchor=-1.0)


def test_the_tunes_flop_count_is_what_a_counter_around_its_loop_gives(setup, tmp_path):
    """Each pair's step and each evaluation is counted once and then added (RepeatedFlops): the same total.

    Two tunes differ only in their last steps and evaluations; a counter around each whole tune sees every op,
    so the difference of those counts is what the longer tune's own count must add.
    """
    from weightgen.flops import counting_flops

    _, corpus, run = setup
    counts = {}
    for steps in (1, 4):  # 3 of the corpus's 4 pairs a step: pairs recur, and so do the evaluations
        cfg = TuneConfig(steps=steps, pairs_per_step=3, batch_size=16, eval_every=1, inner_steps=2, bias_penalty=1.0)
        with counting_flops() as everything:
            summary = tune(run, corpus, tmp_path / f"s{steps}", cfg, log=lambda line: None)
        counts[steps] = (summary["own_flops"], everything.get_total_flops())
    assert counts[4][0] > counts[1][0] > 0
    assert counts[4][0] - counts[1][0] == counts[4][1] - counts[1][1]


def test_a_fitted_head_is_the_bench_s_fit_and_passes_the_gradient_to_the_body_alone():
    from weightgen.head_fit import fit_head
    from weightgen.models import build_model
    from weightgen.data import input_shape
    from weightgen.tune_target import TuneTarget

    p = TuneTarget("mlp:hidden=16", "digits", 8, 8, "coords")
    state = {k: v.detach().clone().requires_grad_(True) for k, v in p.model.state_dict().items()}
    fitted = p.with_fitted_head(state, torch.Generator().manual_seed(0), examples=300)
    head = p.head[0]
    assert set(fitted) == set(state) and head == "net.3"
    assert all(fitted[k] is state[k] for k in state if not k.startswith(head + "."))  # the body is the sample's own
    assert not fitted[head + ".weight"].requires_grad and not torch.equal(fitted[head + ".weight"], state[head + ".weight"])
    # The same rows through head_fit.fit_head, the bench's `+head` fit, give the same head.
    rows = torch.randperm(len(p.train), generator=torch.Generator().manual_seed(0))[:300]
    model = build_model("mlp:hidden=16", input_shape("digits"), seed=0)
    fit = fit_head(model, p.train.x[rows], p.train.y[rows], 10)
    torch.testing.assert_close(fitted[head + ".weight"], fit.state_dict[head + ".weight"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fitted[head + ".bias"], fit.state_dict[head + ".bias"], rtol=1e-5, atol=1e-6)
    # The fitted head fits the body's features far better than the sample's own head, and the loss reaches the body.
    loss = p.loss(fitted, rows)
    assert float(loss.detach()) < float(p.loss(state, rows).detach()) - 0.5
    loss.backward()
    assert state[head + ".weight"].grad is None  # the sample's own head no longer counts
    body = [v for k, v in state.items() if not k.startswith(head + ".")]
    assert body and all(v.grad is not None and float(v.grad.abs().sum()) > 0 for v in body)


def test_a_tune_for_a_fitted_head_records_it_and_scores_with_it(setup, tmp_path):
    _, corpus, run = setup
    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2, inner_steps=2)
    plain = tune(run, corpus, tmp_path / "plain", cfg, log=lambda line: None)
    lines = []
    fitted = tune(run, corpus, tmp_path / "fitted", TuneConfig(**{**asdict(cfg), "fit_head": True}), log=lines.append)
    assert fitted["fit_head"] and not plain["fit_head"]
    assert any("(head fitted)" in line for line in lines)
    # Same DiT at step 0, scored with a fitted head instead of its own: the step-0 accuracies differ.
    assert fitted["log"][0]["val_acc_median"] != plain["log"][0]["val_acc_median"]
    tuned, base = load_dit(tmp_path / "fitted" / "dit"), load_dit(run / "dit")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))
    assert not tuned_already(run, corpus, tmp_path / "fitted", cfg)  # a plain tune is not a fitted-head one


def test_a_tune_trains_on_task_neighbours_and_keeps_a_suite_s_unseen_tasks_out(setup, tmp_path):
    """``task_neighbours``: each corpus pair's architecture on tasks one knob away, scored by their data alone."""
    from weightgen.cli_dit import excluded
    from weightgen.specs import SpecError

    _, corpus, run = setup
    lines = []
    cfg = TuneConfig(steps=2, pairs_per_step=4, batch_size=16, eval_every=2, task_neighbours=2,
                     exclude_tasks=["digits:rot90=2", "digits:label_perm=2"])
    summary = tune(run, corpus, tmp_path / "tasks", cfg, log=lines.append)
    # "<n> training (architecture, task) pairs, <m> neighbours (<m> on other tasks), ..."
    counts = next(line for line in lines if "neighbours" in line)
    given = int(counts.split(" training")[0])
    assert f"{2 * given} neighbours ({2 * given} on other tasks)" in counts
    assert summary["task_neighbours"] == 2 and summary["exclude_tasks"] == ["digits:label_perm=2", "digits:rot90=2"]
    plain = tune(run, corpus, tmp_path / "plain", TuneConfig(**{**asdict(cfg), "task_neighbours": 0}), log=lambda line: None)
    assert [row["step"] for row in plain["log"]] == [row["step"] for row in summary["log"]]
    tuned, untouched = load_dit(tmp_path / "tasks" / "dit"), load_dit(tmp_path / "plain" / "dit")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), untouched.state_dict().values()))
    # `--exclude-suite` gives the suite's unseen-task and unseen-both tasks, beside the ones named.
    assert excluded("digits:noise=0.2", [ROOT / "suites" / "default.yaml"], "tasks") == [
        "digits:label_perm=2", "digits:noise=0.2", "digits:rot90=2", "mnist1d:label_perm=2", "mnist1d:template_seed=2"]
    with pytest.raises(SpecError, match="rot90"):
        TuneConfig(task_neighbours=1, exclude_tasks=["digits:rot90=9"])
    result = CliRunner().invoke(app, ["dit", "tune", "--run", str(run), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--task-neighbours", "1", "--exclude-tasks", "digits:rot90=9"])
    assert result.exit_code != 0 and "rot90" in result.output and not (tmp_path / "cli").exists()
    with pytest.raises(ValueError, match="task_neighbours must be >= 0"):
        TuneConfig(task_neighbours=-1)


def test_a_canvas_tune_writes_one_architecture_cuts_it_to_every_pair_and_samples_so(setup, tmp_path):
    from weightgen.data import input_shape
    from weightgen.models import build_model
    from weightgen.tune_target import TuneTarget
    from weightgen.weight_selection import fit_state_dict

    _, corpus, run = setup  # mlp:hidden=16 and mlp:hidden=24x24 on digits and digits:rot90=1
    dit = load_dit(run / "dit")
    target = TuneTarget("mlp:hidden=16", "digits", 8, dit.cfg.latent_dim, "coords", source="mlp:hidden=24x24")
    own = TuneTarget("mlp:hidden=24x24", "digits", 8, dit.cfg.latent_dim, "coords")
    assert len(target.tokens) == len(own.tokens) and torch.equal(target.start, own.start)  # the canvas's tokens
    from weightgen.encoder import PatchAutoencoder
    encoder = PatchAutoencoder.load(run / "encoder")
    written = target.weights(dit, encoder, target.start, "matrices")
    assert written["net.1.weight"].shape == (24, 64)
    cut = target.to_target(written)
    assert cut.keys() == target.model.state_dict().keys() and cut["net.1.weight"].shape == (16, 64)
    expected = fit_state_dict({k: v.detach() for k, v in written.items()}, target.model.state_dict())[0]
    assert all(torch.equal(cut[k].detach(), expected[k]) for k in cut)
    target.loss(cut, torch.arange(8)).backward()  # the cut is index selection: the task loss reaches the DiT
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in dit.parameters())
    assert TuneTarget("mlp:hidden=16", "digits", 8, dit.cfg.latent_dim, "coords", source="mlp:hidden=16").source is None

    cfg = TuneConfig(steps=2, pairs_per_step=2, batch_size=16, eval_every=2, canvas={"mlp": "mlp:hidden=24x24"})
    tune(run, corpus, tmp_path / "canvas", cfg, log=lambda line: None)
    generator = Generator.from_run(tmp_path / "canvas")
    assert generator.sampler["canvas"] == {"mlp": "mlp:hidden=24x24"}
    sample = generator.sample("mlp:hidden=20", "digits", seed=4)  # unseen, and a corpus width too, both cut
    assert sample.via == "mlp:hidden=24x24" and generator.sample("mlp:hidden=16", "digits").via == "mlp:hidden=24x24"
    plain = Generator(generator.dit, generator.encoder, 1, noise="coords", keep_noise="matrices")
    source = plain.sample("mlp:hidden=24x24", "digits", seed=4)
    reference = build_model("mlp:hidden=20", input_shape("digits"), seed=4).state_dict()
    assert all(torch.equal(sample.state_dicts[0][k], v) for k, v in fit_state_dict(source.state_dicts[0], reference)[0].items())
    assert generator.sample("mlp:hidden=24x24", "digits", seed=4).via == ""  # the canvas itself is not cut
    from weightgen.dit_distill import DistillError, teacher_sampler
    with pytest.raises(DistillError, match="through others"):  # a student would learn the canvas as each pair's own
        teacher_sampler(tmp_path / "canvas")
    with pytest.raises(ValueError, match="not a cnn1d architecture"):
        TuneConfig(canvas={"cnn1d": "mlp:hidden=24x24"})
    with pytest.raises(ValueError, match="rebalance must be none"):
        TuneConfig(canvas={"mlp": "mlp:hidden=24x24"}, rebalance="logits")
    result = CliRunner().invoke(app, ["dit", "tune", "--run", str(run), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--canvas", str(ROOT / "configs" / "grids" / "tiny.yaml")])
    assert result.exit_code != 0 and "names no parents" in result.output and not (tmp_path / "cli").exists()
