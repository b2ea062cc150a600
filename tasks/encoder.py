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


@task(name="register-encoder", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def register_encoder_task(run_id: str, out_dir: str) -> str:
    from pathlib import Path

    from weightgen.encoder import PatchAutoencoder
    from weightgen.tracking import ENCODER_MODEL, register_model

    return register_model(run_id, PatchAutoencoder.load(Path(out_dir) / "encoder"), "encoder", ENCODER_MODEL)


@task(name="log-encoder", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_encoder_task(stage: EncoderStage, config: EncoderConfig, corpus_dir: str, out_dir: str, tags: dict) -> str:
    return log_encoder_stage(stage, config, corpus_dir, out_dir, tags)
