"""The encoder flow: train the patch autoencoder on a corpus, judge it on held-out members, cache latents."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from tasks.encoder import log_encoder_task, register_encoder_task, train_encoder_task
from weightgen.encoder import EncoderConfig
from weightgen.tracking import ENCODER_MODEL


@flow(name="encoder", flow_run_name="encoder-ld{latent_dim}-{corpus_dir}")
def encoder_flow(
    corpus_dir: Annotated[str, Field(description="corpus folder")] = "corpus/default",
    out_dir: Annotated[str, Field(description="writes encoder/ and latents.safetensors here")] = "runs/default",
    patch_size: Annotated[int, Field(ge=1, le=1024)] = 32,
    latent_dim: Annotated[int, Field(ge=1, le=1024)] = 16,
    steps: Annotated[int, Field(ge=1)] = 3000,
    min_step: Annotated[int, Field(ge=0, description="train on checkpoints at or after this step")] = 1000,
    holdout: Annotated[float, Field(gt=0, lt=1, description="share of members held out whole to judge fidelity")] = 0.1,
    minilm: Annotated[bool, Field(description="also report MiniLM sentence-embedding cosine after reconstruction")] = False,
) -> dict:
    config = EncoderConfig(patch_size=patch_size, latent_dim=latent_dim, steps=steps)
    stage = train_encoder_task(corpus_dir, out_dir, config, min_step, holdout, minilm)
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.parent_flow_run_id": str(flow_run.parent_flow_run_id or ""),
            "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or flow_run.id or "")}
    run_id = log_encoder_task(stage, config, corpus_dir, out_dir, tags)
    version = register_encoder_task(run_id, out_dir)
    get_run_logger().info("encoder: %s (MLflow run %s, registered model %s version %s)", stage.summary,
                          run_id, ENCODER_MODEL, version)
    return stage.summary


if __name__ == "__main__":
    encoder_flow()
