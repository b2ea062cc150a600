"""The distil flow: a tuned DiT's one-step samples taught to a smaller, cheaper DiT (``weightgen.dit_distill``)."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from tasks.distill import distill_task, log_distill_task
from weightgen.dit import DIT_PRESETS
from weightgen.dit_distill import LOSS_WEIGHTINGS, TARGET_STARTS, DistillConfig


@flow(name="distill", flow_run_name="distill-{out_dir}")
def distill_flow(
    teacher_dir: Annotated[str, Field(min_length=1, description="a tuned run folder (`weightgen dit tune`): the teacher")] = "runs/default/tuned-lookahead",
    corpus_dir: Annotated[str, Field(min_length=1, description="corpus whose seen pairs the student learns the teacher on")] = "corpus/default",
    out_dir: Annotated[str, Field(min_length=1, description="new run folder for the student (the teacher is left as it is)")] = "runs/default/distilled",
    preset: Annotated[Literal[tuple(DIT_PRESETS)], Field(description="the student DiT's size")] = "XS",
    steps: Annotated[int, Field(ge=1, le=1_000_000)] = 3000,
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
    function_weight: Annotated[float, Field(ge=0, description="x KL from the teacher's network to the student's, added to the output error")] = 0.0,
    holdout_archs: Annotated[str, Field(description="';'-separated corpus architectures kept out and scored as unseen")] = "",
    neighbours: Annotated[int, Field(ge=0, le=100, description="width-scaled architectures per corpus pair, labelled by the teacher")] = 4,
    exclude_archs: Annotated[str, Field(description="';'-separated architectures never drawn as neighbours (a suite's unseen ones)")] = "",
    output: Annotated[Literal["latents", "patches"], Field(description="patches: the student writes the weights itself, and sampling skips the decoder")] = "latents",
    target_steps: Annotated[int, Field(ge=0, le=100_000, description="> 0: learn the teacher's network after this many fine-tune steps on the pair's task")] = 0,
    target_start: Annotated[Literal[TARGET_STARTS], Field(description="retrieval: the targets' fine-tune steps start from the retrieval baseline's init of each pair, not the teacher's sample")] = "teacher",
    loss_weighting: Annotated[Literal[LOSS_WEIGHTINGS], Field(description="tensors: each tensor's relative error counts the same, not each value; elements+vectors: the mean square plus the 1-D tensors' relative errors")] = "elements",
    seed: Annotated[int, Field(ge=0, description="the student's init, its pairs' order and batches, the neighbours and the targets' fine-tune batches")] = 0,
    targets_from: Annotated[str, Field(description="a distilled run whose stored targets (same teacher, corpus, target settings and seed) are reused instead of fine-tuned again")] = "",
) -> dict:
    cfg = DistillConfig(preset=preset, steps=steps, lr=lr, function_weight=function_weight, neighbours=neighbours, output=output,
                        target_steps=target_steps, target_start=target_start, loss_weighting=loss_weighting, seed=seed,
                        targets_from=targets_from, holdout_archs=[a for a in holdout_archs.split(";") if a],
                        exclude_archs=[a for a in exclude_archs.split(";") if a])
    summary = distill_task(teacher_dir, corpus_dir, out_dir, cfg)
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.parent_flow_run_id": str(flow_run.parent_flow_run_id or ""),
            "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or flow_run.id or "")}
    run_id = log_distill_task(summary, tags)
    last = summary["log"][-1]
    result = {"student_val_acc_median": last["val_acc_median"], "teacher_val_acc_median": last["teacher_val_acc_median"],
              "target_error_median": last["target_error_median"], "generator_flops": summary["flops"],
              "wall_time_s": summary["wall_time_s"], "mlflow_run": run_id}
    get_run_logger().info("distilled DiT %s: %s", out_dir, result)
    return result


if __name__ == "__main__":
    distill_flow()
