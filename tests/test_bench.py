"""The benchmark: `weightgen generate`, a whole tiny suite end to end, and the baseline cache (scoring by hand-checked
numbers is in test_bench_score.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from weightgen.bench import check_suite, run_suite
from weightgen.bench_score import generated_beats
from weightgen.checkpoint import load_model
from weightgen.cli import app
from weightgen.corpus import Corpus
from weightgen.flops import generator_training_flops
from weightgen.generate import Generator, GeneratorError, save_generated
from weightgen.sampling import coordinate_noise, kept_start, template
from weightgen.suite import SuiteError, load_suite
from weightgen.tracking import tracking_uri

from test_bench_score import job_result


def test_generate_is_seeded_loadable_and_costed(setup, tmp_path):
    _, _, run = setup
    generator = Generator.from_run(run, steps=4)
    a, b = generator.sample("mlp:hidden=20", "digits", 2, seed=3), generator.sample("mlp:hidden=20", "digits", 2, seed=3)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a.state_dicts, b.state_dicts) for k in x)
    assert not torch.equal(a.state_dicts[0]["net.1.weight"], a.state_dicts[1]["net.1.weight"])
    assert a.flops > 0 and a.wall_time > 0
    assert generator.sample("mlp:hidden=20", "digits", 1, seed=3).flops < a.flops  # cost grows with samples
    best = generator.best_of("mlp:hidden=20", "digits", 3, seed=3, batch_size=32)
    assert best.chosen == min(range(3), key=best.scores.__getitem__) and best.flops > generator.sample(
        "mlp:hidden=20", "digits", 3, seed=3).flops  # the scoring passes are charged
    folder = save_generated(tmp_path / "gen", best.state_dicts[best.chosen], "mlp:hidden=20", "digits", generator)
    model = load_model(folder)
    assert torch.equal(model.state_dict()["net.1.weight"], best.state_dicts[best.chosen]["net.1.weight"])


def test_coordinate_noise_is_shared_where_positions_are_and_salted():
    narrow, wide = (template(f"mlp:hidden={w}", "digits", 8) for w in (20, 30))
    a, b = coordinate_noise(narrow.coords, 8), coordinate_noise(wide.coords, 8)
    assert torch.equal(a, coordinate_noise(narrow.coords, 8))  # deterministic
    where = {tuple(c): i for i, c in enumerate(wide.coords[:, [1, 2, 3, 4]].tolist())}
    shared = [(i, where[tuple(c)]) for i, c in enumerate(narrow.coords[:, [1, 2, 3, 4]].tolist()) if tuple(c) in where]
    assert len(shared) > len(narrow) // 2  # most of the narrow net's positions exist in the wide one
    assert all(torch.equal(a[i], b[j]) for i, j in shared)
    assert not torch.equal(a[0], a[1]) and not torch.equal(coordinate_noise(narrow.coords, 8, salt=1), a)


def test_the_start_is_kept_on_matrices_only_when_asked():
    tokens = template("mlp:hidden=20", "digits", 8)
    start = coordinate_noise(tokens.coords, 8)
    vectors = tokens.coords[:, 7] == 1  # biases
    assert vectors.any() and (~vectors).any()
    kept = kept_start(start, tokens.coords, "matrices")
    assert torch.equal(kept[~vectors], start[~vectors]) and not kept[vectors].any()
    assert torch.equal(kept_start(start, tokens.coords, "all"), start) and not kept_start(start, tokens.coords, "none").any()
    with pytest.raises(ValueError, match="unknown keep_noise"):
        Generator(None, None, keep_noise="some")


def test_a_run_that_names_its_sampler_is_sampled_that_way(setup, tmp_path):
    _, corpus, run = setup
    fixed = tmp_path / "run"
    shutil.copytree(run / "encoder", fixed / "encoder")
    shutil.copytree(run / "dit", fixed / "dit")
    config = json.loads((fixed / "dit" / "config.json").read_text())
    (fixed / "dit" / "config.json").write_text(json.dumps({**config, "sampler": {"steps": 1, "noise": "coords", "keep_noise": True}}))
    generator = Generator.from_run(fixed, steps=4)
    assert generator.sampler == {"steps": 1, "guidance": 1.0, "noise": "coords", "keep_noise": "all",  # True, as older runs wrote it
                                 "rebalance": "none", "output": "latents", "relabel": False, "match_scales": False,
                                 "init_spectrum": False, "via_archs": 0, "canvas": {}}  # no output named: latents, as before patch students
    a, b = (generator.sample("mlp:hidden=20", "digits", 2, seed=s).state_dicts for s in (3, 7))
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)  # the start ignores the seed...
    assert not torch.equal(a[0]["net.1.weight"], a[1]["net.1.weight"])  # ...but not the sample index
    dropped = Generator(generator.dit, generator.encoder, steps=1, noise="coords", keep_noise=False)
    assert not torch.equal(dropped.sample("mlp:hidden=20", "digits").state_dicts[0]["net.1.weight"], a[0]["net.1.weight"])
    with pytest.raises(GeneratorError, match="no latents.safetensors"):  # refused before any fine-tuning
        check_suite(_tiny_suite(corpus, fixed))
    shutil.copy(run / "latents.safetensors", fixed / "latents.safetensors")
    before = generator_training_flops(fixed)
    (fixed / "dit" / "functional_finetune.json").write_text(json.dumps({"flops": 12345}))
    assert generator_training_flops(fixed) == before + 12345  # a task-loss fine-tune is part of the generator's cost
    (fixed / "dit" / "config.json").write_text(json.dumps({**config, "sampler": {"noise": "uniform"}}))
    with pytest.raises(GeneratorError, match="bad sampler"):
        Generator.from_run(fixed)


def test_generate_cli_writes_a_loadable_folder_and_refuses_bad_input(setup, tmp_path):
    _, _, run = setup
    runner = CliRunner()
    ok = runner.invoke(app, ["generate", "--arch", "mlp:hidden=20", "--task", "digits", "--out", str(tmp_path / "g"),
                             "--run", str(run), "--samples", "2", "--ddim-steps", "3"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "g" / "config.json").read_text())["samples"] == 2
    load_model(tmp_path / "g")
    bad = runner.invoke(app, ["generate", "--arch", "mlp:hidden=oops", "--task", "digits", "--out", str(tmp_path / "h"),
                              "--run", str(run)])
    assert bad.exit_code == 2 and "hidden" in bad.output and not (tmp_path / "h").exists()
    missing = runner.invoke(app, ["generate", "--arch", "mlp", "--task", "digits", "--out", str(tmp_path / "h"),
                                  "--run", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no trained" in missing.output


def test_a_missing_generator_is_a_clear_error(tmp_path):
    with pytest.raises(GeneratorError, match="no trained encoder or dit"):
        Generator.from_run(tmp_path)


def _script(name: str):
    """A script of benchmarks/ as a module (they are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _tiny_suite(corpus, run, **changes):
    return load_suite({
        "name": "tiny", "corpus": str(corpus), "generator": str(run), "seeds": [100, 101], "samples": 2, "ddim_steps": 3,
        "recipe": {"steps": 40, "eval_every": 10, "batch_size": 64},
        "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"},
                  {"arch": "mlp:hidden=20", "task": "digits", "split": "unseen-arch"},
                  {"arch": "mlp:hidden=16", "task": "digits:label_perm=2", "split": "unseen-task", "seeds": [100]},
                  {"arch": "mlp:hidden=20x20", "task": "digits:label_perm=2", "split": "unseen-both", "seeds": [100]}],
        **changes,
    })


