"""Prefect tasks for the encoder stage: thin wrappers, the work lives in ``weightgen``."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from weightgen.encoder import EncoderConfig
from weightgen.encoder_eval import EncoderStage, log_encoder_stage, run_encoder_stage


@task(name="train-encoder", cache_policy=NO_CACHE)
def train_encoder_task(corpus_dir: str, out_dir: str, config: EncoderConfig, min_step: int, holdout: float,
                       minilm: bool) -> EncoderStage:
    return run_encoder_stage(corpus_dir, out_dir, config, min_step, holdout, minilm)


# Registered-model names in the MLflow model registry; every trained stage adds a version.
ENCODER_MODEL = "weightgen-encoder"
MODEL_REQUIREMENTS = ["torch", "safetensors", "weightgen"]


def register_model(run_id: str, model, name: str, registered_name: str) -> str:
    """Log ``model`` into the finished MLflow run ``run_id`` (PyTorch flavour) and register a new version.

    MLflow 3 saves PyTorch models as ``pt2`` (torch.export, which needs one traced example input per
    model: patches with kinds and lengths, token sequences with masks and conditions) or as pickle.
    Both models use pickle here — only for our own registry; weightgen never unpickles imported
    weights — loadable with ``mlflow.pytorch.load_model("models:/<name>/<version>")``. The same
    weights are in the run's artifacts as safetensors, the form weightgen itself reads.
    """
    import mlflow

    from weightgen.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(model, name=name, registered_model_name=registered_name,
                                        pip_requirements=MODEL_REQUIREMENTS, serialization_format="pickle")
    return str(info.registered_model_version)


@task(name="register-encoder", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def register_encoder_task(run_id: str, out_dir: str) -> str:
    from pathlib import Path

    from weightgen.encoder import PatchAutoencoder

    return register_model(run_id, PatchAutoencoder.load(Path(out_dir) / "encoder"), "encoder", ENCODER_MODEL)


@task(name="log-encoder", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_encoder_task(stage: EncoderStage, config: EncoderConfig, corpus_dir: str, out_dir: str, tags: dict) -> str:
    return log_encoder_stage(stage, config, corpus_dir, out_dir, tags)
