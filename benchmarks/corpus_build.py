"""Time a corpus build from scratch and its rerun (which must skip every member).

    .venv/bin/python benchmarks/corpus_build.py [--grid configs/grids/default.yaml] [--out /tmp/wg-bench-corpus] [--workers 2]

The output folder is deleted first. Prints the build summary of both runs side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="configs/grids/default.yaml")
    parser.add_argument("--out", default="/tmp/wg-bench-corpus")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.corpus import corpus_flow
    from weightgen.cli import _fmt

    shutil.rmtree(args.out, ignore_errors=True)
    runs = {}
    for label in ("fresh build", "rerun"):
        started = time.perf_counter()
        summary = corpus_flow(grid=args.grid, corpus_dir=args.out, workers=args.workers)
        runs[label] = {**summary, "end_to_end_s": time.perf_counter() - started}
    table = Table(title=f"corpus build: {args.grid}, {args.workers} workers, {os.cpu_count()} cores")
    table.add_column("metric")
    for label in runs:
        table.add_column(label, justify="right")
    for key in runs["fresh build"]:
        table.add_row(key, *(_fmt(r[key]) for r in runs.values()))
    Console().print(table)


if __name__ == "__main__":
    main()
