"""The pipeline flow: corpus → encoder → DiT → tune → distil → evaluation, each stage its own subflow, linked in MLflow.

The tune stage (``weightgen.tune_runs.tune_recipe``, on by default) tunes the diffusion DiT by the task
loss — a bias-penalty tune into ``<run_dir>/tuned``, then a lookahead tune into ``<run_dir>/tuned-lookahead``
— and the evaluation benches the last of them, the generator ``weightgen run`` builds too. With the
stage off, the evaluation benches the diffusion DiT in ``run_dir``. The distil stage (off by default)
teaches a smaller DiT the tuned one's samples (``weightgen.dit_distill``) into ``<run_dir>/distilled``,
keeping the evaluation suite's unseen architectures out of its neighbours, and the evaluation benches
that student instead. With ``distill.tune_steps`` it then tunes the student as it samples (at a tenth of the
teacher's LR, with a lookahead and width-scaled neighbours: docs/results.md, items 46 and 56) into
``<run_dir>/distilled-tuned``, optionally through the init-spectrum reshape, and the evaluation benches that.

Parameters are pydantic models with constraints, one per stage (``flows/stage_settings.py``): the Prefect UI
draws a form from them, and a bad value is refused (``ParameterTypeError`` in Python, HTTP 409/422 from the
API) before any work starts.
Top-level constraints are written ``Annotated[str, Field(...)] = default``: Prefect 3.9.1 ignores the
constraints of a ``Field(default, ...)`` used as the default value (neither checked nor in the schema).

Each stage runs inside a cached task whose key is a fingerprint of what the stage reads (the grid's
bytes, the corpus manifest's, the latents', the DiT weights', the suite's) and of its settings, so a
rerun with the same inputs reuses finished stages — no subflow runs at all. A stage whose outputs
were removed since is run again (``refresh_cache``) rather than trusted. Only the MLflow bookkeeping
tasks retry (network/database I/O); training is not retried.

MLflow: every stage logs into its own experiment (``weightgen-<stage>``) as before, tagged with its
Prefect flow-run id; the pipeline adds one run in ``weightgen-pipeline`` holding all settings as
params and every stage's summary as ``<stage>/<metric>``, and tags link them both ways:

* on each stage run: ``weightgen.pipeline`` (pipeline name), ``weightgen.pipeline_flow_run_id`` and
  ``weightgen.pipeline_run_id`` (the pipeline's MLflow run);
* on the pipeline run: ``weightgen.run.<stage>`` = that stage's MLflow run id(s), and
  ``weightgen.cached.<stage>`` = ``true`` when the stage was reused from an earlier run.

``mlflow.search_runs(search_all_experiments=True, filter_string="tags.`weightgen.pipeline_flow_run_id` = '<id>'")``
lists one pipeline's runs across experiments.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.stage_settings import (CorpusSettings, DiTSettings, DistillSettings, EncoderSettings, EvaluateSettings,
                                  TuneSettings)
from weightgen.io import file_digest
from weightgen.suite import load_suite

PIPELINE_TAG = "weightgen.pipeline"
PIPELINE_FLOW_RUN_TAG = "weightgen.pipeline_flow_run_id"
PIPELINE_RUN_TAG = "weightgen.pipeline_run_id"
FLOW_RUN_TAG = "prefect.flow_run_id"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# --- fingerprints: what each stage reads -------------------------------------------------------

def stage_key(stage: str, settings: dict[str, Any], reads: dict[str, str]) -> str:
    """The cache key of one stage: its name, settings, output folders and the digests of what it reads."""
    text = json.dumps({"stage": stage, "settings": settings, "reads": reads}, sort_keys=True, default=str)
    return f"weightgen-{stage}-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def outputs_present(stage: str, corpus_dir: str, run_dir: str, grid: str = "", bench_dir: str = "",
                    tuned: tuple[str, ...] = (), distilled: tuple[str, ...] = ()) -> bool:
    """Whether a finished stage's outputs are still on disk (a cached result is only trusted then).

    ``tuned``, ``distilled``: the run folders the tune and distil stages write.
    """
    run = Path(run_dir)
    if stage == "corpus":
        from weightgen.corpus import Corpus
        from weightgen.zoo import expand, load_grid

        corpus = Corpus(corpus_dir)
        return corpus.manifest_path.is_file() and all(corpus.is_complete(m.member_id) for m in expand(load_grid(grid)))
    if stage == "encoder":
        return all((run / name).exists() for name in ("encoder_stage.json", "latents.safetensors", "encoder"))
    if stage == "dit":
        return (run / "dit" / "model.safetensors").is_file()
    if stage in ("tune", "distill"):
        folders = tuned if stage == "tune" else distilled
        return bool(folders) and all((Path(folder) / "dit" / "model.safetensors").is_file() for folder in folders)
    if stage == "evaluate":
        return Path(bench_dir).is_dir() and any(Path(bench_dir).iterdir())
    raise ValueError(f"unknown stage {stage!r}")


# --- stage tasks: cached by the key the flow computes ------------------------------------------

def _given_key(context, parameters) -> str:
    return parameters["key"]


def _run_subflow(subflow, kwargs: dict) -> dict:
    state = subflow(**kwargs, return_state=True)
    summary = state.result()  # raises when the stage failed, failing this task and the pipeline
    return {"summary": summary, "flow_run_id": str(state.state_details.flow_run_id)}


@task(name="corpus-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def corpus_stage(key: str, corpus_dir: str, settings: dict) -> dict:
    from flows.corpus import corpus_flow

    return _run_subflow(corpus_flow, {"grid": settings["grid"], "corpus_dir": corpus_dir, "workers": settings["workers"]})


@task(name="encoder-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def encoder_stage(key: str, corpus_dir: str, run_dir: str, settings: dict) -> dict:
    from flows.encoder import encoder_flow

    return _run_subflow(encoder_flow, {"corpus_dir": corpus_dir, "out_dir": run_dir, **settings})


@task(name="dit-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def dit_stage(key: str, corpus_dir: str, run_dir: str, settings: dict) -> dict:
    from flows.dit import dit_flow

    return _run_subflow(dit_flow, {"run_dir": run_dir, "corpus_dir": corpus_dir, **settings})


@task(name="tune-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def tune_stage(key: str, corpus_dir: str, run_dir: str, settings: dict) -> dict:
    """Each phase of the tune recipe as its own tune subflow, each starting from the one before."""
    from flows.tune import flow_parameters, tune_flow

    generator, flow_runs, wall_time, last = run_dir, [], 0.0, {}
    tune = TuneSettings(**settings)
    for out, cfg in tune.phases(run_dir):
        done = _run_subflow(tune_flow, {"run_dir": generator, "corpus_dir": corpus_dir, "out_dir": str(out),
                                        **flow_parameters(cfg), "processes": tune.processes})
        generator, last = str(out), done["summary"]
        flow_runs.append(done["flow_run_id"])
        wall_time += float(last["wall_time_s"])
    summary = {"final_val_acc_median": last["final_val_acc_median"], "tune_flops": last["tune_flops"],  # cumulative FLOPs
               "wall_time_s": wall_time, "phases": len(flow_runs), "generator_run": generator}
    return {"summary": summary, "flow_run_id": ",".join(flow_runs)}


@task(name="distill-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def distill_stage(key: str, corpus_dir: str, teacher_dir: str, run_dir: str, exclude_archs: str, settings: dict) -> dict:
    """The distillation into ``<run_dir>/distilled``, then (``tune_steps``) the student's tune as its own subflow."""
    from flows.distill import distill_flow
    from flows.tune import flow_parameters, tune_flow

    distill = DistillSettings(**settings, enabled=True)
    folders = distill.folders(run_dir)
    done = _run_subflow(distill_flow, {"teacher_dir": teacher_dir, "corpus_dir": corpus_dir, "out_dir": folders[0],
                                       "exclude_archs": exclude_archs, **distill.distill_parameters()})
    cfg = distill.student_tune([a for a in exclude_archs.split(";") if a])
    if cfg is None:
        return {"summary": {**done["summary"], "generator_run": folders[0]}, "flow_run_id": done["flow_run_id"]}
    tuned = _run_subflow(tune_flow, {"run_dir": folders[0], "corpus_dir": corpus_dir, "out_dir": folders[1],
                                     **flow_parameters(cfg)})
    summary = {**done["summary"], "generator_run": folders[1],
               **{f"student_tune_{k}": v for k, v in tuned["summary"].items() if k != "mlflow_run"}}
    return {"summary": summary, "flow_run_id": f"{done['flow_run_id']},{tuned['flow_run_id']}"}


