"""Prefect tasks for the evaluation stage: thin wrappers, the work lives in ``weightgen.bench``."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from weightgen.bench import Job, check_suite, finish, run_job
from weightgen.suite import Suite


@task(name="check-suite", cache_policy=NO_CACHE)
def check_suite_task(suite: Suite):
    return check_suite(suite)


# Each job fine-tunes from freshly made inits; its result is small and the results table is the record.
@task(name="bench-job", task_run_name="bench-{job.label}", cache_policy=NO_CACHE)
def run_job_task(suite: Suite, job: Job) -> dict[str, Any]:
    return run_job(suite, job)


@task(name="score-and-log", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def finish_task(suite: Suite, results: list, manifest, out_dir: str, wall_time: float, tags: dict[str, str]) -> dict:
    return finish(suite, results, manifest, out_dir, wall_time, tags=tags)
