"""The benchmark: fine-tune every init method on every suite case and measure the compute it saves.

The protocol is BENCHMARK.md's. A *job* is one (case, seed): it produces every method's init (with
its counted cost), fine-tunes each with the case's family recipe and the same batch order, and
returns the learning curves. Scoring (:mod:`weightgen.bench_score`) happens once all jobs are in,
because the target depends on random init over all seeds.

Training FLOPs are counted per step by the training loop (forward + backward); evaluation passes are
the same for every method and left out. Jobs are independent, so any ``map`` runs them: the Prefect
flow uses a process pool, tests use the built-in one.

A job can run a subset of the methods. The generator-free ones (``BASELINE_METHODS``) depend only on
the case, the seed, the family's recipe, the corpus and this code, never on the generator, so the
evaluation flow caches them (:mod:`weightgen.bench_cache`) and a bench of the next generator reuses
them (rows marked ``reused``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from weightgen.bench_score import (GOAL_SAVED, agreement, amortisation, generated_beats, grid_limits, kappa, score,
                                   summarize)
from weightgen.head_fit import HEAD_FIT_SUFFIX
from weightgen.specs import parse_arch, parse_task
from weightgen.suite import GENERATED_METHODS, METHODS, Case, Suite, check_splits

BASELINE_METHODS = tuple(m for m in METHODS if m not in GENERATED_METHODS)  # their results never read the generator


@dataclass(frozen=True)
class Job:
    case_index: int
    case: Case
    seed: int

    @property
    def label(self) -> str:
        return f"{self.case.case_id}/seed{self.seed}"


def plan(suite: Suite) -> list[Job]:
    return [Job(i, case, seed) for i, case in enumerate(suite.cases) for seed in suite.seeds_for(case)]


def check_suite(suite: Suite) -> pd.DataFrame:
    """The corpus manifest, after refusing a suite whose cases leak into it (or an empty corpus)."""
    from weightgen.corpus import Corpus
    from weightgen.flops import generator_flops_countable
    from weightgen.generate import GeneratorError

    manifest = Corpus(suite.corpus).require_nonempty()
    check_splits(suite, manifest)
    if any(m in GENERATED_METHODS for m in suite.methods):
        _generator(suite.generator, suite.ddim_steps, suite.guidance, suite.label_map)  # a missing one fails now
        if not generator_flops_countable(suite.generator):  # the amortisation needs it, after every job
            raise GeneratorError(f"{suite.generator}: no latents.safetensors, needed to count the generator's training FLOPs")
    return manifest


# --------------------------------------------------------------------------- per-process caches
@functools.lru_cache(maxsize=4)
def _corpus_index(root: str):
    from weightgen.baselines import CorpusIndex

    return CorpusIndex(root)


@functools.lru_cache(maxsize=2)
def _generator(run_dir: str, steps: int, guidance: float, label_map: bool):
    from weightgen.generate import Generator

    return Generator.from_run(run_dir, steps=steps, guidance=guidance, relabel=label_map)


@functools.lru_cache(maxsize=16)
def _member_predictions(root: str, arch: str, task: str) -> dict[str, torch.Tensor]:
    """Test predictions on ``task`` of every final corpus checkpoint with ``arch``'s shapes (same dataset).

    A member trained on another label order is there twice: as it predicts, and with its predictions renamed
    into ``task``'s order (``"<member> (relabelled)"``). A start that copies a member up to a renaming of the
    classes (what a suite's ``label_map`` makes of one) is a near-copy all the same, and novelty must say so.
    """
    from weightgen.checkpoint import model_for_weights
    from weightgen.data import load_task
    from weightgen.relabel import label_renaming

    index = _corpus_index(root)  # the final checkpoints the baselines read too, loaded once per process
    finals = index.finals
    mine = finals[(finals["arch"] == arch) & (finals["dataset"] == parse_task(task).dataset)]
    test = load_task(task).test
    out = {}
    for row in mine.itertuples():
        predictions = _predictions(model_for_weights(index.state_dict(row.member), arch, row.task, where=row.member), test.x)
        out[row.member] = predictions
        renaming = label_renaming(row.task, task)
        if renaming is not None:
            out[f"{row.member} (relabelled)"] = torch.as_tensor(renaming)[predictions]
    return out


@torch.no_grad()
def _predictions(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).argmax(dim=1)


# --------------------------------------------------------------------------- one job
def make_init(suite: Suite, method: str, arch: str, task: str, seed: int):
    """One method's init for (arch, task, seed), with the FLOPs and seconds it cost (a ``baselines.Init``)."""
    from weightgen.baselines import Init
    from weightgen.baselines import make_init as baseline_init

    if method.endswith(HEAD_FIT_SUFFIX):
        return _with_fitted_head(make_init(suite, method.removesuffix(HEAD_FIT_SUFFIX), arch, task, seed), method,
                                 arch, task, seed)
    if method == "generated":
        generation = _generator(suite.generator, suite.ddim_steps, suite.guidance, suite.label_map).sample(arch, task, 1, seed)
        return Init(method, generation.state_dicts[0], generation.flops, generation.wall_time, suite.generator,
                    f"sampled as {generation.via}, cut to shape" if generation.via else "")
    if method == "generated-best-of-k":
        batch_size = suite.recipe_for(parse_arch(arch).family).batch_size
        generation = _generator(suite.generator, suite.ddim_steps, suite.guidance, suite.label_map).best_of(
            arch, task, suite.samples, seed, batch_size)
        return Init(method, generation.state_dicts[generation.chosen], generation.flops, generation.wall_time,
                    suite.generator, f"sample {generation.chosen} of {suite.samples}"
                    + (f"; sampled as {generation.via}, cut to shape" if generation.via else ""))
    return baseline_init(method, arch, task, seed, _corpus_index(suite.corpus), label_map=suite.label_map)


def _with_fitted_head(base, method: str, arch: str, task: str, seed: int):
    """``base`` (an ``Init``) with its head refitted to the task's training examples; both costs are charged."""
    from weightgen.baselines import Init
    from weightgen.head_fit import with_fitted_head

    if base.state_dict is None:  # the base method does not apply to this case, so neither does its head fit
        return Init(method, None, base.flops, base.wall_time, base.source, base.note)
    fit = with_fitted_head(arch, task, base.state_dict, seed)
    note = f"head {fit.head} fitted on {fit.examples} training examples: train acc {fit.train_acc_before:.3f} → " \
           f"{fit.train_acc_after:.3f}"
    return Init(method, fit.state_dict, base.flops + fit.flops, base.wall_time + fit.wall_time, base.source,
                "; ".join(n for n in (base.note, note) if n))


def run_job(suite: Suite, job: Job, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Each method's init for one (case, seed), fine-tuned: result rows, curves, random's final predictions.

    ``methods``: a subset of the suite's (default: all of them), in the suite's order. The result is
    plain data (predictions as lists), so it can be stored as JSON and read back.
    """
    from weightgen.checkpoint import model_for_weights
    from weightgen.data import load_task
    from weightgen.training import evaluate, train

    case, seed = job.case, job.seed
    family = parse_arch(case.arch).family
    data, recipe = load_task(case.task), suite.recipe_for(family)
    members = _member_predictions(suite.corpus, case.arch, case.task)
    rows, curves, final_predictions = [], [], {}
    for method in [m for m in suite.methods if methods is None or m in methods]:
        row = {"suite": suite.name, "case": case.case_id, "case_index": job.case_index, "split": case.split,
               "family": family, "arch": case.arch, "task": case.task, "method": method, "seed": seed, "reused": False}
        init = make_init(suite, method, case.arch, case.task, seed)
        row.update(init_flops=init.flops, init_wall_time=init.wall_time, source=init.source, note=init.note)
        if init.state_dict is None:
            rows.append({**row, "status": "n/a"})
            continue
        model = model_for_weights(init.state_dict, case.arch, case.task, where=f"{method} init")
        start_predictions = _predictions(model, data.test.x)
        test_acc_0 = evaluate(model, data.test)[1]
        nearest = max(members, key=lambda m: kappa(start_predictions, members[m]), default=None)
        result = train(model, data, recipe, seed=seed)
        if method == "random":
            final_predictions[seed] = _predictions(model, data.test.x).tolist()
        rows.append({
            **row, "status": "ok", "flops_per_step": result.flops_per_step, "train_wall_time": result.wall_time,
            "val_acc_0": result.curve[0].val_acc, "test_acc_0": test_acc_0,
            "final_val_acc": result.final.val_acc, "final_test_acc": result.test_acc,
            "novelty": max((agreement(start_predictions, p) for p in members.values()), default=math.nan),
            "novelty_kappa": kappa(start_predictions, members[nearest]) if nearest else math.nan,
            "nearest_member": nearest or "",
        })
        curves += [{"case_index": job.case_index, "method": method, "seed": seed, "step": p.step,
                    "val_acc": p.val_acc, "val_loss": p.val_loss} for p in result.curve]
    return {"rows": rows, "curves": curves, "random_predictions": final_predictions, "case_index": job.case_index}


# --------------------------------------------------------------------------- the whole suite
def write_outputs(out: str | os.PathLike, suite: Suite, table: pd.DataFrame, curves: pd.DataFrame,
                  summary: pd.DataFrame, beats: pd.DataFrame, amort: dict[str, float],
                  limits: pd.DataFrame) -> dict[str, Path]:
    """Results (parquet + CSV), curves, summary (CSV + markdown), grid limits and plots, each written atomically."""
    from weightgen.io import atomic_write_bytes, atomic_write_json, atomic_write_text
    from weightgen.plots import compute_saved_plot, learning_curves_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.parquet", "results_csv": out / "results.csv", "curves": out / "curves.parquet",
             "summary": out / "summary.csv", "summary_md": out / "summary.md", "beats": out / "generated_beats.csv",
             "amortisation": out / "amortisation.json", "grid_limits": out / "grid_limits.csv"}
    atomic_write_bytes(paths["results"], table.to_parquet(index=False))
    atomic_write_text(paths["results_csv"], table.to_csv(index=False))
    atomic_write_bytes(paths["curves"], curves.to_parquet(index=False))
    atomic_write_text(paths["summary"], summary.reset_index().to_csv(index=False))
    atomic_write_text(paths["summary_md"], summary_markdown(suite, summary, beats, amort, limits))
    atomic_write_text(paths["grid_limits"], limits.to_csv(index=False))
    atomic_write_text(paths["beats"], beats.to_csv(index=False))
    atomic_write_json(paths["amortisation"], amort)
    paths["curves_png"] = learning_curves_plot(suite, table, curves, out / "learning_curves.png")
    paths["saved_png"] = compute_saved_plot(summary, out / "compute_saved.png")
    return paths


def summary_markdown(suite: Suite, summary: pd.DataFrame, beats: pd.DataFrame, amort: dict[str, float],
                     limits: pd.DataFrame) -> str:
    shown = summary[["cases", "runs", "compute_saved_median", "saved_ci_low", "saved_ci_high", "reach_rate",
                     "final_test_acc", "final_vs_random", "test_acc_at_init", "novelty_median", "novelty_kappa_median",
                     "random_kappa", "not_applicable"]]
    text = [f"# Suite `{suite.name}`", ""]
    if suite.label_map:  # not the protocol's default: say so wherever the figures are read
        text += ["Label map on: every corpus method maps label orders exactly (`weightgen.relabel`).", ""]
    text += [shown.reset_index().to_markdown(index=False, floatfmt=".3f"), ""]
    if len(beats):
        text += ["## Share of cases where a generated method beats each baseline", "",
                 beats.to_markdown(index=False, floatfmt=".2f"), ""]
    if len(limits):
        text += [f"## Cases whose evaluation grid cannot show a {GOAL_SAVED:.0%} saving", "",
                 "Short of reaching the target at step 0, an init is charged at least one evaluation interval.", "",
                 limits.to_markdown(index=False, floatfmt=".3f"), ""]
    shown_amort = {k: "never" if v is None else v for k, v in amort.items()}
    text += ["## Amortisation (FLOPs)", "", pd.Series(shown_amort, name="value").to_frame().to_markdown(floatfmt=".3g"), ""]
    return "\n".join(text)


def run_suite(suite: Suite, out: str | os.PathLike, map_fn: Callable = map, log: bool = True,
              tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Check, run every job through ``map_fn``, score, write the outputs and log them to MLflow."""
    started = time.perf_counter()
    manifest = check_suite(suite)
    results = list(map_fn(functools.partial(run_job, suite), plan(suite)))
    return finish(suite, results, manifest, out, time.perf_counter() - started, log=log, tags=tags)


def finish(suite: Suite, results: list[dict[str, Any]], manifest: pd.DataFrame, out: str | os.PathLike,
           wall_time: float, log: bool = True, tags: dict[str, str] | None = None) -> dict[str, Any]:
    table, curves = score(suite, results)
    summary, beats = summarize(table), generated_beats(table)
    amort, limits = amortisation(suite, table, manifest), grid_limits(table)
    paths = write_outputs(out, suite, table, curves, summary, beats, amort, limits)
    metrics = {**flat_metrics(summary, amort, wall_time), "reused_rows": float(table["reused"].fillna(False).sum()),
               "grid_limited_cases": float(len(limits))}
    run_id = log_bench(suite, table, curves, summary, paths, metrics, tags) if log else None
    return {"table": table, "curves": curves, "summary": summary, "beats": beats, "amortisation": amort,
            "paths": paths, "metrics": metrics, "mlflow_run_id": run_id}


def flat_metrics(summary: pd.DataFrame, amort: dict[str, float], wall_time: float) -> dict[str, float]:
    """``compute_saved_median/<split>/<method>``, its interval ``saved_ci_low/...`` and ``saved_ci_high/...`` (where a
    split has two cases or more), ``reach_rate/...``, ``final_vs_random/...``, amortisation, wall time.

    Names as MLflow takes them (:func:`weightgen.tracking.metric_name`): ``retrieval+head`` is ``retrieval_head`` here.
    """
    from weightgen.tracking import metric_name

    metrics = {"wall_time_s": float(wall_time)}
    for (split, method), row in summary.iterrows():
        for key in ("compute_saved_median", "reach_rate", "final_vs_random"):
            metrics[metric_name(f"{key}/{split}/{method}")] = float(row[key])
        for key in ("saved_ci_low", "saved_ci_high"):  # NaN where a split has one case: nothing to log
            if math.isfinite(row[key]):
                metrics[metric_name(f"{key}/{split}/{method}")] = float(row[key])
    metrics.update({metric_name(f"amortisation/{k}"): float(v) for k, v in amort.items()
                    if v is not None and math.isfinite(v)})
    return metrics


def log_bench(suite: Suite, table: pd.DataFrame, curves: pd.DataFrame, summary: pd.DataFrame,
              paths: dict[str, Path], metrics: dict[str, float], tags: dict[str, str] | None = None) -> str:
    """One parent MLflow run per suite; a nested run per case × method with its curve and figures."""
    import mlflow
    from mlflow.entities import Metric

    from weightgen.tracking import stage_run

    params = {"suite": suite.name, "corpus": suite.corpus, "generator": suite.generator, "seeds": suite.seeds,
              "methods": suite.methods, "recipe": suite.recipe.to_string(), "recipes": suite.recipes,
              "samples": suite.samples, "guidance": suite.guidance, "ddim_steps": suite.ddim_steps,
              "cases": len(suite.cases), "label_map": suite.label_map}
    if any(m in GENERATED_METHODS for m in suite.methods):  # what the generator really ran (its run may fix the sampler)
        params["generator_sampler"] = _generator(suite.generator, suite.ddim_steps, suite.guidance, suite.label_map).sampler
    with stage_run("bench", run_name=f"bench-{suite.name}", params=params, tags=tags) as parent:
        client = mlflow.MlflowClient()  # after stage_run has pointed MLflow at the project store
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        for path in paths.values():
            mlflow.log_artifact(str(path))
        for (case_index, method), rows in table.groupby(["case_index", "method"]):
            case = suite.cases[int(case_index)]
            name = f"{case.case_id}-{method}"
            with mlflow.start_run(run_name=name, nested=True,
                                  tags={"weightgen.stage": "bench", "weightgen.suite": suite.name,
                                        "weightgen.split": case.split, **(tags or {})}):
                mlflow.log_params({"arch": case.arch, "task": case.task, "split": case.split, "method": method,
                                   "seeds": list(rows["seed"])})
                done = rows[rows["status"] == "ok"]
                if done.empty:
                    mlflow.set_tag("weightgen.status", "n/a: " + str(rows["note"].iloc[0]))
                    continue
                mlflow.log_metrics({
                    "compute_saved_median": float(done["compute_saved"].fillna(0.0).median()),
                    "reach_rate": float(done["reached"].mean()),
                    "final_test_acc": float(done["final_test_acc"].mean()),
                    "test_acc_at_init": float(done["test_acc_0"].mean()),
                    "init_flops": float(done["init_flops"].mean()),
                })
                mean_curve = curves[(curves["case_index"] == case_index) & (curves["method"] == method)].groupby("step")["val_acc"].mean()
                now = int(time.time() * 1000)
                client.log_batch(mlflow.active_run().info.run_id,
                                 metrics=[Metric("val_acc", float(v), now, int(s)) for s, v in mean_curve.items()])
        return parent.info.run_id
