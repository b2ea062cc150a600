"""The tune's run folders: what a tune reads from its base run (a student's sampler, the base's cost) and writes
into its new one, whether a folder holds a given tune, the recipe of phases that ``weightgen run`` and the
pipeline follow, and a tune's MLflow run (the tune itself: :mod:`weightgen.dit_tune`)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from weightgen.dit_tune import TUNE_FILE, TuneConfig
from weightgen.io import file_digest
from weightgen.scale_prior import save_prior


def student_sampler(run_dir: Path, dit, cfg: TuneConfig) -> dict | None:
    """A patch-writing student's sampler (its ``dit/config.json``), or None for a DiT that gives latents.

    A student samples in one pass from coordinate noise; a tune from any other start would train it for
    a sampler it is never drawn with, so that is refused.
    """
    if dit.cfg.out_dim is None:
        return None
    sampler = json.loads((run_dir / "dit" / "config.json").read_text()).get("sampler", {})
    if sampler.get("output") != "patches" or sampler.get("noise") != "coords":
        raise ValueError(f"{run_dir}: its DiT writes patches but its sampler is {sampler or 'not recorded'}; "
                         "only a `weightgen dit distill --output patches` student can be tuned")
    if cfg.noise != "coords":
        raise ValueError(f"{run_dir}: a distilled student samples from coordinate noise; tune it with noise 'coords', "
                         f"not {cfg.noise!r}")
    return sampler


def tuned_base_flops(run_dir: Path) -> tuple[int, bool]:
    """What the base run's generator cost, counted into the tune's ``flops``, and whether that is its whole cost.

    A tuned base: its tune's FLOPs (the encoder and diffusion DiT are counted from the run folder, as before).
    A distilled student: everything (its distill.json holds the teacher and the distillation).
    """
    from weightgen.flops import generator_training_flops, records_whole_cost

    if records_whole_cost(run_dir):
        return generator_training_flops(run_dir), True
    tuned = run_dir / "dit" / TUNE_FILE
    return (int(json.loads(tuned.read_text())["flops"]) if tuned.is_file() else 0), False


def write_tuned_run(dit, run_dir: Path, out_dir: Path, cfg: TuneConfig, summary: dict, student: dict | None = None,
                    prior: dict | None = None) -> dict:
    """The tuned run folder: the base's encoder and latents, the DiT with the sampler it was tuned for, the summary;
    with ``prior``, the scale prior its samples were matched to (written first, so the sampler never names a missing one)."""
    from weightgen.dit_train import save_one_step_run

    # How Generator.from_run must sample this DiT: one step from the start it was tuned on (a student: as before).
    sampler = {"steps": 1, "noise": "coords" if cfg.noise == "coords" else "gaussian", "keep_noise": cfg.keep_noise,
               "rebalance": cfg.rebalance}
    if student is not None:  # the base student's sampler (student_sampler)
        sampler = {**student, "rebalance": cfg.rebalance}
    sampler["match_scales"] = cfg.match_scales  # as tuned: a calibrated base's own prior is not what this tune saw
    sampler["init_spectrum"] = cfg.init_spectrum  # likewise: the reshape stays only if the tune's loss saw it
    if cfg.canvas:  # written as one architecture per family and cut to each: the sampler must read them so too
        sampler["canvas"] = dict(cfg.canvas)
    if prior is not None:
        (out_dir / "dit").mkdir(parents=True, exist_ok=True)
        save_prior(out_dir / "dit", prior)
    summary = {**summary, "sampler": sampler}
    base = json.loads((run_dir / "dit" / "config.json").read_text())
    save_one_step_run(dit, run_dir, out_dir, "functional-finetune", sampler, TUNE_FILE, summary, "functional_finetune.csv",
                      config={"train": base.get("train")})
    if (run_dir / "latents.safetensors").is_file():  # what the base DiT trained on: its FLOPs are counted from it
        shutil.copy2(run_dir / "latents.safetensors", out_dir / "latents.safetensors")
    return summary


def tuned_already(run_dir: str | os.PathLike, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  cfg: TuneConfig) -> bool:
    """Whether ``out_dir`` holds this very tune: same base DiT weights, corpus and config (a rerun can skip it)."""
    done, weights = Path(out_dir) / "dit" / TUNE_FILE, Path(out_dir) / "dit" / "model.safetensors"
    if not (done.is_file() and weights.is_file()):
        return False
    summary = json.loads(done.read_text())
    defaults = asdict(TuneConfig())  # a setting added since that tune was written: it ran at the default
    return (summary.get("base_dit_sha256") == file_digest(Path(run_dir) / "dit" / "model.safetensors")
            and summary.get("corpus") == str(corpus_dir)
            and all(summary.get(k, defaults[k]) == v for k, v in asdict(cfg).items()))


def tune_recipe(run_dir: str | os.PathLike, steps: int = 2000, lookahead_steps: int = 500, inner_steps: int = 20,
                bias_penalty: float = 1.0) -> list[tuple[Path, TuneConfig]]:
    """The tune recipe of docs/results.md ("Levers tried", items 12 and 15) as (out folder, config) phases.

    A bias-penalty tune into ``run_dir/tuned``, then a tune with an ``inner_steps`` lookahead into
    ``run_dir/tuned-lookahead``, each phase starting from the one before. ``steps=0`` tunes nothing (the
    diffusion DiT is used as it is); ``lookahead_steps=0`` stops after the first phase. ``weightgen run``
    and the pipeline's tune stage both follow it, so they build the same generator.
    """
    run_dir = Path(run_dir)
    phases = []
    for out, n, inner in ((run_dir / "tuned", steps, 0), (run_dir / "tuned-lookahead", lookahead_steps, inner_steps)):
        if not n:
            break
        phases.append((out, TuneConfig(steps=n, bias_penalty=bias_penalty, inner_steps=inner)))
    return phases


def log_tune(summary: dict, tags: dict[str, str] | None = None) -> str:
    """One MLflow run in the ``dit`` experiment: the config as params, every evaluation as metrics."""
    from weightgen.tracking import log_summary_run

    counts = ("flops", "own_flops", "base_tune_flops", "wall_time_s")
    metrics = {"tune_flops": summary["flops"], "wall_time_s": summary["wall_time_s"],
               **{k: summary[k] for k in ("own_flops", "base_tune_flops") if k in summary}}
    return log_summary_run("dit", f"dit-tune-{Path(summary['base_run']).name}", "tune", summary, counts, metrics, tags)
