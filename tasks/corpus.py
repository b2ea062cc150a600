"""Prefect tasks for the corpus stage: thin wrappers, the work lives in ``weightgen``."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from weightgen.corpus import Corpus
from weightgen.zoo import Grid, MemberSpec, log_build, train_member


def limit_torch_threads() -> None:
    """Run in each pool worker: one thread per process, so N workers use N cores without contention."""
    import torch

    torch.set_num_threads(1)


# The corpus itself is the cache: a complete member is skipped, so Prefect result caching would only duplicate it.
@task(name="train-member", task_run_name="train-{spec.member_id}", cache_policy=NO_CACHE)
def train_member_task(spec: MemberSpec, corpus_dir: str) -> dict[str, Any]:
    return train_member(spec, corpus_dir)


@task(name="write-manifest", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def write_manifest_task(corpus_dir: str):
    return Corpus(corpus_dir).rebuild_manifest()


@task(name="log-corpus-build", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_build_task(grid: Grid, corpus_dir: str, summary: dict, manifest, tags: dict[str, str]) -> str:
    return log_build(grid, corpus_dir, summary, manifest, tags)
