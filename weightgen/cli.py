"""The ``weightgen`` command line (typer + rich): the main job, generate, bench, report, corpus and encoder.

The DiT's commands (train, tune, distill, sample) are in :mod:`weightgen.cli_dit`; generate and init, the commands
that write a network's start, in :mod:`weightgen.cli_start`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from weightgen.cli_dit import dit_app, dit_train, tune_through_flow
from weightgen.cli_start import generate, init
from weightgen.terminal import DEFAULT_CORPUS, DEFAULT_RUN
from weightgen.terminal import cell as _cell
from weightgen.terminal import console
from weightgen.terminal import fail as _fail
from weightgen.terminal import fmt as _fmt
from weightgen.terminal import interval as _interval
from weightgen.terminal import print_summary as _print_summary
from weightgen.terminal import prepare_prefect as _prepare_prefect

app = typer.Typer(help="Generate neural-network weights; start new models from a good place.", no_args_is_help=True)
corpus_app = typer.Typer(help="Build, import and inspect checkpoint corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
encoder_app = typer.Typer(help="Train and judge the latent patch encoder.", no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")
app.add_typer(dit_app, name="dit")

DEFAULT_GRID = "configs/grids/default.yaml"


@corpus_app.command("build")
def corpus_build(
    grid: Path = typer.Option(DEFAULT_GRID, help="zoo grid YAML (archs × tasks × seeds, recipe, exclude lists)"),
    out: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder; a rerun completes it and skips finished members"),
    workers: int = typer.Option(2, min=1, help="parallel training processes"),
) -> None:
    """Train the grid's missing members (a Prefect flow, in-process) and index them in the manifest."""
    from weightgen.corpus import CorpusError
    from weightgen.specs import SpecError
    from weightgen.zoo import expand, load_grid, require_one_history

    try:  # refuse a bad grid, or one that would mix histories in the corpus, before Prefect starts
        spec = load_grid(grid)
        require_one_history(expand(spec), out, spec.name)
    except (SpecError, CorpusError) as exc:
        _fail(str(exc))
    _prepare_prefect()
    from flows.corpus import corpus_flow

    summary = corpus_flow(grid=str(grid), corpus_dir=str(out), workers=workers)
    table = Table(title=f"corpus {out}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, _fmt(value))
    console.print(table)


@corpus_app.command("import")
def corpus_import(
    source: str = typer.Argument(..., help="a Hugging Face repo id (ORG/NAME) or a local hub-style folder"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder to add the checkpoint to"),
    member_id: str = typer.Option(None, help="member id (default: derived from the source)"),
    revision: str = typer.Option(None, help="hub revision (branch, tag or commit)"),
    online: bool = typer.Option(False, help="allow downloading; by default only the local hub cache is used"),
) -> None:
    """Import a safetensors checkpoint from the hub cache or a folder (pickle files are refused)."""
    from weightgen.hub import HubImportError, import_checkpoint

    try:
        member = import_checkpoint(source, corpus, member_id=member_id, local_files_only=not online, revision=revision)
    except HubImportError as exc:
        _fail(str(exc))
    console.print(f"imported [bold]{member}[/] into {corpus}")


@corpus_app.command("ls")
def corpus_ls(corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder")) -> None:
    """Summarise a corpus: members, checkpoints and final test accuracy per family and task."""
    import pandas as pd

    from weightgen.corpus import Corpus, CorpusError, final_checkpoints

    try:
        frame = Corpus(corpus).require_nonempty()
    except CorpusError as exc:
        _fail(str(exc))
    final = final_checkpoints(frame)
    summary = final.groupby(["family", "task"], dropna=False).agg(
        members=("member", "nunique"), final_test_acc=("test_acc", "mean"), params=("num_params", "median")
    )
    summary["checkpoints"] = frame.groupby(["family", "task"], dropna=False).size()
    table = Table(title=f"{corpus}: {frame['member'].nunique()} members, {len(frame)} checkpoints")
    for column in ("family", "task", "members", "checkpoints", "params", "final test acc"):
        table.add_column(column, justify="left" if column in ("family", "task") else "right")
    for (family, task), members, acc, params, checkpoints in summary.itertuples():
        table.add_row(family, task or "—", f"{members:d}", f"{checkpoints:d}", f"{params:,.0f}",
                      "—" if pd.isna(acc) else f"{acc:.3f}")
    console.print(table)


@encoder_app.command("train")
def encoder_train(
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder"),
    out: Path = typer.Option(DEFAULT_RUN, help="run folder: encoder/ and latents.safetensors are written here"),
    patch_size: int = typer.Option(32, min=1),
    latent_dim: int = typer.Option(32, min=1),
    steps: int = typer.Option(3000, min=1),
    min_step: int = typer.Option(1000, min=0, help="use checkpoints at or after this training step"),
    minilm: bool = typer.Option(False, help="also report MiniLM sentence-embedding cosine after reconstruction"),
) -> None:
    """Train the patch autoencoder (a Prefect flow), report held-out fidelity, cache the corpus latents."""
    _prepare_prefect()
    from flows.encoder import encoder_flow

    _print_summary(f"encoder {out}", encoder_flow(corpus_dir=str(corpus), out_dir=str(out), patch_size=patch_size,
                                                  latent_dim=latent_dim, steps=steps, min_step=min_step, minilm=minilm))


@app.command("run")
def run_all(
    grid: Path = typer.Option(DEFAULT_GRID, help="zoo grid YAML"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder"),
    run: Path = typer.Option(DEFAULT_RUN, help="run folder for the encoder and the DiT"),
    workers: int = typer.Option(2, min=1, help="parallel zoo training processes"),
    encoder_steps: int = typer.Option(3000, min=1, help="encoder training steps"),
    dit_steps: int = typer.Option(4000, min=1, help="DiT training steps"),
    dit_preset: str = typer.Option("tiny", help="DiT size: tiny | XS | S | M (a sample of S costs ~8x one of tiny)"),
    tune_steps: int = typer.Option(2000, min=0, help="task-loss tune steps (bias penalty 1); 0: bench the diffusion DiT"),
    lookahead_steps: int = typer.Option(500, min=0, help="then this many tune steps with a 20-step lookahead; 0: none"),
    suite: Path = typer.Option("suites/smoke.yaml", help="benchmark suite run last (its corpus and generator are overridden)"),
) -> None:
    """The main job on the embedded defaults: corpus → encoder → DiT → task tune → benchmark suite.

    A rerun skips finished corpus members, reuses the encoder when the corpus and settings are unchanged,
    resumes the DiT from its latest checkpoint, and reuses a tune whose base DiT, corpus and settings match.
    """
    from weightgen.tune_runs import tune_recipe, tuned_already
    from weightgen.zoo import expand, load_grid

    corpus_build(grid=grid, out=corpus, workers=workers)
    late = min(m.recipe.steps for m in expand(load_grid(grid))) // 2  # the second half of every trajectory
    encoder_train(corpus=corpus, out=run, patch_size=32, latent_dim=32, steps=encoder_steps, min_step=late, minilm=False)
    dit_train(run=run, corpus=corpus, processes=1, steps=dit_steps, batch_size=16, preset=dit_preset)
    generator = run
    for out, cfg in tune_recipe(run, tune_steps, lookahead_steps):  # bias penalty, then a lookahead
        if tuned_already(generator, corpus, out, cfg):
            console.print(f"{out}: this tune is complete (same base DiT, corpus and settings): reused")
        else:
            tune_through_flow(generator, corpus, out, cfg)
        generator = out
    bench(suite=suite, out=run / "bench", workers=workers, corpus=corpus, run=generator, ddim_steps=None,
          refresh_baselines=False, methods="", splits="", label_map=None, guidance=None)  # called as a function: every option needs its value, not typer's default object


app.command("generate")(generate)
app.command("init")(init)


@app.command("bench")
def bench(
    suite: Path = typer.Argument(..., help="suite YAML: cases with split tags, recipe, methods (see README)"),
    out: Path = typer.Option(None, help="output folder (default: runs/bench/<suite name>)"),
    workers: int = typer.Option(2, min=1, help="parallel fine-tuning processes"),
    corpus: Path = typer.Option(None, help="override the suite's corpus"),
    run: Path = typer.Option(None, help="override the suite's generator run folder"),
    ddim_steps: int = typer.Option(None, min=1, help="override the suite's DDIM steps per generated sample"),
    refresh_baselines: bool = typer.Option(False, "--refresh-baselines",
                                           help="fine-tune the generator-free baselines again, not from the cache"),
    methods: str = typer.Option("", help="comma-separated: only these init methods (random is always kept)"),
    splits: str = typer.Option("", help="comma-separated: only the cases of these splits, e.g. unseen-arch,unseen-task"),
    label_map: bool = typer.Option(None, "--label-map/--no-label-map",
                                   help="override the suite's label_map: every corpus method, generated included, "
                                        "maps label orders exactly (weightgen.relabel)"),
    guidance: float = typer.Option(None, min=0.0, help="override the suite's classifier-free guidance scale "
                                                       "(1: the conditional sample; 0: the unconditional one)"),
) -> None:
    """Fine-tune every init method on every suite case; print the compute saved per split and method.

    The generator-free baselines (random, moment, noisy-nearest, retrieval, weight-selection) are cached
    per case and seed on the corpus and code, so benching another generator re-runs only its own methods.
    """
    import json

    import pandas as pd

    from weightgen.bench import check_suite
    from weightgen.bench_score import GOAL_SAVED
    from weightgen.corpus import CorpusError
    from weightgen.generate import GeneratorError
    from weightgen.suite import SuiteError, load_suite

    try:
        chosen_methods = [m.strip() for m in methods.split(",") if m.strip()] or None
        chosen_splits = [s.strip() for s in splits.split(",") if s.strip()] or None
        spec = load_suite(suite).with_sources(corpus, run, ddim_steps, label_map, guidance).narrowed(
            chosen_methods, chosen_splits)
        check_suite(spec)  # refuse leaks, an empty corpus or a missing generator before Prefect starts
    except (SuiteError, CorpusError, GeneratorError) as exc:
        _fail(str(exc))
    out = out or Path("runs/bench") / spec.name
    _prepare_prefect()
    from flows.evaluate import evaluate_flow

    metrics = evaluate_flow(suite=str(suite), out_dir=str(out), workers=workers,
                            corpus_dir=str(corpus) if corpus else None, run_dir=str(run) if run else None,
                            ddim_steps=ddim_steps, refresh_baselines=refresh_baselines,
                            methods=chosen_methods, splits=chosen_splits, label_map=label_map, guidance=guidance)
    summary = pd.read_csv(out / "summary.csv")
    wide = Console(width=max(console.width, 200)) if not console.is_terminal else console  # logs keep every column
    mapped = ", label map on" if spec.label_map else ""
    table = Table(title=f"suite {spec.name}{mapped}: median compute saved (not reached = 0) — {out}/summary.md")
    columns = {"split": "split", "method": "method", "cases": "cases", "runs": "runs",
               "compute_saved_median": "saved", "saved_ci": "90% CI (cases)", "reach_rate": "reach",
               "final_test_acc": "final acc", "final_vs_random": "Δ final vs random", "test_acc_at_init": "acc at init",
               "novelty_kappa_median": "κ nearest", "random_kappa": "κ 2 randoms", "not_applicable": "n/a"}
    for title in columns.values():
        table.add_column(title, justify="left" if title in ("split", "method") else "right")
    summary["saved_ci"] = [_interval(low, high) for low, high in zip(summary["saved_ci_low"], summary["saved_ci_high"])]
    for row in summary.itertuples(index=False):
        table.add_row(*[_cell(getattr(row, key)) for key in columns])
    wide.print(table)
    beats_file = out / "generated_beats.csv"  # empty when the suite has no `generated` method
    beats = pd.read_csv(beats_file) if beats_file.read_text().strip() else pd.DataFrame()
    if len(beats):
        # written by this run's weightgen.bench_score.generated_beats: method, share and the paired gap are all there
        beats["shown"] = [f"{_cell(share)} · {gap:+.2f} ({_interval(low, high)})" for share, gap, low, high
                          in zip(beats["share"], beats["median_gap"], beats["gap_ci_low"], beats["gap_ci_high"])]
        shares = beats.pivot(index=["method", "baseline"], columns="split", values="shown")
        table = Table(title="share of cases where a generated method saves more compute than each baseline · the "
                            "paired gap (generated − baseline, median over cases, 90% CI)")
        table.add_column("method")
        table.add_column("baseline")
        for split in shares.columns:
            table.add_column(split, justify="right")
        for (method, baseline), row in shares.iterrows():
            table.add_row(method, baseline, *[v if isinstance(v, str) else "—" for v in row])
        wide.print(table)
    limits_file = out / "grid_limits.csv"  # the cases whose eval_every caps any trained init below the goal
    limits = pd.read_csv(limits_file) if limits_file.read_text().strip() else pd.DataFrame()
    if len(limits):
        table = Table(title=f"warning: on these cases the evaluation grid cannot show a {GOAL_SAVED:.0%} saving "
                            "unless the init is at the target at step 0 (lower eval_every to lift it)")
        for title in ("split", "case", "random's steps to target", "grid ceiling"):
            table.add_column(title, justify="left" if title in ("split", "case") else "right")
        for row in limits.itertuples(index=False):
            table.add_row(row.split, row.case, f"{row.random_steps_to_target:.1f}", _cell(row.grid_ceiling))
        wide.print(table)
    amort = json.loads((out / "amortisation.json").read_text())
    _print_summary("amortisation (FLOPs)", {k: "never" if v is None else v for k, v in amort.items()})
    reused = pd.read_csv(out / "results.csv", usecols=["reused"])["reused"].fillna(False).astype(bool)
    if reused.any():
        console.print(f"{int(reused.sum())} of {len(reused)} result rows reused from the baseline cache "
                      "(column 'reused'; --refresh-baselines runs them again)")
    console.print(f"wall time {metrics['wall_time_s']:.0f} s; results: {out}/results.parquet, plots: {out}/*.png")


@app.command("report")
def report(
    run_ids: list[str] = typer.Argument(None, help="MLflow run ids to compare"),
    experiment: list[str] = typer.Option([], "--experiment", "-e", help="every run of this experiment (repeatable), e.g. weightgen-bench"),
    filter_string: str = typer.Option("", "--filter", help="MLflow search filter, e.g. \"params.suite = 'default'\""),
    pipeline: str = typer.Option("", help="the runs of one pipeline (its Prefect flow-run id)"),
    metric: list[str] = typer.Option([], "--metric", "-m", help="metric name or glob to show (repeatable; default: all)"),
    out: Path = typer.Option(Path("reports/latest"), help="folder for report.md, report.html, runs.csv and plots"),
    tracking_uri: str = typer.Option(None, help="MLflow tracking URI (default: the project's mlruns/)"),
) -> None:
    """Compare MLflow runs a user selects: a table and plots, as markdown and HTML."""
    from weightgen.report import ReportError, build_report

    try:
        path = build_report(run_ids or (), experiment, out, filter_string, pipeline, metric or None, tracking_uri)
    except ReportError as exc:
        _fail(str(exc))
    console.print(f"report: [bold]{path}[/] and {path.with_suffix('.html')}")


@app.command("tokens")
def tokens_info(
    checkpoint: Path = typer.Argument(..., help="a hub-style checkpoint folder or a .safetensors file"),
    patch_size: int = typer.Option(64, min=1, help="patch length"),
) -> None:
    """Tokenize a checkpoint and show its frames → patches layout (and check the exact round trip)."""
    from weightgen.checkpoint import WEIGHTS_NAME, CheckpointError, read_weights
    from weightgen.tokens import detokenize, same_state_dict, tokenize

    path = checkpoint / WEIGHTS_NAME if checkpoint.is_dir() else checkpoint
    try:
        state_dict = read_weights(path, check_finite=False)
    except CheckpointError as exc:
        _fail(str(exc))
    tokens = tokenize(state_dict, patch_size)
    exact = same_state_dict(detokenize(tokens), state_dict)
    frame = tokens.coords_frame()
    by_kind = frame.groupby("kind_name").agg(patches=("row", "size"), tensors=("tensor", "nunique"))
    table = Table(title=f"{path}: {len(tokens.layout)} tensors → {len(tokens)} patches of {patch_size}; exact round trip: {exact}")
    table.add_column("parameter kind")
    table.add_column("tensors", justify="right")
    table.add_column("patches", justify="right")
    for kind, row in by_kind.iterrows():
        table.add_row(kind, str(row.tensors), f"{row.patches:,}")
    console.print(table)
    if not exact:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
