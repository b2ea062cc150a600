"""The encoder flow: train the patch autoencoder on a corpus, judge it on held-out members, cache latents."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from tasks.encoder import log_encoder_task, register_encoder_task, train_encoder_task
from weightgen.encoder import EncoderConfig


@flow(name="encoder", flow_run_name="encoder-ld{latent_dim}-{corpus_dir}")
def encoder_flow(
    corpus_dir: str = Field("corpus/default", description="corpus folder"),
    out_dir: str = Field("runs/default", description="writes encoder/ and latents.safetensors here"),
    patch_size: int = Field(32, ge=1, le=1024),
    latent_dim: int = Field(16, ge=1, le=1024),
    steps: int = Field(3000, ge=1),
    min_step: int = Field(1000, ge=0, description="train on checkpoints at or after this step"),
    holdout: float = Field(0.1, gt=0, lt=1, description="share of members held out whole to judge fidelity"),
    minilm: bool = Field(False, description="also report MiniLM sentence-embedding cosine after reconstruction"),
) -> dict:
    config = EncoderConfig(patch_size=patch_size, latent_dim=latent_dim, steps=steps)
    stage = train_encoder_task(corpus_dir, out_dir, config, min_step, holdout, minilm)
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.parent_flow_run_id": str(flow_run.parent_flow_run_id or ""),
            "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or flow_run.id or "")}
    run_id = log_encoder_task(stage, config, corpus_dir, out_dir, tags)
    version = register_encoder_task(run_id, out_dir)
    get_run_logger().info("encoder: %s (MLflow run %s, registered model weightgen-encoder version %s)", stage.summary,
                          run_id, version)
    return stage.summary


if __name__ == "__main__":
    encoder_flow()
