"""The nightly regression flow: a fresh small corpus, a briefly trained generator, the smoke suite, a verdict.

It runs the pipeline flow (a subflow, ``reuse`` off, in fresh folders under ``work_dir``) with the
settings recorded in the baseline file, then compares the run's metrics with the baseline's
thresholds (:mod:`weightgen.regression`). The comparison table is logged to MLflow
(``weightgen-nightly``) either way; on a regression the flow run ends **Failed** with a message
naming each metric that fell, its value, its limit and its baseline.

Metrics judged are the pipeline's flat metrics (``encoder/acc_kept_median``,
``evaluate/compute_saved_median/unseen-arch/generated``, ...) plus ``nightly/wall_time_s``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed
from pydantic import Field

from flows.pipeline import FLOW_RUN_TAG, NAME_PATTERN, PIPELINE_FLOW_RUN_TAG, PIPELINE_RUN_TAG, pipeline_flow
from flows.stage_settings import CorpusSettings, DiTSettings, EncoderSettings, EvaluateSettings, TuneSettings
from weightgen.regression import Baseline, Comparison, compare, load_baseline

DEFAULT_BASELINE = "configs/nightly-baseline.yaml"


def _run_name() -> str:
    when = flow_run.scheduled_start_time
    return f"nightly-{when:%Y-%m-%d-%H%M}" if when else "nightly"


@task(name="load-baseline", cache_policy=NO_CACHE)
def load_baseline_task(path: str) -> Baseline:
    return load_baseline(path)


@task(name="prepare-work-dir", cache_policy=NO_CACHE)
def prepare_work_dir(work_dir: str, baseline: Baseline, grid: str, fresh: bool) -> str:
    """Clear the nightly's own subfolders corpus/, run/, bench/ (fresh run) and return the grid file to build from."""
    import yaml

    work = Path(work_dir)
    if fresh:
        for sub in ("corpus", "run", "bench"):
            shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if grid:
        return grid
    stored = baseline.settings.get("grid")
    if isinstance(stored, str):
        return stored
    if not isinstance(stored, dict):
        raise ValueError("no grid given and the baseline's settings hold no grid")
    path = work / "grid.yaml"
    path.write_text(yaml.safe_dump(stored, sort_keys=False))
    return str(path)


@task(name="log-nightly", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_nightly(run_name: str, comparison: Comparison, metrics: dict[str, float], params: dict[str, Any],
                tags: dict[str, str]) -> str:
    """One MLflow run in ``weightgen-nightly``: every metric, the comparison table (CSV, markdown, HTML, plot)."""
    import math

    import mlflow

    from weightgen.tracking import stage_run

    status = "passed" if comparison.ok else "regressed"
    with stage_run("nightly", run_name=run_name, params=params,
                   tags={**tags, "weightgen.status": status, "weightgen.regressed": ",".join(comparison.regressed)}) as run:
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        mlflow.log_metric("regressed_metrics", float(len(comparison.regressed)))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            comparison.table.to_csv(tmp / "comparison.csv", index=False)
            (tmp / "comparison.md").write_text(f"# Nightly regression: {status}\n\n{comparison.message()}\n\n"
                                               f"{comparison.markdown()}\n")
            (tmp / "comparison.html").write_text(f"<h1>Nightly regression: {status}</h1><p>{comparison.message()}</p>"
                                                 + comparison.table.to_html(index=False, float_format="%.4g"))
            from weightgen.report import comparison_plot

            comparison_plot(comparison.table, tmp / "comparison.png")
            for name in ("comparison.csv", "comparison.md", "comparison.html", "comparison.png"):
                mlflow.log_artifact(str(tmp / name))
        return run.info.run_id


@flow(name="nightly", flow_run_name=_run_name, log_prints=True)
def nightly_flow(
    baseline: Annotated[str, Field(min_length=1, description="baseline YAML: thresholds, and the settings they were measured with")] = DEFAULT_BASELINE,
    work_dir: Annotated[str, Field(min_length=1, description="corpus/, run/ and bench/ of the nightly go here")] = "runs/nightly",
    grid: Annotated[str, Field(description="zoo grid YAML; empty: the grid stored in the baseline file")] = "",
    suite: Annotated[str, Field(min_length=1, description="bench suite (its corpus and generator are replaced by the nightly's)")] = "suites/smoke.yaml",
    workers: Annotated[int, Field(ge=1, le=256, description="parallel processes for the corpus and the suite")] = 2,
    encoder: Annotated[EncoderSettings | None, Field(description="empty: the baseline's encoder settings")] = None,
    dit: Annotated[DiTSettings | None, Field(description="empty: the baseline's DiT settings")] = None,
    tune: Annotated[TuneSettings | None, Field(description="empty: the baseline's tune settings (none there: no tune)")] = None,
    fresh: Annotated[bool, Field(description="remove the previous night's corpus and run first")] = True,
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="pipeline name in MLflow")] = "nightly",
):
    """Build, train, evaluate, compare: Completed when every baseline metric holds, Failed naming each that fell."""
    logger = get_run_logger()
    started = time.perf_counter()
    reference = load_baseline_task(baseline)  # a bad baseline fails here, before any compute
    grid_path = prepare_work_dir(work_dir, reference, grid, fresh)
    stored = reference.settings
    encoder = encoder or EncoderSettings(**stored.get("encoder", {}))
    dit = dit or DiTSettings(**stored.get("dit", {}))
    # A baseline measured before the pipeline had a tune stage names none: it is judged without one.
    tune = tune or (TuneSettings(**stored["tune"]) if "tune" in stored else TuneSettings(enabled=False))
    work = Path(work_dir)
    result = pipeline_flow(name=name, corpus_dir=str(work / "corpus"), run_dir=str(work / "run"),
                           corpus=CorpusSettings(grid=grid_path, workers=workers), encoder=encoder, dit=dit, tune=tune,
                           evaluate=EvaluateSettings(suite=suite, out_dir=str(work / "bench"), workers=workers),
                           reuse=False)
    metrics = {**result["metrics"], "nightly/wall_time_s": time.perf_counter() - started}
    comparison = compare(metrics, reference)
    nightly_flow_run_id = str(flow_run.id or "")
    params = {"baseline": str(Path(baseline).resolve()), "work_dir": work_dir, "grid": grid_path, "suite": suite,
              "workers": workers, **{f"encoder.{k}": v for k, v in encoder.model_dump().items()},
              **{f"dit.{k}": v for k, v in dit.model_dump().items()},
              **{f"tune.{k}": v for k, v in tune.model_dump().items()}}
    run_id = log_nightly(_run_name(), comparison, metrics, params,
                         {FLOW_RUN_TAG: nightly_flow_run_id, PIPELINE_RUN_TAG: result["mlflow_run_id"],
                          PIPELINE_FLOW_RUN_TAG: result.get("flow_run_id", ""), "weightgen.baseline": baseline})
    logger.info("nightly comparison (MLflow run %s):\n%s", run_id, comparison.table.to_string(index=False))
    if not comparison.ok:
        return Failed(message=comparison.message())  # the flow run ends Failed, naming each metric that fell
    return {"metrics": metrics, "regressed": [], "mlflow_run_id": run_id, "message": comparison.message()}


if __name__ == "__main__":
    nightly_flow()
