"""Distilling a tuned DiT into a smaller one (weightgen.dit_distill): students of latents and of patches,
neighbours, the function term, and targets moved by fine-tune steps.

The tiny corpus and generator the teacher is tuned from is conftest's ``setup``.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from weightgen.bench import check_suite
from weightgen.cli import app
from weightgen.corpus import Corpus
from weightgen.dit_distill import DistillConfig, DistillError, distill
from weightgen.dit_train import load_dit
from weightgen.dit_tune import TuneConfig, tune
from weightgen.flops import generator_training_flops
from weightgen.generate import Generator
from weightgen.pairs import corpus_pairs
from weightgen.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher(setup, tmp_path_factory):
    """A tuned run (one-step sampler from coordinate noise): what a student is distilled from."""
    _, corpus, run = setup
    out = tmp_path_factory.mktemp("teacher") / "tuned"
    tune(run, corpus, out, TuneConfig(steps=3, pairs_per_step=2, batch_size=16, eval_every=3), log=lambda line: None)
    return out


def test_a_student_learns_the_teachers_samples_samples_like_it_and_counts_the_whole_cost(setup, teacher, tmp_path):
    from weightgen.tune_target import TuneTarget
    from weightgen.encoder import PatchAutoencoder

    _, corpus, _ = setup
    teacher_bytes = (teacher / "dit" / "model.safetensors").read_bytes()
    cfg = DistillConfig(preset="tiny", steps=30, pairs_per_step=2, eval_every=15, lr=3e-3, neighbours=0,
                        holdout_archs=["mlp:hidden=24x24"])
    summary = distill(teacher, corpus, tmp_path / "student", cfg, log=lambda line: None)
    assert (teacher / "dit" / "model.safetensors").read_bytes() == teacher_bytes  # the teacher is left as it was
    log = summary["log"]
    assert [row["step"] for row in log] == [0, 15, 30]
    assert log[-1]["target_error_median"] < 0.8 * log[0]["target_error_median"]  # it learns the teacher's x0
    assert "heldout_target_error_median" in log[-1]  # the held-out architecture is scored apart
    # The student samples the way the teacher does, and its x0 is the one it was trained to give.
    student = Generator.from_run(tmp_path / "student")
    assert student.sampler == Generator.from_run(teacher).sampler
    encoder = PatchAutoencoder.load(teacher / "encoder")
    pair = TuneTarget("mlp:hidden=16", "digits", encoder.config.patch_size, student.dit.cfg.latent_dim, "coords")
    with torch.no_grad():
        target = pair.one_step_x0(load_dit(teacher / "dit"), pair.start)
        error = float((pair.one_step_x0(student.dit, pair.start) - target).norm() / target.norm())
    assert error < 0.8
    # The whole cost: the teacher's generator and the distillation, for the bench's amortisation.
    assert summary["own_flops"] > 0
    assert generator_training_flops(tmp_path / "student") == generator_training_flops(teacher) + summary["own_flops"]
    again = distill(teacher, corpus, tmp_path / "again", cfg, log=lambda line: None)
    assert again["log"] == log  # seeded: the same distillation twice gives the same curve
    # A bench takes the student (it has no latents of its own: its cost is the recorded total).
    suite = load_suite({"name": "s", "corpus": str(corpus), "generator": str(tmp_path / "student"), "methods": ["random", "generated"],
                        "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"}]})
    assert not (tmp_path / "student" / "latents.safetensors").exists() and len(check_suite(suite))


def test_a_patch_writing_student_learns_the_teachers_weights_and_samples_without_the_decoder(setup, teacher, tmp_path):
    from weightgen.flops import counting_flops

    from weightgen.dit_tune import tune as tune_run
    from weightgen.sampling import sample_state_dicts
    from weightgen.tokens import tokenize
    from weightgen.sequences import normalize

    _, corpus, _ = setup
    cfg = DistillConfig(preset="tiny", steps=30, pairs_per_step=2, eval_every=15, lr=3e-3, neighbours=0, output="patches")
    summary = distill(teacher, corpus, tmp_path / "direct", cfg, log=lambda line: None)
    log = summary["log"]
    assert log[-1]["target_error_median"] < 0.8 * log[0]["target_error_median"]  # it learns the teacher's decoded weights
    student, reference = Generator.from_run(tmp_path / "direct"), Generator.from_run(teacher)
    assert student.sampler == {**reference.sampler, "output": "patches"}
    assert student.dit.cfg.out_dim == student.encoder.config.patch_size
    # Its samples are the weights it was trained toward: closer to the teacher's than its untrained start was.
    def distance(a, b):
        x, y = (normalize(tokenize(s, student.encoder.config.patch_size)) for s in (a, b))
        return float((x - y).norm() / y.norm())

    mine, theirs = student.sample("mlp:hidden=16", "digits").state_dicts[0], reference.sample("mlp:hidden=16", "digits").state_dicts[0]
    assert mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine)
    assert distance(mine, theirs) < 0.9
    # No decoder runs: the sample costs the student's forward pass alone.
    student.encoder.decode = None  # any call would fail
    with counting_flops() as counter:
        again = student.sample("mlp:hidden=16", "digits")
    assert all(torch.equal(again.state_dicts[0][k], mine[k]) for k in mine) and again.flops == counter.get_total_flops()
    with pytest.raises(ValueError, match="one step"):
        sample_state_dicts(student.dit, student.encoder, "mlp:hidden=16", "digits", steps=4, noise="coords", output="patches")
    # A patch-writing DiT is no teacher, and it is tuned only from the start it samples from: both say so and
    # write nothing.
    with pytest.raises(DistillError, match="writes patches"):
        distill(tmp_path / "direct", corpus, tmp_path / "s2", DistillConfig(steps=1))
    with pytest.raises(ValueError, match="coordinate noise"):
        tune_run(tmp_path / "direct", corpus, tmp_path / "t2", TuneConfig(steps=1, noise="fixed"), log=lambda line: None)
    assert not (tmp_path / "s2").exists() and not (tmp_path / "t2").exists()
    with pytest.raises(ValueError, match="unknown output"):
        DistillConfig(output="weights")
    from dataclasses import replace

    from weightgen.dit import DiT

    misfit = DiT(replace(student.dit.cfg, out_dim=student.encoder.config.patch_size + 1))
    with pytest.raises(ValueError, match="gives 9 numbers per token; output 'patches' needs 8"):
        Generator(misfit, student.encoder, steps=1, noise="coords", output="patches")


def test_the_function_term_brings_the_students_predictions_to_the_teachers(setup, teacher, tmp_path):
    from weightgen.tune_target import TuneTarget
    from weightgen.encoder import PatchAutoencoder
    from weightgen.sampling import kept_start

    _, corpus, _ = setup
    encoder = PatchAutoencoder.load(teacher / "encoder")
    pair = TuneTarget("mlp:hidden=16", "digits", encoder.config.patch_size, 8, "coords")

    def state(run):
        with torch.no_grad():
            x0 = pair.one_step_x0(load_dit(run / "dit"), pair.start)
            return pair.state_from_latents(encoder, x0 + kept_start(pair.start, pair.coords, "matrices"))

    def kl_to_teacher(weight: float) -> float:
        cfg = DistillConfig(preset="tiny", steps=20, pairs_per_step=4, eval_every=20, lr=3e-3, neighbours=0,
                            function_weight=weight)
        distill(teacher, corpus, tmp_path / f"f{weight}", cfg, log=lambda line: None)
        return float(pair.distill_loss(state(tmp_path / f"f{weight}"), state(teacher), torch.arange(64)))

    assert kl_to_teacher(100.0) < kl_to_teacher(0.0)


def test_only_a_one_step_teacher_is_distilled_and_bad_settings_are_refused(setup, teacher, tmp_path):
    _, corpus, run = setup
    with pytest.raises(DistillError, match="one-step DiT from coordinate noise"):
        distill(run, corpus, tmp_path / "s", DistillConfig(steps=1))  # a diffusion DiT: DDIM from Gaussian noise
    with pytest.raises(DistillError, match="new run folder"):
        distill(teacher, corpus, teacher, DistillConfig(steps=1))
    with pytest.raises(DistillError, match="no corpus pair left"):
        distill(teacher, corpus, tmp_path / "s", DistillConfig(steps=1, holdout_archs=["mlp:hidden=16", "mlp:hidden=24x24"]))
    for bad, match in (({"preset": "XL"}, "unknown preset 'XL'"), ({"steps": 0}, "steps"), ({"function_weight": -1.0}, "function_weight"),
                       ({"loss_weighting": "values"}, "unknown loss_weighting 'values'; valid: elements, tensors")):
        with pytest.raises(ValueError, match=match):
            DistillConfig(**bad)
    assert not (tmp_path / "s").exists()
    result = CliRunner().invoke(app, ["dit", "distill", "--teacher", str(teacher), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--preset", "XL"])
    assert result.exit_code != 0 and "unknown preset 'XL'" in result.output and not (tmp_path / "cli").exists()
    result = CliRunner().invoke(app, ["dit", "distill", "--teacher", str(teacher), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--loss-weighting", "values"])
    assert result.exit_code != 0 and "unknown loss_weighting" in result.output and not (tmp_path / "cli").exists()
    result = CliRunner().invoke(app, ["dit", "distill", "--teacher", str(teacher), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--seed", "-1"])
    assert result.exit_code != 0 and "--seed" in result.output and not (tmp_path / "cli").exists()
    result = CliRunner().invoke(app, ["dit", "distill", "--teacher", str(run), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli")])
    assert result.exit_code != 0 and "one-step DiT" in result.output and not (tmp_path / "cli").exists()


def test_a_student_distilled_with_neighbours_trains_on_them_and_scores_the_corpus_pairs(setup, teacher, tmp_path):
    _, corpus, _ = setup
    lines = []
    cfg = DistillConfig(preset="tiny", steps=4, pairs_per_step=4, eval_every=4, neighbours=2, exclude_archs=["mlp:hidden=20"])
    summary = distill(teacher, corpus, tmp_path / "n", cfg, log=lines.append)
    assert any("4 training (architecture, task) pairs and 8 neighbours" in line for line in lines)
    assert summary["neighbours"] == 2 and summary["exclude_archs"] == ["mlp:hidden=20"]
    result = CliRunner().invoke(app, ["dit", "distill", "--teacher", str(teacher), "--corpus", str(corpus), "--out",
                                      str(tmp_path / "cli"), "--exclude-suite", str(tmp_path / "missing.yaml")])
    assert result.exit_code != 0 and "missing.yaml" in result.output and not (tmp_path / "cli").exists()


def test_the_targets_fine_tune_flops_are_what_a_flop_counter_gives_those_steps():
    # distill counts its targets' fine-tunes as steps × one training step, outside the (slow) counter: the same figure.
    from weightgen.flops import counting_flops

    from weightgen.training import count_step_flops
    from weightgen.tune_target import TuneTarget

    for arch, task in [("mlp:hidden=16x12", "digits"), ("cnn1d:channels=8x8", "mnist1d"),
                       ("transformer:dim=16,depth=1,heads=2,patch=8", "digits")]:
        target = TuneTarget(arch, task, 8, 4, "coords")
        state = {k: v.detach().clone() for k, v in target.model.state_dict().items()}
        with counting_flops() as counter:
            target.lookahead(state, 3, 16, torch.Generator().manual_seed(0))
        assert counter.get_total_flops() == 3 * count_step_flops(target.model, target.train, 16) > 0, arch


def test_a_student_can_learn_where_fine_tuning_takes_the_teachers_sample(setup, teacher, tmp_path):
    from weightgen.corpus import Corpus
    from weightgen.pairs import family_recipes

    _, corpus, _ = setup
    assert family_recipes(Corpus(corpus))["mlp"]["lr"] > 0  # each family's recipe, as the corpus trained it
    base = DistillConfig(preset="tiny", steps=20, pairs_per_step=2, eval_every=20, lr=3e-3, neighbours=0, output="patches")
    plain = distill(teacher, corpus, tmp_path / "plain", base, log=lambda line: None)
    moved = distill(teacher, corpus, tmp_path / "moved", DistillConfig(**{**base.__dict__, "target_steps": 30}),
                    log=lambda line: None)
    # The targets are the teacher's networks after 30 fine-tune steps: they classify better than the samples.
    assert moved["log"][0]["teacher_val_acc_median"] > plain["log"][0]["teacher_val_acc_median"] + 0.1
    assert moved["own_flops"] > plain["own_flops"]  # the fine-tunes that made the targets are counted
    assert moved["log"][-1]["target_error_median"] < 0.8 * moved["log"][0]["target_error_median"]
    assert json.loads((tmp_path / "moved" / "dit" / "distill.json").read_text())["target_steps"] == 30
    # Latent students learn the fine-tuned networks too, through the encoder.
    latent = distill(teacher, corpus, tmp_path / "latent", DistillConfig(**{**base.__dict__, "output": "latents",
                                                                             "target_steps": 30}), log=lambda line: None)
    assert latent["log"][0]["teacher_val_acc_median"] > plain["log"][0]["teacher_val_acc_median"]
    with pytest.raises(ValueError, match="target_steps must be >= 0"):
        DistillConfig(target_steps=-1)
    # Trained on each tensor's relative error instead, from the same seed: it learns, and not the same student.
    balanced = distill(teacher, corpus, tmp_path / "balanced", DistillConfig(**{**base.__dict__, "loss_weighting": "tensors"}),
                       log=lambda line: None)
    assert balanced["log"][-1]["target_error_median"] < 0.8 * balanced["log"][0]["target_error_median"]
    assert json.loads((tmp_path / "balanced" / "dit" / "distill.json").read_text())["loss_weighting"] == "tensors"
    plain_dit, balanced_dit = load_dit(tmp_path / "plain" / "dit"), load_dit(tmp_path / "balanced" / "dit")
    assert not all(torch.equal(a, b) for a, b in zip(plain_dit.state_dict().values(), balanced_dit.state_dict().values()))
    # A rebalancing teacher has no exact patches for a moved network: refused by name, nothing written.
    _, _, run = setup
    tune(run, corpus, tmp_path / "rebalanced", TuneConfig(steps=1, pairs_per_step=2, batch_size=16, eval_every=1,
                                                          rebalance="logits"), log=lambda line: None)
    with pytest.raises(DistillError, match="without rebalancing"):
        distill(tmp_path / "rebalanced", corpus, tmp_path / "refused", DistillConfig(target_steps=5), log=lambda line: None)
    assert not (tmp_path / "refused").exists()


def test_the_distillations_flop_count_is_what_a_counter_around_its_loop_gives(setup, teacher, tmp_path):
    """Each pair's step and each evaluation is counted once and then added (RepeatedFlops): the same total.

    Two distillations differ only in their last steps and evaluations; a counter around each sees every op, so
    the difference of those counts is what the longer one's own count must add (the function term included).
    """
    from weightgen.flops import counting_flops

    _, corpus, _ = setup
    counts = {}
    for steps in (2, 6):
        cfg = DistillConfig(preset="tiny", steps=steps, pairs_per_step=3, eval_every=2, neighbours=1, batch_size=16,
                            function_weight=0.5, output="patches")
        with counting_flops() as everything:
            summary = distill(teacher, corpus, tmp_path / f"s{steps}", cfg, log=lambda line: None)
        counts[steps] = (summary["own_flops"], everything.get_total_flops())
    assert counts[6][0] > counts[2][0] > 0
    assert counts[6][0] - counts[2][0] == counts[6][1] - counts[2][1]


def test_a_patch_writing_student_is_tuned_as_it_samples_and_counts_its_whole_cost(setup, teacher, tmp_path):
    """`weightgen dit tune` on a student: the lookahead scores the student's own samples, with neighbours."""
    from weightgen.tune_target import TuneTarget

    _, corpus, _ = setup
    distill(teacher, corpus, tmp_path / "student", DistillConfig(preset="tiny", steps=10, pairs_per_step=2, eval_every=10,
                                                                 neighbours=0, output="patches"), log=lambda line: None)
    student = Generator.from_run(tmp_path / "student")
    lines = []
    cfg = TuneConfig(steps=4, pairs_per_step=2, batch_size=16, eval_every=4, lr=3e-3, inner_steps=2, init_weight=0.0,
                     neighbours=2, exclude_archs=["mlp:hidden=20"])
    summary = tune(tmp_path / "student", corpus, tmp_path / "tuned", cfg, log=lines.append)
    tuned = Generator.from_run(tmp_path / "tuned")
    assert tuned.sampler == student.sampler and tuned.dit.cfg.out_dim == student.dit.cfg.out_dim  # samples as it did
    # The corpus's pairs are scored; their neighbours (two each, none excluded) are trained on as well.
    counts = next(line for line in lines if "neighbours" in line)  # "<n> training (architecture, task) pairs, <m> neighbours, ..."
    assert f"{2 * int(counts.split(' training')[0])} neighbours" in counts
    # Its samples are what the tuned DiT gives, and they moved.
    before = student.sample("mlp:hidden=16", "digits").state_dicts[0]
    after = tuned.sample("mlp:hidden=16", "digits").state_dicts[0]
    pair = TuneTarget("mlp:hidden=16", "digits", student.encoder.config.patch_size, student.dit.cfg.latent_dim, "coords")
    with torch.no_grad():
        direct = pair.weights(tuned.dit.eval(), tuned.encoder, pair.start, "matrices")
    assert all(torch.allclose(direct[k], after[k], atol=1e-5) for k in after)
    assert any(not torch.equal(before[k], after[k]) for k in after)
    # The whole cost: the student's (teacher and distillation included) and this tune, counted once each.
    assert summary["includes_base_generator"] and summary["own_flops"] > 0
    assert generator_training_flops(tmp_path / "tuned") == generator_training_flops(tmp_path / "student") + summary["own_flops"]
    suite = load_suite({"name": "s", "corpus": str(corpus), "generator": str(tmp_path / "tuned"), "methods": ["random", "generated"],
                        "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"}]})
    assert len(check_suite(suite))  # the bench takes it: no latents of its own, its cost is the recorded total
    again = tune(tmp_path / "tuned", corpus, tmp_path / "twice", TuneConfig(steps=1, pairs_per_step=1, batch_size=8,
                                                                            eval_every=1), log=lambda line: None)
    assert generator_training_flops(tmp_path / "twice") == generator_training_flops(tmp_path / "tuned") + again["own_flops"]
    with pytest.raises(ValueError, match="init_weight"):
        TuneConfig(init_weight=0.0)  # no lookahead: nothing left to score


