"""Prefect tasks for the distil stage: thin wrappers, the work lives in ``weightgen.dit_distill``."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from weightgen.dit_distill import DistillConfig, distill, log_distill


@task(name="distill-dit", cache_policy=NO_CACHE)
def distill_task(teacher_dir: str, corpus_dir: str, out_dir: str, cfg: DistillConfig) -> dict:
    return distill(teacher_dir, corpus_dir, out_dir, cfg, log=get_run_logger().info)


@task(name="log-distill", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_distill_task(summary: dict, tags: dict[str, str]) -> str:
    return log_distill(summary, tags)
