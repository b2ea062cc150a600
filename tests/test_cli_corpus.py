"""End to end: `weightgen corpus build` runs the Prefect flow (ephemeral), fills the corpus and MLflow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from weightgen.cli import app
from weightgen.corpus import Corpus
from weightgen.flops import generator_training_flops

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "grids" / "tiny.yaml"


def _weightgen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightgen.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny grid built twice through the CLI with two worker processes."""
    tmp = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "WEIGHTGEN_MLRUNS": str(tmp / "mlruns"),
           "COLUMNS": "200"}
    out = tmp / "corpus"
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        proc = _weightgen("corpus", "build", "--grid", str(TINY), "--out", str(out), "--workers", "2", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs.append((proc, time.perf_counter() - started))
    return out, tmp / "mlruns", runs


def test_build_fills_the_corpus(built):
    out, _, runs = built
    frame = Corpus(out).manifest()
    # tiny grid: 4 archs × 2 tasks, compatible pairs only = 6 members, steps 20 and 40 each
    assert frame["member"].nunique() == 6 and len(frame) == 12
    assert set(frame["family"]) == {"mlp", "cnn1d", "cnn2d", "transformer"}
    assert (frame["flops_per_step"] > 0).all()
    assert "members_trained" in runs[0][0].stdout


def test_rerun_skips_everything_quickly(built):
    _, _, runs = built
    (first, first_time), (second, second_time) = runs
    assert re.search(r"members_skipped\s*│\s*6\s*│", second.stdout), second.stdout
    assert re.search(r"members_trained\s*│\s*0\s*│", second.stdout), second.stdout
    assert "6 members complete already, 0 to train" in second.stderr + second.stdout
    assert second_time < first_time


def test_each_build_is_logged_to_mlflow(built):
    out, mlruns, _ = built
    mlflow.set_tracking_uri(f"sqlite:///{mlruns / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["weightgen-corpus"], order_by=["start_time ASC"])
    assert len(runs) == 2
    assert list(runs["metrics.members_trained"]) == [6, 0]
    assert list(runs["metrics.members_skipped"]) == [0, 6]
    assert (runs["metrics.corpus_checkpoints"] == 12).all()
    assert (runs["params.grid"] == "tiny").all() and (runs["tags.mlflow.runName"] == "corpus-tiny").all()
    assert runs["tags.prefect.flow_run_id"].str.len().min() > 0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs["run_id"][0])}
    assert {"manifest.parquet", "corpus_accuracy.png", "grid.yaml"} <= artifacts


def test_ls_tokens_and_errors(built, tmp_path):
    out, _, _ = built
    runner = CliRunner()
    listing = runner.invoke(app, ["corpus", "ls", "--corpus", str(out)], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "6 members, 12 checkpoints" in listing.output
    checkpoint = next((out / "members").glob("*/step-0000040"))
    tokens = runner.invoke(app, ["tokens", str(checkpoint), "--patch-size", "8"], env={"COLUMNS": "200"})
    assert tokens.exit_code == 0 and "exact round trip: True" in tokens.output

    empty = runner.invoke(app, ["corpus", "ls", "--corpus", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "is empty" in empty.output
    bad_grid = tmp_path / "bad.yaml"
    bad_grid.write_text("archs: ['mlp:hidden=0']\ntasks: [mnist1d]\n")
    refused = runner.invoke(app, ["corpus", "build", "--grid", str(bad_grid), "--out", str(tmp_path / "c")])
    assert refused.exit_code == 2 and "hidden" in refused.output
    assert not (tmp_path / "c").exists()  # refused before any work
    other_recipe = tmp_path / "tiny-lr.yaml"  # the tiny grid's networks trained at another learning rate
    other_recipe.write_text(TINY.read_text().replace("lr: 0.01", "lr: 0.02"))
    before = Corpus(out).manifest()
    mixed = runner.invoke(app, ["corpus", "build", "--grid", str(other_recipe), "--out", str(out)], env={"COLUMNS": "200"})
    assert mixed.exit_code == 2 and "already holds 6 of grid 'tiny'" in mixed.output
    pd.testing.assert_frame_equal(Corpus(out).manifest(), before)  # the stored corpus is as it was
    missing = runner.invoke(app, ["corpus", "import", str(tmp_path / "no-such-folder"), "--corpus", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_import_through_the_cli(tmp_path):
    from weightgen.hub import export_checkpoint
    from weightgen.models import build_model
    from weightgen.specs import parse_arch, parse_task

    arch, task = parse_arch("mlp:hidden=8"), parse_task("digits")
    config = {"arch": arch.model_dump(), "arch_string": arch.to_string(), "task": task.model_dump(),
              "task_string": task.to_string(), "seed": 3, "step": 7, "metrics": {"test_acc": 0.5}}
    export_checkpoint(tmp_path / "my-model", build_model(arch, (8, 8), seed=3).state_dict(), config)
    result = CliRunner().invoke(app, ["corpus", "import", str(tmp_path / "my-model"), "--corpus", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "imported hub--my-model" in result.output
    frame = Corpus(tmp_path / "c").manifest()
    assert frame[["member", "family", "task", "seed", "step"]].values.tolist() == [["hub--my-model", "mlp", "digits", 3, 7]]


def test_run_chains_corpus_encoder_dit_and_bench(built, tmp_path):
    out, mlruns, _ = built
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "WEIGHTGEN_MLRUNS": str(mlruns), "COLUMNS": "200"}
    (tmp_path / "prefect").mkdir()
    proc = _weightgen("run", "--grid", str(TINY), "--corpus", str(out), "--run", str(tmp_path / "run"),
                      "--encoder-steps", "40", "--dit-steps", "3", "--tune-steps", "2", "--lookahead-steps", "1",
                      "--suite", str(ROOT / "suites" / "tiny.yaml"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"members_skipped\s*│\s*6\s*│", proc.stdout)  # the corpus was complete already
    assert re.search(r"acc_kept_median\s*│", proc.stdout) and re.search(r"sample_acc_median\s*│", proc.stdout)
    assert (tmp_path / "run" / "latents.safetensors").is_file() and (tmp_path / "run" / "dit" / "model.safetensors").is_file()
    assert re.search(r"unseen-both\s*│\s*generated\s*│", proc.stdout)  # the bench summary table
    assert "the paired gap" in proc.stdout  # and the share of cases generated wins, beside its paired gap
    assert (tmp_path / "run" / "bench" / "summary.csv").is_file()
    # The bench judged the generator at the end of the chain: DiT, then the tune, then the lookahead tune.
    lookahead = json.loads((tmp_path / "run" / "tuned-lookahead" / "dit" / "functional_finetune.json").read_text())
    assert lookahead["base_run"] == str(tmp_path / "run" / "tuned") and lookahead["inner_steps"] == 20
    results = pd.read_csv(tmp_path / "run" / "bench" / "results.csv")
    assert set(results.loc[results["method"] == "generated", "source"]) == {str(tmp_path / "run" / "tuned-lookahead")}
    amortisation = json.loads((tmp_path / "run" / "bench" / "amortisation.json").read_text())
    assert amortisation["generator_flops"] == generator_training_flops(tmp_path / "run" / "tuned-lookahead")
    assert lookahead["flops"] > lookahead["own_flops"] > 0  # both tunes are in the generator's cost
