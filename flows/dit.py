"""The DiT flow: train the diffusion transformer on cached latents (Accelerate), then judge seen samples."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import Field

from weightgen.dit import DIT_PRESETS
from weightgen.tracking import DIT_MODEL


@task(name="train-dit", cache_policy=NO_CACHE)
def train_dit_task(run_dir: str, processes: int, options: dict, run_id: str) -> str:
    from weightgen.dit_stage import train_dit
    from weightgen.tracking import tracking_uri

    out = Path(run_dir) / "dit"
    env = {"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": tracking_uri()}
    logger = get_run_logger()
    return str(train_dit(Path(run_dir) / "latents.safetensors", out, processes, extra_env=env, on_line=logger.info,
                         **options))


@task(name="judge-samples", cache_policy=NO_CACHE)
def judge_samples_task(run_dir: str, corpus_dir: str, pairs: str, samples: int, guidance: float):
    from weightgen.dit_train import load_dit
    from weightgen.encoder import PatchAutoencoder
    from weightgen.sampling import seen_report

    dit, encoder = load_dit(Path(run_dir) / "dit"), PatchAutoencoder.load(Path(run_dir) / "encoder")
    return seen_report(dit, encoder, corpus_dir, [tuple(p.split("@", 1)) for p in pairs.split(";")], samples, guidance)


@task(name="register-dit", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def register_dit_task(run_id: str, run_dir: str) -> str:
    from weightgen.dit_train import load_dit
    from weightgen.tracking import register_model

    return register_model(run_id, load_dit(Path(run_dir) / "dit"), "dit", DIT_MODEL)


@flow(name="dit", flow_run_name="dit-{run_dir}")
def dit_flow(
    run_dir: Annotated[str, Field(description="holds encoder/ and latents.safetensors (the encoder flow's output)")] = "runs/default",
    corpus_dir: Annotated[str, Field(description="corpus the latents came from (for judging samples)")] = "corpus/default",
    processes: Annotated[int, Field(ge=1, le=64, description="training processes (accelerate launch when > 1)")] = 1,
    steps: Annotated[int, Field(ge=1)] = 2000,
    batch_size: Annotated[int, Field(ge=1)] = 16,
    lr: Annotated[float, Field(gt=0)] = 3e-4,
    preset: Annotated[str, Field(pattern=f"^({'|'.join(DIT_PRESETS)})$")] = "S",
    checkpoint_every: Annotated[int, Field(ge=0)] = 500,
    resume: Annotated[bool, Field(description="continue from the latest checkpoint in run_dir/dit")] = True,
    eval_every: Annotated[int, Field(ge=0, description="score sampled seen architectures every this many steps")] = 500,
    pairs: Annotated[str, Field(description="seen 'ARCH@TASK;...' pairs to sample and score (default: one per family)")] = "",
    samples: Annotated[int, Field(ge=1, le=64)] = 2,
    guidance: Annotated[float, Field(ge=0)] = 1.0,
) -> dict:
    import mlflow

    from weightgen.tracking import stage_run

    from weightgen.sampling import default_pairs

    pairs = pairs or default_pairs(corpus_dir)
    params = {k: v for k, v in locals().items() if k not in ("mlflow", "stage_run", "default_pairs")}
    with stage_run("dit", run_name=f"dit-{preset}-{steps}", params=params,
                   tags={"prefect.flow_run_id": str(flow_run.id or ""),
                         "prefect.parent_flow_run_id": str(flow_run.parent_flow_run_id or ""),
                         "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or flow_run.id or "")}) as run:
        options = {"steps": steps, "batch_size": batch_size, "lr": lr, "preset": preset, "checkpoint_every": checkpoint_every,
                   "resume": resume, "eval_every": eval_every, "encoder": str(Path(run_dir) / "encoder"),
                   "eval_pairs": pairs, "eval_samples": samples, "log_every": 50}
        out = train_dit_task(run_dir, processes, options, run.info.run_id)
        report = judge_samples_task(run_dir, corpus_dir, pairs, samples, guidance)
        summary = {"sample_acc_median": float(report["acc_sample"].median()),
                   "members_acc_median": float(report["acc_members"].median()),
                   "dist_nearest_median": float(report["dist_nearest"].median()),
                   "dist_between_members_median": float(report["dist_between_members"].median())}
        mlflow.log_metrics(summary)
        with tempfile.TemporaryDirectory() as tmp:
            report.to_csv(Path(tmp) / "seen_samples.csv", index=False)
            mlflow.log_artifact(str(Path(tmp) / "seen_samples.csv"))
        for name in ("model.safetensors", "config.json", "losses.csv", "run.json"):
            if (Path(out) / name).is_file():
                mlflow.log_artifact(str(Path(out) / name), artifact_path="dit")
    version = register_dit_task(run.info.run_id, run_dir)
    get_run_logger().info("dit: %s (registered model %s version %s)\n%s", summary, DIT_MODEL, version,
                          report.to_string(index=False))
    return summary


if __name__ == "__main__":
    dit_flow()