def test_the_excluded_architectures_join_names_and_suites_once_each(tmp_path):
    """`--exclude-archs` and every `--exclude-suite` give one sorted list; a missing suite is an error that names it."""
    from weightgen.cli_dit import excluded
    from weightgen.suite import SuiteError, load_suite

    unseen = load_suite("suites/default.yaml").unseen_archs()
    got = excluded(f"mlp:hidden=20;{unseen[0]};", [Path("suites/default.yaml"), Path("suites/default.yaml")], "archs")
    assert got == sorted(set(unseen) | {"mlp:hidden=20"})
    with pytest.raises((SuiteError, OSError), match="missing.yaml"):
        excluded("", [tmp_path / "missing.yaml"], "archs")


def test_a_student_can_learn_the_retrieval_inits_of_its_pairs_moved_by_fine_tune_steps(setup, teacher, tmp_path):
    from weightgen.baselines import CorpusIndex
    from weightgen.corpus import Corpus
    from weightgen.pairs import corpus_pairs, family_recipe, family_recipes
    from weightgen.tune_target import TuneTarget

    _, corpus, _ = setup
    base = DistillConfig(preset="tiny", steps=20, pairs_per_step=2, eval_every=20, lr=3e-3, neighbours=2, output="patches")
    plain = distill(teacher, corpus, tmp_path / "plain", base, log=lambda line: None)
    kept = distill(teacher, corpus, tmp_path / "kept", DistillConfig(**{**base.__dict__, "target_start": "retrieval"}),
                   log=lambda line: None)
    # With no fine-tune steps a corpus pair's target is its own trained member (retrieval's pick for a seen pair):
    # the targets' accuracy is the members' own, far above the teacher's one-step samples.
    index, recipes = CorpusIndex(corpus), family_recipes(Corpus(corpus))
    accuracies = []
    for arch, task in corpus_pairs(Corpus(corpus)):
        member = index.finals[(index.finals["arch"] == arch) & (index.finals["task"] == task)]["member"].min()
        pair = TuneTarget(arch, task, 16, 4, "coords", family_recipe(recipes, arch)[0])
        accuracies.append(pair.val_acc(index.state_dict(member)))
    members_median = statistics.median(accuracies)
    assert kept["log"][0]["teacher_val_acc_median"] == pytest.approx(members_median, abs=1e-6)
    assert members_median > plain["log"][0]["teacher_val_acc_median"] + 0.1
    moved = distill(teacher, corpus, tmp_path / "moved", DistillConfig(**{**base.__dict__, "target_start": "retrieval",
                                                                           "target_steps": 10, "steps": 100, "eval_every": 100}),
                    log=lambda line: None)
    assert moved["own_flops"] > kept["own_flops"]  # the targets' fine-tune steps are counted
    # trained members are harder to write than the teacher's samples: the error falls, but slowly
    assert moved["log"][-1]["target_error_median"] < 0.97 * moved["log"][0]["target_error_median"]
    assert json.loads((tmp_path / "moved" / "dit" / "distill.json").read_text())["target_start"] == "retrieval"
    with pytest.raises(ValueError, match="unknown target_start 'member'; valid: teacher, retrieval"):
        DistillConfig(target_start="member")


