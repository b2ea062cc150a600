"""The ``weightgen`` command line (typer + rich)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Generate neural-network weights; start new models from a good place.", no_args_is_help=True)
corpus_app = typer.Typer(help="Build, import and inspect checkpoint corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # unwrapped, so a long path stays one line

DEFAULT_GRID = "configs/grids/default.yaml"
DEFAULT_CORPUS = "corpus/default"


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _fmt(value) -> str:
    """Counts with separators, seconds with one decimal, FLOPs in scientific notation."""
    if isinstance(value, float):
        return f"{value:.3e}" if abs(value) >= 1e6 else f"{value:,.1f}"
    return f"{value:,}"


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@corpus_app.command("build")
def corpus_build(
    grid: Path = typer.Option(DEFAULT_GRID, help="zoo grid YAML (archs × tasks × seeds, recipe, exclude lists)"),
    out: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder; a rerun completes it and skips finished members"),
    workers: int = typer.Option(2, min=1, help="parallel training processes"),
) -> None:
    """Train the grid's missing members (a Prefect flow, in-process) and index them in the manifest."""
    from weightgen.specs import SpecError
    from weightgen.zoo import expand, load_grid

    try:
        expand(load_grid(grid))  # refuse a bad grid before Prefect starts
    except SpecError as exc:
        _fail(str(exc))
    _quiet_prefect()
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

    from weightgen.corpus import Corpus, CorpusError

    try:
        frame = Corpus(corpus).require_nonempty()
    except CorpusError as exc:
        _fail(str(exc))
    final = frame.sort_values("step").groupby("member").tail(1)
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
