"""Prefect tasks for the tune stage: thin wrappers, the work lives in ``weightgen.dit_tune``."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from weightgen.dit_tune import TuneConfig, log_tune, tune


@task(name="tune-dit", cache_policy=NO_CACHE)
def tune_task(run_dir: str, corpus_dir: str, out_dir: str, cfg: TuneConfig) -> dict:
    return tune(run_dir, corpus_dir, out_dir, cfg)


@task(name="log-tune", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_tune_task(summary: dict, tags: dict[str, str]) -> str:
    return log_tune(summary, tags)
