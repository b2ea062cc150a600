"""What the command line shares: the rich consoles, the error exit, number formats, summary tables, defaults."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_RUN = "runs/default"
DEFAULT_CORPUS = "corpus/default"

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # unwrapped, so a long path stays one line


def prepare_prefect() -> None:
    """Settings for the ephemeral Prefect server a command starts: no analytics, and 90 s to come up
    (Prefect's 20 s default is not enough on a 2-core machine that is training beside it)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def fail(message: str) -> None:
    """Print ``message`` as an error and end the command with exit code 2."""
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def fmt(value) -> str:
    """Counts with separators, large values with one decimal, small ones with 4 digits, FLOPs in scientific notation."""
    if isinstance(value, float):
        if abs(value) >= 1e6:
            return f"{value:.3e}"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def cell(value) -> str:
    """A table cell: floats to 3 decimals, NaN as a dash."""
    if isinstance(value, float):
        return "—" if value != value else f"{value:.3f}"
    return str(value)


def interval(low: float, high: float) -> str:
    """A bootstrap interval as ``low – high`` at 2 decimals; a dash where there is none (fewer than two cases)."""
    if low != low or high != high:
        return "—"
    return f"{round(low, 2) + 0.0:.2f} – {round(high, 2) + 0.0:.2f}"  # + 0.0: no "-0.00" for a rounding of -1e-17


def print_summary(title: str, summary: dict) -> None:
    """A two-column table of a stage's summary."""
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        table.add_row(key, fmt(value))
    console.print(table)


__all__ = ["DEFAULT_CORPUS", "DEFAULT_RUN", "cell", "console", "errors", "fail", "fmt", "interval", "prepare_prefect",
           "print_summary"]
