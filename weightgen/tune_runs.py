"""The tune's run folders seen from outside: whether one holds a given tune, the recipe of phases that
``weightgen run`` and the pipeline follow, and a tune's MLflow run (the tune itself: :mod:`weightgen.dit_tune`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from weightgen.dit_tune import TUNE_FILE, TuneConfig
from weightgen.io import file_digest


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
