"""Compare MLflow runs: a pandas table, plots, and a markdown + HTML report across runs a user selects.

Runs are selected by any mix of run ids, experiment names (``weightgen-dit``, or just ``dit``), an
MLflow filter string, and a pipeline's Prefect flow-run id (every stage run the pipeline flow tagged
``weightgen.pipeline_flow_run_id``). :func:`build_report` writes into ``out_dir``:

* ``report.md`` / ``report.html`` — the selection, settings shared by all runs, the settings that
  differ, and the metrics side by side (one column per run);
* ``runs.csv`` — one row per run (``mlflow.search_runs`` columns, selected metrics);
* ``metrics.png`` — one bar panel per metric across runs; ``history.png`` — the step history of
  metrics logged at several steps (losses, sampled accuracies), one line per run.

No Prefect here; MLflow is read through ``weightgen.tracking``'s URI unless one is given.
"""

from __future__ import annotations

import fnmatch
import html
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from weightgen.regression import markdown_table
from weightgen.tracking import EXPERIMENT_PREFIX

PIPELINE_FLOW_RUN_TAG = "weightgen.pipeline_flow_run_id"
MAX_PLOTTED_METRICS = 12
MAX_HISTORY_METRICS = 4


class ReportError(ValueError):
    """Nothing to report: an unknown run, experiment, or a selection that matches no run."""


def _client(tracking_uri: str | None):
    import mlflow

    from weightgen.tracking import tracking_uri as default_uri

    return mlflow.MlflowClient(tracking_uri or default_uri())


def select_runs(run_ids: Sequence[str] = (), experiments: Sequence[str] = (), filter_string: str = "",
                pipeline: str = "", tracking_uri: str | None = None, max_runs: int = 200) -> pd.DataFrame:
    """The selected runs as a frame (one row per run; ``params.*``, ``metrics.*``, ``tags.*`` columns)."""
    import mlflow

    client = _client(tracking_uri)
    if not (run_ids or experiments or filter_string or pipeline):
        raise ReportError("select runs: give run ids, experiments, a filter or a pipeline flow-run id")
    experiment_ids = []
    for name in experiments:
        found = client.get_experiment_by_name(name) or client.get_experiment_by_name(EXPERIMENT_PREFIX + name)
        if found is None:
            raise ReportError(f"no MLflow experiment named {name!r} (or {EXPERIMENT_PREFIX + name!r})")
        experiment_ids.append(found.experiment_id)
    frames = []
    if experiment_ids or filter_string or pipeline:
        filters = [f for f in (filter_string, f"tags.`{PIPELINE_FLOW_RUN_TAG}` = '{pipeline}'" if pipeline else "") if f]
        ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
        with _uri(client):
            found = mlflow.search_runs(ids, filter_string=" and ".join(filters), max_results=max_runs)
        frames.append(found)
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST
            raise ReportError(f"no MLflow run {run_id!r}") from exc
        with _uri(client):
            frames.append(mlflow.search_runs([run.info.experiment_id], filter_string=f"attributes.run_id = '{run_id}'"))
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ReportError("the selection matches no MLflow run")
    runs = pd.concat(frames, ignore_index=True).drop_duplicates("run_id").reset_index(drop=True)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    runs["experiment"] = runs["experiment_id"].map(names)
    return runs.sort_values("start_time", kind="stable").reset_index(drop=True)


class _uri:
    """mlflow.search_runs reads the global tracking URI: point it at the client's for the call."""

    def __init__(self, client):
        self.uri = client.tracking_uri

    def __enter__(self):
        import mlflow

        self.saved = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)

    def __exit__(self, *exc):
        import mlflow

        mlflow.set_tracking_uri(self.saved)


def run_labels(runs: pd.DataFrame) -> list[str]:
    """Readable, unique column names: the run name, with a short id where names repeat."""
    names = runs.get("tags.mlflow.runName", pd.Series([None] * len(runs))).fillna("run").tolist()
    return [f"{n} ({i[:6]})" if names.count(n) > 1 else n for n, i in zip(names, runs["run_id"])]


def _matching(columns: Iterable[str], prefix: str, patterns: Sequence[str] | None) -> list[str]:
    names = [c[len(prefix):] for c in columns if c.startswith(prefix)]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return sorted(names)


