"""The pipeline flow in-process (ephemeral Prefect, MLflow in a temp store): validation, linking, caching."""

from __future__ import annotations

import shutil

import mlflow
import pytest
import yaml
from prefect.exceptions import ParameterTypeError

from flows.pipeline import flatten_summaries, pipeline_flow, stage_key
from weightgen.tracking import tracking_uri

GRID = {"name": "pipe", "seeds": [0], "checkpoint_steps": [20], "recipe": {"lr": 0.01, "batch_size": 64, "steps": 40, "eval_every": 20},
        "archs": ["mlp:hidden=16", "mlp:hidden=8x8"], "tasks": ["digits"]}
SUITE = {"name": "pipe", "seeds": [100], "recipe": {"lr": 0.01, "batch_size": 64, "steps": 40, "eval_every": 10},
         "methods": ["random", "generated"], "samples": 1, "ddim_steps": 5,
         "cases": [{"arch": "mlp:hidden=12", "task": "digits", "split": "unseen-arch"}]}


@pytest.mark.parametrize("bad", [{"corpus": {"workers": 0}}, {"dit": {"preset": "XL"}}, {"encoder": {"holdout": 1.0}},
                                 {"name": "has spaces"}, {"evaluate": {"suite": "s.yaml", "typo": 1}},
                                 {"tune": {"inner_steps": 0}}, {"distill": {"init_spectrum": True}}])
def test_bad_parameters_are_refused_before_any_work(bad, tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTGEN_MLRUNS", str(tmp_path / "mlruns"))
    with pytest.raises(ParameterTypeError):
        pipeline_flow(corpus_dir=str(tmp_path / "corpus"), run_dir=str(tmp_path / "run"), **bad)
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "mlruns").exists()


def test_a_distil_stage_without_the_tune_it_learns_from_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTGEN_MLRUNS", str(tmp_path / "mlruns"))
    with pytest.raises(ValueError, match="distil stage needs the tune stage"):
        pipeline_flow(corpus_dir=str(tmp_path / "corpus"), run_dir=str(tmp_path / "run"), tune={"enabled": False},
                      distill={"enabled": True})
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "mlruns").exists()


def test_stage_key_follows_settings_and_what_the_stage_reads():
    key = stage_key("encoder", {"steps": 1}, {"manifest": "a"})
    assert key == stage_key("encoder", {"steps": 1}, {"manifest": "a"})
    assert key != stage_key("encoder", {"steps": 2}, {"manifest": "a"})
    assert key != stage_key("encoder", {"steps": 1}, {"manifest": "b"})
    assert key != stage_key("dit", {"steps": 1}, {"manifest": "a"})
    assert flatten_summaries({"dit": {"loss": 1, "ok": True, "name": "x"}}) == {"dit/loss": 1.0}


def _tags(run_id: str) -> dict[str, str]:
    return mlflow.MlflowClient().get_run(run_id).data.tags


