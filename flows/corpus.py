"""The corpus flow: train the zoo grid's missing members in parallel, index them, log the build."""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger, unmapped
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner
from pydantic import Field

from tasks.corpus import limit_torch_threads, log_build_task, train_member_task, write_manifest_task
from weightgen.corpus import Corpus
from weightgen.zoo import build_summary, expand, load_grid, require_one_history, training_waves, untrained

DEFAULT_GRID = "configs/grids/default.yaml"
DEFAULT_CORPUS = "corpus/default"


@flow(name="corpus", flow_run_name="corpus-{corpus_dir}", log_prints=True)
def corpus_flow(
    grid: Annotated[str, Field(description="zoo grid YAML: archs × tasks × seeds, recipe, exclude lists")] = DEFAULT_GRID,
    corpus_dir: Annotated[str, Field(description="corpus folder (created if missing)")] = DEFAULT_CORPUS,
    workers: Annotated[int, Field(ge=1, le=256, description="parallel training processes")] = 2,
) -> dict:
    """Build (or complete) a corpus; returns the build summary."""
    logger = get_run_logger()
    started = time.perf_counter()
    spec = load_grid(grid)
    members = expand(spec)
    logger.info("grid %r: %d members (%d archs × %d tasks × %d seeds, compatible pairs only)",
                spec.name, len(members), len(spec.archs), len(spec.tasks), len(spec.seeds))
    corpus = Corpus(corpus_dir)
    require_one_history(members, corpus_dir, spec.name)  # before any training: the stored corpus stays intact
    complete = [m.member_id for m in members if corpus.is_complete(m.member_id)]
    pending = [m for m in members if m.member_id not in set(complete)]
    summaries = [untrained(member_id, "skipped") for member_id in complete]
    logger.info("%d members complete already, %d to train on %d workers", len(summaries), len(pending), workers)
    if pending:  # starting a process pool costs seconds; a rerun of a complete corpus needs none
        with ProcessPoolTaskRunner(max_workers=workers, initializer=limit_torch_threads) as runner:
            for wave in training_waves(pending):  # shared parents finish before their children start
                futures = runner.map(train_member_task, {"spec": wave, "corpus_dir": unmapped(corpus_dir)})
                for future in as_completed(futures):
                    summaries.append(result := future.result())
                    logger.info("[%d/%d] %s %s (%.1fs)", len(summaries) - len(complete), len(pending),
                                result["status"], result["member"], result["wall_time"])
    manifest = write_manifest_task(corpus_dir)
    summary = build_summary(summaries, manifest, time.perf_counter() - started)
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "weightgen.grid": spec.name}
    summary_run = log_build_task(spec, corpus_dir, summary, manifest, tags)
    logger.info("corpus %s: %s (MLflow run %s)", corpus_dir, summary, summary_run)
    return summary


if __name__ == "__main__":
    corpus_flow()
