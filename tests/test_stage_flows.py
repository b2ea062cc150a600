"""The encoder and DiT flows end to end on a tiny corpus (CPU, ephemeral Prefect, MLflow in a temp store)."""

from __future__ import annotations

import mlflow
import pytest
import torch

from weightgen.encoder import PatchAutoencoder
from weightgen.sequences import SequenceSet
from weightgen.tracking import tracking_uri
from weightgen.zoo import expand, load_grid, train_member

PAIR = "mlp:hidden=8@digits"


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    grid = load_grid({"seeds": [0, 1], "checkpoint_steps": [30], "recipe": {"steps": 60, "eval_every": 30, "lr": 0.01},
                      "archs": ["mlp:hidden=8", "cnn2d:channels=2"], "tasks": ["digits", "digits:rot90=1", "mnist1d"]})
    for member in expand(grid):
        train_member(member, root)
    return root


def test_encoder_then_dit_flow(tiny_corpus, tmp_path, monkeypatch):
    from flows.dit import dit_flow
    from flows.encoder import encoder_flow

    monkeypatch.setenv("WEIGHTGEN_MLRUNS", str(tmp_path / "mlruns"))  # this test's runs only

    run_dir = tmp_path / "run"
    summary = encoder_flow(corpus_dir=str(tiny_corpus), out_dir=str(run_dir), patch_size=8, latent_dim=8, steps=60,
                           min_step=0, holdout=0.25)
    assert 0 <= summary["acc_kept_median"] <= 2 and summary["latent_sequences"] == 20  # 10 members × 2 checkpoints
    latents = SequenceSet.load(run_dir / "latents.safetensors")
    assert latents.values.shape[1] == 8 and len(latents) == 20
    assert PatchAutoencoder.load(run_dir / "encoder").config.latent_dim == 8

    weights = run_dir / "encoder" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = encoder_flow(corpus_dir=str(tiny_corpus), out_dir=str(run_dir), patch_size=8, latent_dim=8, steps=60,
                         min_step=0, holdout=0.25)
    assert again == summary and weights.stat().st_mtime_ns == before  # same corpus and settings: reused, not retrained

    result = dit_flow(run_dir=str(run_dir), corpus_dir=str(tiny_corpus), steps=6, batch_size=4, preset="tiny",
                      checkpoint_every=3, eval_every=3, pairs=PAIR, samples=1)
    assert 0 <= result["sample_acc_median"] <= 1 and result["dist_nearest_median"] > 0
    assert (run_dir / "dit" / "model.safetensors").is_file() and (run_dir / "dit" / "checkpoints").is_dir()

    mlflow.set_tracking_uri(tracking_uri())
    enc = mlflow.search_runs(experiment_names=["weightgen-encoder"])
    assert len(enc) == 2 and "metrics.acc_kept_median" in enc and "params.latent_dim" in enc
    dit = mlflow.search_runs(experiment_names=["weightgen-dit"])
    assert len(dit) == 1
    client = mlflow.MlflowClient()
    run_id = dit["run_id"][0]
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [6]  # logged by the training subprocess
    sampled = [k for k in client.get_run(run_id).data.metrics if k.startswith("sample_acc/")]
    assert sampled and [m.step for m in client.get_metric_history(run_id, sampled[0])] == [3, 6]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"seen_samples.csv", "dit"} <= artifacts


def test_dit_refuses_to_resume_on_changed_latents(tmp_path):
    from weightgen.dit_stage import _check_latents_unchanged

    latents, out = tmp_path / "latents.safetensors", tmp_path / "dit"
    latents.write_bytes(b"first")
    (out / "checkpoints").mkdir(parents=True)
    _check_latents_unchanged(latents, out, resume=True)  # first run: records the digest
    _check_latents_unchanged(latents, out, resume=True)  # same latents: fine
    latents.write_bytes(b"second")
    with pytest.raises(ValueError, match="changed since the DiT checkpoints"):
        _check_latents_unchanged(latents, out, resume=True)
    _check_latents_unchanged(latents, out, resume=False)  # starting over is allowed, and re-stamps
    _check_latents_unchanged(latents, out, resume=True)


def test_launch_command_uses_accelerate_for_several_processes():
    from weightgen.dit_stage import launch_command

    single, env = launch_command(1, ["--data", "x"])
    assert single[1:3] == ["-m", "weightgen.dit_train"] and env == {}
    multi, env = launch_command(2, ["--data", "x"])
    assert multi[1:5] == ["launch", "--multi_gpu", "--num_processes", "2"] and multi[-2:] == ["--data", "x"]
    if not torch.cuda.is_available():
        assert env["ACCELERATE_USE_CPU"] == "true"
    tune, _ = launch_command(2, ["--run-dir", "r"], module="weightgen.dit_tune")  # the tune is launched the same way
    assert tune[tune.index("-m") + 1] == "weightgen.dit_tune" and tune[-2:] == ["--run-dir", "r"]