def test_a_tiny_suite_end_to_end(setup, tmp_path):
    _, corpus, run = setup
    suite = _tiny_suite(corpus, run)
    outcome = run_suite(suite, tmp_path / "out")
    table = outcome["table"]
    assert len(table) == (2 + 2 + 1 + 1) * len(suite.methods)
    na = table[table["status"] == "n/a"]
    assert set(na["method"]) == {"noisy-nearest"} and set(na["split"]) == {"unseen-arch", "unseen-both"}
    ok = table[table["status"] == "ok"]
    assert ok["final_test_acc"].between(0, 1).all() and (ok["flops_per_step"] > 0).all()
    assert (ok[ok["method"].str.startswith("generated")]["init_flops"] > 0).all()
    assert (ok[ok["method"] == "random"]["init_flops"] == 0).all()
    # noisy-nearest on a seen case starts from a trained member: far above random at step 0
    seen = ok[ok["split"] == "seen"].groupby("method")["test_acc_0"].mean()
    assert seen["noisy-nearest"] > seen["random"] + 0.2
    assert ok[ok["split"] == "seen"]["novelty"].notna().all()
    for name in ("results.parquet", "results.csv", "curves.parquet", "summary.csv", "summary.md",
                 "learning_curves.png", "compute_saved.png", "amortisation.json", "generated_beats.csv",
                 "grid_limits.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert pd.read_parquet(tmp_path / "out" / "results.parquet").shape == table.shape
    amort = outcome["amortisation"]
    assert amort["corpus_flops"] > 0 and amort["generator_flops"] > 0

    mlflow.set_tracking_uri(tracking_uri())
    parent = mlflow.get_run(outcome["mlflow_run_id"])
    children = mlflow.search_runs(experiment_ids=[parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == len(suite.cases) * len(suite.methods)
    assert "compute_saved_median/seen/random" in parent.data.metrics

    report = CliRunner().invoke(app, ["report", "--experiment", "weightgen-bench", "--metric", "compute_saved_median*",
                                      "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert "bench-tiny" in (tmp_path / "report" / "report.md").read_text()

    # benchmarks/curve_gap.py reads the same folder: each method's curve at the asked steps, beside its scores.
    curve_gap = _script("curve_gap").curve_gap

    gap = curve_gap(tmp_path / "out", ["random", "generated"], [0, 10])
    assert len(gap) == len(suite.cases) * 2 and gap[["@0", "@10"]].notna().all().all()
    first = ok[(ok["case_index"] == 0) & (ok["method"] == "random")]
    row = gap[(gap["method"] == "random")].iloc[0]
    assert row["saved"] == pytest.approx(first["compute_saved"].median(), abs=1e-3)
    with pytest.raises(SystemExit, match="no results for method"):
        curve_gap(tmp_path / "out", ["no-such-method"], [0])

    # benchmarks/beats_table.py judges one bench's generated rows against another's baselines; against its own
    # baselines it repeats the bench's shares, and pooling two suites (here the same one twice) doubles the cases.
    beats_table, out, splits = _script("beats_table").beats_table, str(tmp_path / "out"), ("seen", "unseen-arch")
    shares, medians = beats_table([f"1:a={out}", f"1:b={out}"], [f"a={out}", f"b={out}"], splits, pool=True)
    key = ["method", "split", "baseline"]
    own = generated_beats(table[table["split"].isin(splits)]).set_index(key)
    mine = shares[shares["suite"] == "a"].set_index(key)
    assert mine["wins"].to_dict() == own["wins"].to_dict() and mine["median_gap"].to_dict() == own["median_gap"].to_dict()
    pooled = shares[shares["suite"] == "pooled"].set_index(key)
    assert (pooled["cases"] == 2 * mine["cases"]).all() and (pooled["wins"] == 2 * mine["wins"]).all()
    assert medians[medians["suite"] == "pooled"]["interval"].ne("—").all()  # two cases per split: an interval
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "out", other)
    moved = table.assign(random_flops_to_target=table["random_flops_to_target"] * 2)
    moved.to_parquet(other / "results.parquet")
    with pytest.raises(SystemExit, match="disagree on random's steps"):
        beats_table([f"1:a={other}"], [f"a={out}"], splits)
    # benchmarks/arms_table.py --intervals: each seed's interval beside its median (one case per split here: none)
    arms = _script("arms_table").arms_table([f"x:1:tiny={out}"], ["generated"], intervals=True)
    assert arms["seed 1 90% CI"].eq("—").all() and arms["seed 1"].notna().all()


def test_a_leaking_suite_is_refused_before_any_work(setup, tmp_path):
    _, corpus, run = setup
    suite = _tiny_suite(corpus, run, cases=[{"arch": "mlp:hidden=16", "task": "digits", "split": "unseen-arch"}])
    with pytest.raises(SuiteError, match="leaks"):
        run_suite(suite, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sample_with_non_finite_weights_is_refused(setup):
    _, _, run = setup
    generator = Generator.from_run(run, steps=2)
    with torch.no_grad():
        generator.encoder.latent_std.fill_(float("nan"))  # a broken decoder path
    with pytest.raises(GeneratorError, match="non-finite weights"):
        generator.sample("mlp:hidden=20", "digits", 1)


# --------------------------------------------------------------------------- the baseline cache
def _suite_file(path: Path, corpus, run, **changes) -> Path:
    import yaml

    spec = {"name": "cache", "corpus": str(corpus), "generator": str(run), "seeds": [100], "ddim_steps": 2,
            "methods": ["random", "retrieval", "generated"], "recipe": {"steps": 20, "eval_every": 10, "batch_size": 64},
            "cases": [{"arch": "mlp:hidden=16", "task": "digits", "split": "seen"},
                      {"arch": "mlp:hidden=20", "task": "digits", "split": "unseen-arch"}], **changes}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_baseline_key_follows_what_the_baselines_read(setup, tmp_path):
    from weightgen.bench import Job
    from weightgen.bench_cache import baseline_key

    _, corpus, run = setup
    suite = _tiny_suite(corpus, run)
    job = Job(0, suite.cases[0], 100)
    key = baseline_key(suite, job, ["random", "retrieval"])
    assert key == baseline_key(suite, job, ["retrieval", "random"])
    assert key == baseline_key(_tiny_suite(corpus, run, name="other"), Job(3, suite.cases[0], 100), ["random", "retrieval"])
    assert key != baseline_key(suite, Job(0, suite.cases[0], 101), ["random", "retrieval"])  # seed
    assert key != baseline_key(suite, Job(0, suite.cases[1], 100), ["random", "retrieval"])  # architecture
    assert key != baseline_key(suite, job, ["random"])  # methods
    assert key != baseline_key(suite.with_sources(label_map=True), job, ["random", "retrieval"])  # label map
    assert key == baseline_key(suite.with_sources(label_map=False), job, ["random", "retrieval"])
    other_recipe = _tiny_suite(corpus, run, recipe={"steps": 40, "eval_every": 10, "batch_size": 64, "lr": 0.02})
    assert key != baseline_key(other_recipe, job, ["random", "retrieval"])
    moved = tmp_path / "corpus"  # the same members, another manifest (one member fewer): another corpus
    shutil.copytree(corpus, moved)
    shutil.rmtree(next((moved / "members").iterdir()))
    Corpus(moved).rebuild_manifest()
    assert key != baseline_key(_tiny_suite(moved, run), job, ["random", "retrieval"])
    with pytest.raises(ValueError, match="never cached"):
        baseline_key(suite, job, ["random", "generated"])


def test_a_reused_result_takes_the_names_and_place_of_the_suite_that_reuses_it(setup):
    from weightgen.bench import Job
    from weightgen.bench_cache import relabel

    _, corpus, run = setup
    made = _tiny_suite(corpus, run)
    result = {**job_result(0, "random", 100, [0.1, 0.5, 0.6, 0.7]), "random_predictions": {"100": [1, 2]}}
    other = _tiny_suite(corpus, run, name="other",
                        cases=[made.cases[1].model_dump(), {**made.cases[0].model_dump(), "split": "unseen-task"}])
    moved = relabel(result, other, Job(1, other.cases[1], 100), reused=True)
    (row,) = moved["rows"]
    assert (row["suite"], row["case"], row["case_index"], row["split"], row["reused"]) == (
        "other", other.cases[1].case_id, 1, "unseen-task", True)
    assert moved["case_index"] == 1 and {c["case_index"] for c in moved["curves"]} == {1}
    assert [c["val_acc"] for c in moved["curves"]] == [0.1, 0.5, 0.6, 0.7] and result["rows"][0]["suite"] == "t"


def test_a_second_bench_reuses_the_baselines_and_runs_the_generator_again(setup, tmp_path):
    from flows.evaluate import evaluate_flow

    _, corpus, run = setup
    suite = _suite_file(tmp_path / "suite.yaml", corpus, run)
    assert evaluate_flow(suite=str(suite), out_dir=str(tmp_path / "a"), workers=1)["reused_rows"] == 0
    assert evaluate_flow(suite=str(suite), out_dir=str(tmp_path / "b"), workers=1)["reused_rows"] == 4  # 2 cases × 2 baselines
    first, second = (pd.read_parquet(tmp_path / d / "results.parquet").sort_values(["case_index", "method"])
                     .reset_index(drop=True) for d in ("a", "b"))
    assert not first["reused"].any()
    assert second["reused"].tolist() == (second["method"] != "generated").tolist()
    measured = ["final_val_acc", "final_test_acc", "val_acc_0", "flops_per_step", "init_flops", "compute_saved", "novelty"]
    pd.testing.assert_frame_equal(first[measured], second[measured])  # the generated rows are recomputed, and equal
    curves = [pd.read_parquet(tmp_path / d / "curves.parquet").sort_values(["case_index", "method", "step"])
              .reset_index(drop=True) for d in ("a", "b")]
    pd.testing.assert_frame_equal(*curves)

    # benchmarks/bench_diff.py sets two benches side by side: the same generator twice differs by nothing.
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_diff", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diff.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cases, splits = script.bench_diff(tmp_path / "a", tmp_path / "b", "generated")
    assert len(cases) == 2 and (cases["b - a"] == 0).all() and (splits["b - a"] == 0).all()
    own = first[first["method"] == "generated"].set_index("arch")["compute_saved"].fillna(0.0).round(3)
    assert cases.set_index("arch")["a"].to_dict() == own.to_dict() and "retrieval" in cases
    with pytest.raises(SystemExit, match="no results for method"):
        script.bench_diff(tmp_path / "a", tmp_path / "b", "moment")
    # ... and judges a change over several pairs' cases: here no change, in twice the cases
    unrounded = script.bench_diff(tmp_path / "a", tmp_path / "b", "retrieval", rounded=False)[0]
    change = script.paired_change(pd.concat([unrounded] * 2)).set_index("split")
    assert change["cases"].tolist() == [2 * n for n in cases.groupby("split").size().reindex(change.index)]
    assert (change["b wins"] == 0).all() and (change["median b - a"] == 0).all()
    assert change["90% CI (cases)"].eq("0.00 – 0.00").all()
    better = tmp_path / "better"
    shutil.copytree(tmp_path / "b", better)
    lifted = second.assign(compute_saved=second["compute_saved"].fillna(0.0) + 0.25 * (second["method"] == "retrieval"))
    lifted.to_parquet(better / "results.parquet")
    change = script.paired_change(script.bench_diff(tmp_path / "a", better, "retrieval", rounded=False)[0])
    assert (change["b wins"] == change["cases"]).all() and change["median b - a"].tolist() == pytest.approx([0.25] * len(change))

    evaluate_flow(suite=str(suite), out_dir=str(tmp_path / "d"), workers=1, refresh_baselines=True)
    fresh = pd.read_parquet(tmp_path / "d" / "results.parquet").sort_values(["case_index", "method"]).reset_index(drop=True)
    assert not fresh["reused"].any()
    pd.testing.assert_frame_equal(fresh[measured], second[measured])  # what the cache served is what a fresh run measures

    # Narrowed to one split and the generator (random kept): the same rows as the whole suite's for that case.
    evaluate_flow(suite=str(suite), out_dir=str(tmp_path / "e"), workers=1, methods=["generated"], splits=["unseen-arch"])
    narrow = pd.read_parquet(tmp_path / "e" / "results.parquet").sort_values(["method"]).reset_index(drop=True)
    assert narrow["method"].tolist() == ["generated", "random"] and set(narrow["split"]) == {"unseen-arch"}
    whole = second[second["split"].eq("unseen-arch") & second["method"].isin(["random", "generated"])]
    pd.testing.assert_frame_equal(narrow[measured], whole.sort_values(["method"]).reset_index(drop=True)[measured])
