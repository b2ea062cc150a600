"""What each stage of the pipeline flow (``flows/pipeline.py``) is asked to do: one pydantic model per stage.

The Prefect UI draws the pipeline's run form from these models, and a value out of range is refused before any
work starts. ``flows/nightly.py`` builds its pipeline from the same models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from weightgen.dit import DIT_PRESETS
from weightgen.dit_distill import LOSS_WEIGHTINGS


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusSettings(Settings):
    """Stage 1: train the zoo grid's members into the corpus (finished members are skipped)."""

    grid: str = Field("configs/grids/default.yaml", description="zoo grid YAML: archs × tasks × seeds, recipe, exclude lists")
    workers: int = Field(2, ge=1, le=256, description="parallel training processes")


class EncoderSettings(Settings):
    """Stage 2: the latent patch encoder, judged on held-out members; caches latents for the DiT."""

    patch_size: int = Field(32, ge=1, le=1024, description="values per patch")
    latent_dim: int = Field(32, ge=1, le=1024, description="latent numbers per patch")
    steps: int = Field(3000, ge=1, le=1_000_000, description="training steps")
    min_step: int = Field(1000, ge=0, description="train on checkpoints at or after this step")
    holdout: float = Field(0.1, gt=0, lt=1, description="share of members held out whole to judge fidelity")


class DiTSettings(Settings):
    """Stage 3: the diffusion transformer on the cached latents (Accelerate when processes > 1)."""

    processes: int = Field(1, ge=1, le=64, description="training processes")
    steps: int = Field(2000, ge=1, le=10_000_000, description="training steps")
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(3e-4, gt=0, le=1)
    preset: Literal[tuple(DIT_PRESETS)] = Field("S", description="model size")
    checkpoint_every: int = Field(500, ge=0, description="0: no intermediate checkpoints")
    resume: bool = Field(True, description="continue from the latest checkpoint in run_dir/dit")
    eval_every: int = Field(500, ge=0, description="score sampled seen architectures every this many steps (0: never)")
    pairs: str = Field("", description="seen 'ARCH@TASK;...' pairs to sample and score (default: one per family)")
    samples: int = Field(2, ge=1, le=64)
    guidance: float = Field(1.0, ge=0, le=20)


class TuneSettings(Settings):
    """Stage 4: tune the DiT by the task loss (bias penalty, then a lookahead); the evaluation benches the result."""

    enabled: bool = Field(True, description="tune the DiT (off: the evaluation benches the diffusion DiT as it is)")
    steps: int = Field(2000, ge=1, le=1_000_000, description="bias-penalty tune steps, into <run_dir>/tuned")
    lookahead_steps: int = Field(500, ge=0, le=1_000_000,
                                 description="then this many lookahead tune steps, into <run_dir>/tuned-lookahead (0: none)")
    inner_steps: int = Field(20, ge=1, le=10_000, description="lookahead: each sample is also scored after this many fine-tune steps")
    bias_penalty: float = Field(1.0, ge=0, le=1000, description="x mean square of the samples' biases, added to the loss")
    processes: int = Field(1, ge=1, le=64, description="tune processes (accelerate launch when > 1)")

    def phases(self, run_dir: str) -> list:
        """The (out folder, TuneConfig) phases this stage runs, in order (none when off)."""
        from weightgen.tune_runs import tune_recipe

        if not self.enabled:
            return []
        return tune_recipe(run_dir, self.steps, self.lookahead_steps, self.inner_steps, self.bias_penalty)


class DistillSettings(Settings):
    """Stage 5: teach a smaller DiT the tuned DiT's one-step samples (a cheaper sample per init); the evaluation benches it."""

    enabled: bool = Field(False, description="distil the tuned DiT into <run_dir>/distilled (needs the tune stage)")
    preset: Literal[tuple(DIT_PRESETS)] = Field("XS", description="the student's size")
    steps: int = Field(3000, ge=1, le=1_000_000, description="distillation steps")
    neighbours: int = Field(4, ge=0, le=100, description="width-scaled architectures per corpus pair, labelled by the teacher")
    output: Literal["latents", "patches"] = Field("latents", description="patches: the student writes the weights itself (no decoder at sampling)")
    target_steps: int = Field(0, ge=0, le=100_000, description="> 0: learn the teacher's network after this many fine-tune steps")
    loss_weighting: Literal[LOSS_WEIGHTINGS] = Field("elements", description="tensors: each tensor's relative error counts the same, not each value; elements+vectors: the mean square plus the 1-D tensors' relative errors")
    seed: int = Field(0, ge=0, description="the distillation's seed (the student's init, batches, neighbours, targets), and the student tune's")
    tune_steps: int = Field(0, ge=0, le=1_000_000, description="then tune the student as it samples for this many steps, into <run_dir>/distilled-tuned (0: no tune)")
    tune_lr: float = Field(1e-4, gt=0, le=1, description="the student tune's LR (a tenth of the teacher's: results item 46)")
    tune_inner_steps: int = Field(50, ge=0, le=10_000, description="the student tune's lookahead: each sample also scored after this many fine-tune steps")
    tune_neighbours: int = Field(4, ge=0, le=64, description="the student tune's width-scaled architectures per corpus pair (the suite's unseen ones kept out)")
    init_spectrum: bool = Field(False, description="tune the student through the init-spectrum reshape, and sample it so (needs tune_steps)")

    @model_validator(mode="after")
    def _spectrum_needs_a_tune(self) -> "DistillSettings":
        if self.init_spectrum and not self.tune_steps:
            raise ValueError("init_spectrum tunes the student through the reshape: set tune_steps > 0 "
                             "(or copy a run with `weightgen dit init-spectrum`)")
        return self

    def distill_parameters(self) -> dict:
        """distill_flow's own settings (the student tune's are not its)."""
        return self.model_dump(exclude={"enabled", "tune_steps", "tune_lr", "tune_inner_steps", "tune_neighbours",
                                        "init_spectrum"})

    def student_tune(self, exclude_archs: list[str]):
        """The student tune's TuneConfig (results items 46 and 56), or None when ``tune_steps`` is 0."""
        from weightgen.dit_tune import TuneConfig

        if not self.tune_steps:
            return None
        return TuneConfig(steps=self.tune_steps, lr=self.tune_lr, inner_steps=self.tune_inner_steps, bias_penalty=1.0,
                          neighbours=self.tune_neighbours, exclude_archs=list(exclude_archs), seed=self.seed,
                          init_spectrum=self.init_spectrum)

    def folders(self, run_dir: str) -> tuple[str, ...]:
        """The run folders this stage writes: the student, then its tune (none when off)."""
        if not self.enabled:
            return ()
        student = str(Path(run_dir) / "distilled")
        return (student, student + "-tuned") if self.tune_steps else (student,)


class EvaluateSettings(Settings):
    """Stage 6: the benchmark suite on the corpus and DiT just built."""

    enabled: bool = Field(True, description="run the evaluation stage")
    suite: str = Field("suites/default.yaml", description="bench suite YAML")
    out_dir: str = Field("", description="results folder (default: <run_dir>/bench)")
    workers: int = Field(2, ge=1, le=256, description="parallel fine-tuning processes")


__all__ = ["CorpusSettings", "DiTSettings", "DistillSettings", "EncoderSettings", "EvaluateSettings", "Settings",
           "TuneSettings"]
