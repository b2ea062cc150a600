"""Prefect tasks for the evaluation stage: thin wrappers, the work lives in ``weightgen.bench``."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from weightgen.bench import Job, check_suite, finish, run_job
from weightgen.suite import Suite


def _given_key(context, parameters) -> str:
    return parameters["key"]


@task(name="check-suite", cache_policy=NO_CACHE)
def check_suite_task(suite: Suite):
    return check_suite(suite)


# The generated inits are made afresh every time: they are what a bench is run to judge.
@task(name="bench-job", task_run_name="bench-{job.label}", cache_policy=NO_CACHE)
def run_job_task(suite: Suite, job: Job, methods: list[str]) -> dict[str, Any]:
    return run_job(suite, job, methods)


# The generator-free methods, cached under weightgen.bench_cache.baseline_key (computed by the flow): the next
# bench on the same corpus and code reuses them. Persisted as JSON in Prefect's local result storage.
@task(name="bench-baselines", task_run_name="baselines-{job.label}", cache_key_fn=_given_key, persist_result=True,
      result_serializer="json")
def baseline_job_task(key: str, suite: Suite, job: Job, methods: list[str]) -> dict[str, Any]:
    return run_job(suite, job, methods)


@task(name="score-and-log", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def finish_task(suite: Suite, results: list, manifest, out_dir: str, wall_time: float, tags: dict[str, str]) -> dict:
    return finish(suite, results, manifest, out_dir, wall_time, tags=tags)