def comparison_tables(runs: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """``metrics``: metric × run; ``params``: settings that differ across runs; ``shared``: those that do not.

    ``metrics`` are glob patterns (``compute_saved_median/*``); by default every metric some run has.
    """
    labels = run_labels(runs)
    metric_names = [m for m in _matching(runs.columns, "metrics.", metrics) if runs[f"metrics.{m}"].notna().any()]
    metric_table = pd.DataFrame({label: [runs.at[i, f"metrics.{m}"] for m in metric_names] for i, label in enumerate(labels)},
                                index=pd.Index(metric_names, name="metric"))
    params = _matching(runs.columns, "params.", None)
    differ = [p for p in params if runs[f"params.{p}"].fillna("∅").nunique() > 1]
    same = [p for p in params if p not in differ and runs[f"params.{p}"].notna().all()]
    param_table = pd.DataFrame({label: [runs.at[i, f"params.{p}"] for p in differ] for i, label in enumerate(labels)},
                               index=pd.Index(differ, name="param"))
    shared = pd.DataFrame({"param": same, "value": [runs[f"params.{p}"].iloc[0] for p in same]})
    info = pd.DataFrame({"run": labels, "experiment": runs["experiment"], "run_id": runs["run_id"],
                         "status": runs["status"], "start": runs["start_time"].astype(str).str[:19],
                         "prefect flow run": runs.get(f"tags.prefect.flow_run_id", pd.Series([""] * len(runs))).fillna("")})
    return {"runs": info, "metrics": metric_table, "params": param_table, "shared": shared}


def metrics_plot(table: pd.DataFrame, path: str | Path) -> Path | None:
    """One bar panel per metric (rows of ``table``), one bar per run (its columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.head(MAX_PLOTTED_METRICS)
    if shown.empty:
        return None
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (metric, values) in zip(axes.flat, shown.iterrows()):
        values = pd.to_numeric(values, errors="coerce")
        ax.bar(range(len(values)), values.fillna(0.0), color=["C%d" % (i % 10) for i in range(len(values))])
        ax.set_xticks(range(len(values)), [str(c)[:18] for c in values.index], rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def history_plot(client, runs: pd.DataFrame, labels: list[str], metrics: Sequence[str], path: str | Path) -> Path | None:
    """Step history of metrics logged at several steps, one line per run (skipped if none was)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[str, list, list]]] = {}
    for metric in metrics:
        for run_id, label in zip(runs["run_id"], labels):
            points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
            if len(points) > 1:
                curves.setdefault(metric, []).append((label, [s for s, _ in points], [v for _, v in points]))
        if len(curves) >= MAX_HISTORY_METRICS:
            break
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.2), squeeze=False)
    for ax, (metric, lines) in zip(axes[0], curves.items()):
        for label, steps, values in lines:
            ax.plot(steps, values, label=label[:24])
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def comparison_plot(table: pd.DataFrame, path: str | Path) -> Path:
    """A regression comparison (weightgen.regression's table): value and limit relative to the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(table))))
    scale = table["baseline"].abs().where(table["baseline"].abs() > 0, 1.0)
    value = (table["value"] / scale).fillna(0.0)
    limit = table["limit"] / scale
    colors = ["tab:green" if s == "ok" else "tab:red" for s in table["status"]]
    y = range(len(table))
    ax.barh(y, value, color=colors, alpha=0.8, label="value / |baseline|")
    ax.scatter(limit, y, marker="|", s=300, color="black", label="limit")
    ax.axvline(1.0 if (table["baseline"] >= 0).all() else 0.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(list(y), [str(m)[:48] for m in table["metric"]], fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("nightly vs baseline (green: within limit, red: regressed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _html_table(frame: pd.DataFrame, index: bool = True) -> str:
    return frame.to_html(index=index, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, classes="cmp")


def build_report(run_ids: Sequence[str] = (), experiments: Sequence[str] = (), out_dir: str | os.PathLike = "reports/latest",
                 filter_string: str = "", pipeline: str = "", metrics: Sequence[str] | None = None,
                 tracking_uri: str | None = None, title: str = "weightgen run comparison") -> Path:
    """Write the comparison of the selected runs into ``out_dir``; returns the path of ``report.md``
    (``report.html``, ``runs.csv`` and the plots sit beside it)."""
    client = _client(tracking_uri)
    runs = select_runs(run_ids, experiments, filter_string, pipeline, tracking_uri=client.tracking_uri)
    tables = comparison_tables(runs, metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep = [c for c in runs.columns if not c.startswith("metrics.")] + [f"metrics.{m}" for m in tables["metrics"].index]
    runs[keep].to_csv(out / "runs.csv", index=False)
    plots = [p for p in (metrics_plot(tables["metrics"], out / "metrics.png"),
                         history_plot(client, runs, tables["runs"]["run"].tolist(), tables["metrics"].index.tolist(),
                                      out / "history.png")) if p]
    selection = ", ".join(filter(None, [f"runs {', '.join(run_ids)}" if run_ids else "",
                                        f"experiments {', '.join(experiments)}" if experiments else "",
                                        f"filter `{filter_string}`" if filter_string else "",
                                        f"pipeline flow run {pipeline}" if pipeline else ""]))
    md = [f"# {title}", "", f"{len(runs)} runs selected by {selection}; tracking store `{client.tracking_uri}`.", "",
          "## Runs", "", markdown_table(tables["runs"]), ""]
    if len(tables["shared"]):
        md += ["## Settings shared by every run", "", markdown_table(tables["shared"]), ""]
    if len(tables["params"]):
        md += ["## Settings that differ", "", markdown_table(tables["params"].reset_index()), ""]
    md += ["## Metrics", "", markdown_table(tables["metrics"].reset_index()) if len(tables["metrics"]) else "(no metrics)", ""]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{len(runs)} runs selected by {html.escape(selection)}; "
            f"tracking store <code>{html.escape(client.tracking_uri)}</code>.</p>",
            "<h2>Runs</h2>", _html_table(tables["runs"], index=False)]
    if len(tables["shared"]):
        body += ["<h2>Settings shared by every run</h2>", _html_table(tables["shared"], index=False)]
    if len(tables["params"]):
        body += ["<h2>Settings that differ</h2>", _html_table(tables["params"])]
    body += ["<h2>Metrics</h2>", _html_table(tables["metrics"])]
    body += [f'<h2>{p.stem}</h2><img src="{p.name}" alt="{p.stem}">' for p in plots]
    style = ("<style>body{font-family:sans-serif;margin:2em}table.cmp{border-collapse:collapse;font-size:13px}"
             "table.cmp td,table.cmp th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style>")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                                     f"</title>{style}</head><body>{''.join(body)}</body></html>\n")
    return out / "report.md"