def test_pipeline_links_its_mlflow_runs_registers_models_and_reuses_finished_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTGEN_MLRUNS", str(tmp_path / "mlruns"))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    params = dict(name="t", corpus_dir=str(tmp_path / "corpus"), run_dir=str(tmp_path / "run"),
                  corpus={"grid": str(tmp_path / "grid.yaml"), "workers": 1},
                  encoder={"patch_size": 8, "latent_dim": 4, "steps": 20, "min_step": 0, "holdout": 0.25},
                  dit={"steps": 4, "batch_size": 4, "preset": "tiny", "checkpoint_every": 0, "eval_every": 0, "samples": 1},
                  tune={"steps": 2, "lookahead_steps": 1, "inner_steps": 2},
                  distill={"enabled": True, "preset": "tiny", "steps": 2, "neighbours": 1, "seed": 3, "tune_steps": 1,
                           "tune_inner_steps": 1, "tune_neighbours": 1, "init_spectrum": True},
                  evaluate={"suite": str(tmp_path / "suite.yaml"), "workers": 1})
    first = pipeline_flow(**params)
    assert set(first["stages"]) == {"corpus", "encoder", "dit", "tune", "distill", "evaluate"}
    # The tune stage ran the recipe's two phases, each from the one before, and the evaluation benched the last.
    lookahead = tmp_path / "run" / "tuned-lookahead"
    assert first["stages"]["tune"]["generator_run"] == str(lookahead) and first["stages"]["tune"]["phases"] == 2
    summary = __import__("json").loads((lookahead / "dit" / "functional_finetune.json").read_text())
    assert summary["base_run"] == str(tmp_path / "run" / "tuned") and summary["inner_steps"] == 2 and summary["steps"] == 1
    # The distil stage learnt from the last tune, kept the suite's unseen architecture out, tuned the student
    # through the reshape, and the tuned student was benched.
    student = tmp_path / "run" / "distilled"
    distilled = __import__("json").loads((student / "dit" / "distill.json").read_text())
    assert distilled["teacher_run"] == str(lookahead) and distilled["exclude_archs"] == ["mlp:hidden=12"]
    assert distilled["seed"] == 3  # the stage's settings reach the distillation
    student_tune = __import__("json").loads((tmp_path / "run" / "distilled-tuned" / "dit" / "functional_finetune.json").read_text())
    assert student_tune["base_run"] == str(student) and student_tune["exclude_archs"] == ["mlp:hidden=12"]
    assert (student_tune["lr"], student_tune["init_spectrum"], student_tune["neighbours"]) == (1e-4, True, 1)
    assert first["stages"]["distill"]["generator_run"] == str(tmp_path / "run" / "distilled-tuned")
    results = __import__("pandas").read_csv(tmp_path / "run" / "bench" / "results.csv")
    assert set(results.loc[results["method"] == "generated", "source"]) == {str(tmp_path / "run" / "distilled-tuned")}
    assert first["metrics"]["tune/tune_flops"] == summary["flops"] > summary["own_flops"] > 0
    assert first["metrics"]["corpus/corpus_members"] == 2 and "evaluate/reach_rate/unseen-arch/generated" in first["metrics"]
    assert (tmp_path / "run" / "bench").is_dir()  # evaluate's default out_dir: <run_dir>/bench

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    pipeline_run = client.get_run(first["mlflow_run_id"])
    assert pipeline_run.info.run_name == "pipeline-t" and pipeline_run.info.status == "FINISHED"
    assert pipeline_run.data.params["encoder.latent_dim"] == "4" and pipeline_run.data.params["corpus.workers"] == "1"
    assert pipeline_run.data.tags["prefect.flow_run_id"] == first["flow_run_id"]
    assert pipeline_run.data.metrics["encoder/acc_kept_median"] == first["stages"]["encoder"]["acc_kept_median"]
    for stage, ids in first["mlflow_runs"].items():
        assert ids and pipeline_run.data.tags[f"weightgen.run.{stage}"] == ",".join(ids)
        assert pipeline_run.data.tags[f"weightgen.cached.{stage}"] == "false"
        for run_id in ids:
            tags = _tags(run_id)
            assert tags["weightgen.pipeline_flow_run_id"] == first["flow_run_id"]
            assert tags["weightgen.pipeline_run_id"] == first["mlflow_run_id"] and tags["mlflow.runName"]
    assert len(first["mlflow_runs"]["tune"]) == 2  # one MLflow run per tune phase
    assert len(first["mlflow_runs"]["distill"]) == 2  # the distillation's and the student tune's
    (dit_run,) = first["mlflow_runs"]["dit"]
    assert _tags(dit_run)["prefect.parent_flow_run_id"] == first["flow_run_id"]
    for model, (run_id,) in (("weightgen-encoder", first["mlflow_runs"]["encoder"]), ("weightgen-dit", (dit_run,))):
        (version,) = client.search_model_versions(f"name = '{model}'")
        assert version.run_id == run_id
        assert mlflow.pytorch.load_model(f"models:/{model}/{version.version}") is not None
    stage_runs = len(mlflow.search_runs(search_all_experiments=True, filter_string="tags.`weightgen.stage` != 'pipeline'"))

    again = pipeline_flow(**params)  # same inputs: every stage reused, no stage subflow runs, no new stage MLflow runs
    assert again["stages"]["encoder"] == first["stages"]["encoder"] and again["mlflow_runs"] == first["mlflow_runs"]
    assert all(_tags(again["mlflow_run_id"])[f"weightgen.cached.{s}"] == "true" for s in first["stages"])
    assert len(mlflow.search_runs(search_all_experiments=True, filter_string="tags.`weightgen.stage` != 'pipeline'")) == stage_runs

    shutil.rmtree(tmp_path / "run" / "bench")  # a removed output is not trusted: that stage alone runs again
    third = pipeline_flow(**params)
    cached = {s: _tags(third["mlflow_run_id"])[f"weightgen.cached.{s}"] for s in first["stages"]}
    assert cached == {"corpus": "true", "encoder": "true", "dit": "true", "tune": "true", "distill": "true", "evaluate": "false"}
    assert (tmp_path / "run" / "bench").is_dir() and third["mlflow_runs"]["evaluate"] != first["mlflow_runs"]["evaluate"]


def test_nightly_defaults_fit_together_and_a_fresh_night_clears_only_its_own_folders(tmp_path):
    """The committed baseline's grid, encoder and DiT settings are valid and its corpus fits the smoke suite."""
    import pandas as pd

    from flows.nightly import prepare_work_dir
    from flows.stage_settings import DiTSettings, EncoderSettings, TuneSettings
    from weightgen.regression import load_baseline
    from weightgen.specs import parse_arch
    from weightgen.suite import check_splits, load_suite
    from weightgen.zoo import expand, load_grid

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    baseline = load_baseline(root / "configs" / "nightly-baseline.yaml")
    EncoderSettings(**baseline.settings["encoder"]), DiTSettings(**baseline.settings["dit"])
    assert TuneSettings(**baseline.settings["tune"]).phases("run")  # the nightly judges a tuned generator
    for sub in ("corpus", "run", "bench", "keep"):
        (tmp_path / sub).mkdir()
    grid_path = prepare_work_dir.fn(str(tmp_path), baseline, "", True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml", "keep"]
    members = expand(load_grid(grid_path))
    assert any(m.parent for m in members)  # the nightly builds its corpus in a shared frame, as the default grid does
    manifest = pd.DataFrame([{"member": m.member_id, "arch": m.arch, "task": m.task, "seed": m.seed,
                              "family": parse_arch(m.arch).family} for m in members])
    check_splits(load_suite(root / "suites" / "smoke.yaml"), manifest)  # raises on a leak or a case the corpus cannot serve
    assert prepare_work_dir.fn(str(tmp_path), baseline, "given.yaml", False) == "given.yaml"