@task(name="evaluate-stage", cache_key_fn=_given_key, persist_result=True, result_serializer="json")
def evaluate_stage(key: str, corpus_dir: str, run_dir: str, bench_dir: str, settings: dict) -> dict:
    from flows.evaluate import evaluate_flow

    return _run_subflow(evaluate_flow, {"suite": settings["suite"], "out_dir": bench_dir, "workers": settings["workers"],
                                        "corpus_dir": corpus_dir, "run_dir": run_dir})


# --- MLflow bookkeeping (I/O: retried) ----------------------------------------------------------

@task(name="open-pipeline-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def open_pipeline_run(name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    import mlflow

    from weightgen.tracking import _param_value, use_experiment

    use_experiment("pipeline")
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("weightgen-pipeline")
    run = client.create_run(experiment.experiment_id, run_name=name, tags={"weightgen.stage": "pipeline", **tags})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, _param_value(value))
    return run.info.run_id


@task(name="link-stage-runs", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def link_stage_runs(stage: str, stage_flow_run_id: str, pipeline_run_id: str, tags: dict[str, str], cached: bool) -> list[str]:
    """Tag the stage's MLflow runs (found by their Prefect flow-run ids, comma-separated) with the pipeline, and vice versa.

    A cached stage's runs belong to the pipeline run that made them; they are referenced, not re-tagged.
    """
    import mlflow

    from weightgen.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    ids = [r.info.run_id for flow_run_id in stage_flow_run_id.split(",")
           for r in client.search_runs(experiments, filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run_id}'")]
    if not cached:
        for run_id in ids:
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
    client.set_tag(pipeline_run_id, f"weightgen.run.{stage}", ",".join(ids))
    client.set_tag(pipeline_run_id, f"weightgen.cached.{stage}", str(cached).lower())
    return ids


@task(name="close-pipeline-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def close_pipeline_run(run_id: str, metrics: dict[str, float], status: str) -> None:
    import math

    import mlflow

    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            client.log_metric(run_id, key, float(value))
    client.set_terminated(run_id, status=status)


def flatten_summaries(results: dict[str, dict]) -> dict[str, float]:
    """{'encoder': {'acc_kept_median': .9}} → {'encoder/acc_kept_median': .9} (numbers only)."""
    flat = {}
    for stage, summary in results.items():
        for key, value in (summary or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{stage}/{key}"] = float(value)
    return flat


def _flat_params(sections: dict[str, BaseModel | str]) -> dict[str, Any]:
    out = {}
    for prefix, value in sections.items():
        if isinstance(value, BaseModel):
            out.update({f"{prefix}.{k}": v for k, v in value.model_dump().items()})
        else:
            out[prefix] = value
    return out


@flow(name="pipeline", flow_run_name="pipeline-{name}", log_prints=True)
def pipeline_flow(
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="names the flow run and the MLflow pipeline run")] = "default",
    corpus_dir: Annotated[str, Field(min_length=1, description="corpus folder (created if missing)")] = "corpus/default",
    run_dir: Annotated[str, Field(min_length=1, description="encoder, latents and DiT go here")] = "runs/default",
    corpus: CorpusSettings = CorpusSettings(),
    encoder: EncoderSettings = EncoderSettings(),
    dit: DiTSettings = DiTSettings(),
    tune: TuneSettings = TuneSettings(),
    distill: DistillSettings = DistillSettings(),
    evaluate: EvaluateSettings = EvaluateSettings(),
    reuse: Annotated[bool, Field(description="reuse stages finished earlier with the same inputs (Prefect task cache)")] = True,
) -> dict[str, Any]:
    """corpus → encoder → DiT → tune → distil → evaluation; returns each stage's summary, the flat metrics and the MLflow run ids."""
    if distill.enabled and not tune.enabled:  # before any work
        raise ValueError("the distil stage needs the tune stage: its teacher is the tuned DiT (tune.enabled is false)")
    logger = get_run_logger()
    started = time.perf_counter()
    bench_dir = evaluate.out_dir or str(Path(run_dir) / "bench")
    pipeline_flow_run_id = str(flow_run.id or "")
    params = _flat_params({"name": name, "corpus_dir": corpus_dir, "run_dir": run_dir, "corpus": corpus,
                           "encoder": encoder, "dit": dit, "tune": tune, "distill": distill, "evaluate": evaluate,
                           "reuse": str(reuse)})
    pipeline_run_id = open_pipeline_run(f"pipeline-{name}", params, {FLOW_RUN_TAG: pipeline_flow_run_id, PIPELINE_TAG: name,
                                                                      PIPELINE_FLOW_RUN_TAG: pipeline_flow_run_id})
    links = {PIPELINE_TAG: name, PIPELINE_FLOW_RUN_TAG: pipeline_flow_run_id, PIPELINE_RUN_TAG: pipeline_run_id}
    corpus_abs, run_abs = str(Path(corpus_dir).resolve()), str(Path(run_dir).resolve())
    results: dict[str, dict] = {}
    runs: dict[str, list[str]] = {}
    tuned = tuple(str(out) for out, _ in tune.phases(run_dir))  # the tune stage's run folders (none when off)
    distilled = distill.folders(run_dir)  # the distil stage's: the student, and its tune

    def run_stage(stage: str, stage_task, reads: dict[str, str], settings: dict, *args) -> None:
        key = stage_key(stage, settings, {"corpus_dir": corpus_abs, "run_dir": run_abs, **reads})
        fresh = not reuse or not outputs_present(stage, corpus_dir, run_dir, corpus.grid, bench_dir, tuned, distilled)
        state = stage_task.with_options(refresh_cache=fresh)(key, *args, settings, return_state=True)
        out = state.result()
        cached = state.name == "Cached"
        logger.info("%s: %s%s", stage, "reused (cached) " if cached else "", out["summary"])
        results[stage] = out["summary"]
        runs[stage] = link_stage_runs(stage, out["flow_run_id"], pipeline_run_id, links, cached)

    try:
        run_stage("corpus", corpus_stage, {"grid": file_digest(corpus.grid)}, corpus.model_dump(), corpus_dir)
        manifest = file_digest(Path(corpus_dir) / "manifest.parquet")
        run_stage("encoder", encoder_stage, {"manifest": manifest}, encoder.model_dump(), corpus_dir, run_dir)
        latents = file_digest(Path(run_dir) / "latents.safetensors")
        run_stage("dit", dit_stage, {"latents": latents}, dit.model_dump(), corpus_dir, run_dir)
        generator = run_dir
        if tuned:
            reads = {"manifest": manifest, "dit": file_digest(Path(run_dir) / "dit" / "model.safetensors")}
            run_stage("tune", tune_stage, reads, tune.model_dump(exclude={"enabled"}), corpus_dir, run_dir)
            generator = results["tune"]["generator_run"]
        if distill.enabled:
            reads = {"manifest": manifest, "teacher": file_digest(Path(generator) / "dit" / "model.safetensors"),
                     "suite": file_digest(evaluate.suite)}  # the suite names the architectures kept out
            run_stage("distill", distill_stage, reads, distill.model_dump(exclude={"enabled"}), corpus_dir, generator,
                      run_dir, ";".join(load_suite(evaluate.suite).unseen_archs()))
            generator = results["distill"]["generator_run"]
        if evaluate.enabled:
            reads = {"manifest": manifest, "dit": file_digest(Path(generator) / "dit" / "model.safetensors"),
                     "encoder": file_digest(Path(generator) / "encoder" / "model.safetensors"),
                     "suite": file_digest(evaluate.suite), "bench_dir": str(Path(bench_dir).resolve())}
            settings = evaluate.model_dump(exclude={"enabled", "out_dir"})
            run_stage("evaluate", evaluate_stage, reads, settings, corpus_dir, generator, bench_dir)
    except BaseException:
        close_pipeline_run(pipeline_run_id, {**flatten_summaries(results)}, "FAILED")
        raise
    metrics = {**flatten_summaries(results), "pipeline/wall_time_s": time.perf_counter() - started}
    close_pipeline_run(pipeline_run_id, metrics, "FINISHED")
    logger.info("pipeline %s done in %.1fs (MLflow run %s)", name, metrics["pipeline/wall_time_s"], pipeline_run_id)
    return {"stages": results, "metrics": metrics, "mlflow_run_id": pipeline_run_id, "mlflow_runs": runs,
            "flow_run_id": pipeline_flow_run_id}


if __name__ == "__main__":
    pipeline_flow()