def test_a_distillation_reuses_another_runs_targets_only_when_they_were_made_for_it(setup, teacher, tmp_path):
    from safetensors import safe_open

    from weightgen.distill_targets import TARGETS_FILE

    _, corpus, _ = setup
    cfg = DistillConfig(preset="tiny", steps=10, pairs_per_step=2, eval_every=10, lr=3e-3, neighbours=1, output="patches",
                        target_steps=5, seed=1)
    made = distill(teacher, corpus, tmp_path / "made", cfg, log=lambda line: None)
    stored = tmp_path / "made" / TARGETS_FILE
    assert stored.is_file()
    # benchmarks/family_accuracy.py --targets reads them back: every corpus pair's, and they score as the log says
    spec = importlib.util.spec_from_file_location("family_accuracy", ROOT / "benchmarks" / "family_accuracy.py")
    family_accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(family_accuracy)
    scores = family_accuracy.targets_accuracy(tmp_path / "made", corpus)
    assert list(scores) == corpus_pairs(Corpus(corpus))
    assert statistics.median(scores.values()) == pytest.approx(made["log"][0]["teacher_val_acc_median"])
    lines = []
    reused = distill(teacher, corpus, tmp_path / "reused", DistillConfig(**{**cfg.__dict__, "targets_from": str(tmp_path / "made")}),
                     log=lines.append)
    assert any("targets from" in line for line in lines)   # read, not fine-tuned again
    assert reused["log"] == made["log"]   # the same targets and seed: the same student
    assert reused["own_flops"] == made["own_flops"]   # and charged the fine-tunes that made them
    copy, original = (safe_open(str(path), framework="pt") for path in (tmp_path / "reused" / TARGETS_FILE, stored))
    assert copy.metadata() == original.metadata() and copy.keys() == original.keys()   # a reuse can be reused in turn
    assert all(torch.equal(copy.get_tensor(key), original.get_tensor(key)) for key in original.keys())
    # A student of other settings on the same targets: taught them, not the seed's others.
    longer = distill(teacher, corpus, tmp_path / "longer", DistillConfig(**{**cfg.__dict__, "steps": 20, "eval_every": 20,
                                                                          "targets_from": str(tmp_path / "made")}), log=lambda line: None)
    assert longer["log"][0]["teacher_val_acc_median"] == made["log"][0]["teacher_val_acc_median"]
    # Targets made with other fine-tune steps or another seed are refused by name; nothing is written.
    before = stored.read_bytes()
    for change, named in [({"target_steps": 6}, "target_steps 5 there, 6 here"), ({"seed": 2}, "seed 1 there, 2 here")]:
        with pytest.raises(DistillError, match=named):
            distill(teacher, corpus, tmp_path / "refused", DistillConfig(**{**cfg.__dict__, **change, "targets_from": str(tmp_path / "made")}),
                    log=lambda line: None)
        assert not (tmp_path / "refused").exists()
    assert stored.read_bytes() == before
    with pytest.raises(DistillError, match="no stored targets"):
        distill(teacher, corpus, tmp_path / "refused", DistillConfig(**{**cfg.__dict__, "targets_from": str(teacher)}), log=lambda line: None)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / TARGETS_FILE).write_bytes(before[: len(before) // 2])
    with pytest.raises(DistillError, match="truncated or corrupt"):
        distill(teacher, corpus, tmp_path / "refused", DistillConfig(**{**cfg.__dict__, "targets_from": str(tmp_path / "broken")}), log=lambda line: None)
    with pytest.raises(ValueError, match="targets_from reuses written targets"):
        DistillConfig(targets_from=str(tmp_path / "made"))
