"""The tune flow: a trained DiT tuned by the task loss into a new run folder (``weightgen.dit_tune``)."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from tasks.tune import log_tune_task, tune_task
from weightgen.dit_tune import TuneConfig


def flow_parameters(cfg: TuneConfig) -> dict:
    """tune_flow's parameters for a TuneConfig (the flow takes plain values, which the Prefect UI draws as a form)."""
    return {"steps": cfg.steps, "lr": cfg.lr, "noise": cfg.noise, "bias_penalty": cfg.bias_penalty,
            "inner_steps": cfg.inner_steps, "rebalance": cfg.rebalance, "distill": cfg.distill, "anchor": cfg.anchor,
            "holdout_archs": ";".join(cfg.holdout_archs), "neighbours": cfg.neighbours,
            "exclude_archs": ";".join(cfg.exclude_archs), "task_neighbours": cfg.task_neighbours,
            "exclude_tasks": ";".join(cfg.exclude_tasks), "init_weight": cfg.init_weight, "eval_every": cfg.eval_every,
            "families": ",".join(cfg.families), "match_scales": cfg.match_scales, "fit_head": cfg.fit_head,
            "init_spectrum": cfg.init_spectrum, "canvas": ";".join(f"{f}={a}" for f, a in cfg.canvas.items())}


@flow(name="tune", flow_run_name="tune-{out_dir}")
def tune_flow(
    run_dir: Annotated[str, Field(min_length=1, description="run folder with encoder/ and a trained dit/")] = "runs/default",
    corpus_dir: Annotated[str, Field(min_length=1, description="corpus whose seen pairs it is tuned on")] = "corpus/default",
    out_dir: Annotated[str, Field(min_length=1, description="new run folder (the base run is left as it is)")] = "runs/default-tuned",
    steps: Annotated[int, Field(ge=1, le=1_000_000)] = 2000,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    noise: Annotated[Literal["coords", "fixed", "fresh"], Field(description="start of each sample")] = "coords",
    bias_penalty: Annotated[float, Field(ge=0, description="x mean square of the samples' biases")] = 1.0,
    inner_steps: Annotated[int, Field(ge=0, le=10_000, description="lookahead: also score each sample after this many fine-tune steps")] = 0,
    rebalance: Annotated[Literal["none", "logits", "predictions"], Field(description="sampler: rescale to the target's init scale")] = "none",
    distill: Annotated[float, Field(ge=0, description="x KL from the pair's trained corpus member to the sample")] = 0.0,
    anchor: Annotated[float, Field(ge=0, description="x the sample's squared relative distance to the pair's trained member")] = 0.0,
    holdout_archs: Annotated[str, Field(description="';'-separated corpus architectures kept out and scored as unseen")] = "",
    neighbours: Annotated[int, Field(ge=0, le=64, description="+ width-scaled architectures per corpus pair, on its task")] = 0,
    exclude_archs: Annotated[str, Field(description="';'-separated architectures never drawn as neighbours")] = "",
    task_neighbours: Annotated[int, Field(ge=0, le=64, description="+ pairs per corpus pair of its architecture on a task one knob away")] = 0,
    exclude_tasks: Annotated[str, Field(description="';'-separated tasks never drawn as task neighbours (a suite's unseen ones)")] = "",
    init_weight: Annotated[float, Field(ge=0, description="x the sample's own loss (0 with a lookahead: scored where it lands)")] = 1.0,
    eval_every: Annotated[int, Field(ge=1, le=1_000_000, description="score the corpus pairs every this many steps")] = 250,
    families: Annotated[str, Field(description="','-separated families whose pairs alone are trained on (all are scored)")] = "",
    processes: Annotated[int, Field(ge=1, le=64, description="tune processes (accelerate launch when > 1; a GPU each when there are GPUs)")] = 1,
    match_scales: Annotated[bool, Field(description="samples' matrices at the corpus's trained scale per layer role, as sampled")] = False,
    fit_head: Annotated[bool, Field(description="score each sample with its head refitted to its body: a body for generated+head")] = False,
    init_spectrum: Annotated[bool, Field(description="score and sample each sample after the init-spectrum reshape (weightgen.spectrum)")] = False,
    canvas: Annotated[str, Field(description="';'-separated family=architecture: written for all of the family, cut to each pair")] = "",
) -> dict:
    cfg = TuneConfig(steps=steps, lr=lr, noise=noise, bias_penalty=bias_penalty, inner_steps=inner_steps, rebalance=rebalance,
                     distill=distill, anchor=anchor, holdout_archs=[a for a in holdout_archs.split(";") if a], neighbours=neighbours,
                     exclude_archs=[a for a in exclude_archs.split(";") if a], task_neighbours=task_neighbours,
                     exclude_tasks=[t for t in exclude_tasks.split(";") if t], init_weight=init_weight,
                     eval_every=eval_every, families=[f for f in families.split(",") if f], match_scales=match_scales,
                     fit_head=fit_head, init_spectrum=init_spectrum,
                     canvas=dict(item.split("=", 1) for item in canvas.split(";") if item))
    summary = tune_task(run_dir, corpus_dir, out_dir, cfg, processes)
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.parent_flow_run_id": str(flow_run.parent_flow_run_id or ""),
            "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or flow_run.id or "")}
    run_id = log_tune_task(summary, tags)
    result = {"final_val_acc_median": summary["log"][-1]["val_acc_median"], "tune_flops": summary["flops"],
              "wall_time_s": summary["wall_time_s"], "mlflow_run": run_id}
    get_run_logger().info("tuned DiT %s: %s", out_dir, result)
    return result


if __name__ == "__main__":
    tune_flow()
