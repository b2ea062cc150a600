"""Prefect tasks for the tune stage: thin wrappers, the work lives in ``weightgen.dit_tune``."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from weightgen.dit_tune import TuneConfig, launch_tune
from weightgen.tune_runs import log_tune


@task(name="tune-dit", cache_policy=NO_CACHE)
def tune_task(run_dir: str, corpus_dir: str, out_dir: str, cfg: TuneConfig, processes: int = 1) -> dict:
    return launch_tune(run_dir, corpus_dir, out_dir, cfg, processes, log=get_run_logger().info)


@task(name="log-tune", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_tune_task(summary: dict, tags: dict[str, str]) -> str:
    return log_tune(summary, tags)
