"""The evaluation flow: every suite case × seed fine-tuned from every init method, in parallel; then scored.

The suite is checked against the corpus manifest first (an unseen case that leaks is refused before
any compute); jobs run on a process pool; scoring, tables, plots and MLflow logging run once at the end.

Each (case, seed) is two tasks: the generated methods, run every time, and the generator-free
baselines, cached by Prefect under ``weightgen.bench_cache.baseline_key`` (case, seed, recipe, corpus
manifest, code), so benching a new generator re-runs only its own fine-tunes. ``refresh_baselines``
runs them again; reused rows are marked in the results table's ``reused`` column.
"""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger, unmapped
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner
from pydantic import Field

from tasks.corpus import limit_torch_threads
from tasks.evaluate import baseline_job_task, check_suite_task, finish_task, run_job_task
from weightgen.bench import BASELINE_METHODS, plan
from weightgen.bench_cache import baseline_key, relabel
from weightgen.suite import load_suite


@flow(name="evaluate", flow_run_name="evaluate-{suite}")
def evaluate_flow(
    suite: Annotated[str, Field(description="suite YAML: cases, recipe, methods (see README)")] = "suites/default.yaml",
    out_dir: Annotated[str, Field(description="results table, summary and plots go here")] = "runs/bench/default",
    workers: Annotated[int, Field(ge=1, le=256, description="parallel fine-tuning processes")] = 2,
    corpus_dir: Annotated[str | None, Field(description="overrides the suite's corpus")] = None,
    run_dir: Annotated[str | None, Field(description="overrides the suite's generator run folder")] = None,
    ddim_steps: Annotated[int | None, Field(ge=1, description="overrides the suite's DDIM steps per sample")] = None,
    refresh_baselines: Annotated[bool, Field(description="fine-tune the generator-free baselines again instead of reusing them")] = False,
    methods: Annotated[list[str] | None, Field(description="only these init methods (random is always kept)")] = None,
    splits: Annotated[list[str] | None, Field(description="only the cases of these splits")] = None,
    label_map: Annotated[bool | None, Field(description="overrides the suite's label_map: every corpus method maps label orders exactly")] = None,
    guidance: Annotated[float | None, Field(ge=0.0, description="overrides the suite's classifier-free guidance scale")] = None,
) -> dict[str, float]:
    """Run a benchmark suite; returns flat metrics (compute_saved_median/<split>/<method>, reach_rate/..., wall_time_s)."""
    logger = get_run_logger()
    started = time.perf_counter()
    spec = load_suite(suite).with_sources(corpus_dir, run_dir, ddim_steps, label_map, guidance).narrowed(methods, splits)
    manifest = check_suite_task(spec)
    jobs = plan(spec)
    logger.info("suite %r: %d cases, %d jobs × %d methods on %d workers", spec.name, len(spec.cases), len(jobs),
                len(spec.methods), workers)
    baselines = [m for m in spec.methods if m in BASELINE_METHODS]
    generated = [m for m in spec.methods if m not in BASELINE_METHODS]
    results, reused = [], 0
    with ProcessPoolTaskRunner(max_workers=workers, initializer=limit_torch_threads) as runner:
        futures = {}  # future → its job
        if baselines:
            cached_task = baseline_job_task.with_options(refresh_cache=refresh_baselines)
            mapped = runner.map(cached_task, {"key": [baseline_key(spec, job, baselines) for job in jobs],
                                              "suite": unmapped(spec), "job": jobs, "methods": unmapped(baselines)})
            futures.update(zip(mapped, jobs))
        if generated:
            mapped = runner.map(run_job_task, {"suite": unmapped(spec), "job": jobs, "methods": unmapped(generated)})
            futures.update(zip(mapped, jobs))
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()  # first: the future's state is final only once its result is in
            job, cached = futures[future], future.state.name == "Cached"
            results.append(relabel(result, spec, job, reused=cached))
            reused += cached
            logger.info("[%d/%d] %s %s", done, len(futures), "reused" if cached else "finished", job.label)
    if reused:
        logger.info("%d of %d baseline jobs reused from the cache (refresh_baselines=True runs them again)", reused, len(jobs))
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "weightgen.suite": spec.name}
    outcome = finish_task(spec, results, manifest, out_dir, time.perf_counter() - started, tags)
    logger.info("suite %r: MLflow run %s\n%s", spec.name, outcome["mlflow_run_id"], outcome["summary"].to_string())
    return outcome["metrics"]


if __name__ == "__main__":
    evaluate_flow()
