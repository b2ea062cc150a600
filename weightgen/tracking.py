"""MLflow set-up: one embedded store per project (SQLite + artifact folder under ``mlruns/``).

Set ``MLFLOW_TRACKING_URI`` to log to a tracking server instead; ``WEIGHTGEN_MLRUNS`` moves the
embedded store and takes precedence (tests point it at a temporary folder). Experiments are named per stage
(``weightgen-corpus``, ...), and every run gets a ``run_name``.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT_PREFIX = "weightgen-"


def mlruns_dir() -> Path:
    return Path(os.environ.get("WEIGHTGEN_MLRUNS", "mlruns")).resolve()


def _embedded_uri() -> str:
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    """WEIGHTGEN_MLRUNS when set, else MLFLOW_TRACKING_URI, else the project's ``mlruns/``.

    WEIGHTGEN_MLRUNS wins because ``mlflow.set_tracking_uri`` itself writes MLFLOW_TRACKING_URI into
    the environment, so after the first run that variable no longer tells what the user asked for.
    """
    if "WEIGHTGEN_MLRUNS" in os.environ:
        return _embedded_uri()
    return os.environ.get("MLFLOW_TRACKING_URI") or _embedded_uri()


def use_experiment(stage: str) -> str:
    """Point MLflow at the project store and the stage's experiment (created on first use)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    name = EXPERIMENT_PREFIX + stage
    if mlflow.get_experiment_by_name(name) is None:
        artifacts = None
        if tracking_uri() == _embedded_uri():  # embedded store: keep artifacts beside the database
            artifacts = (mlruns_dir() / "artifacts" / stage).as_uri()
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)
    return name


@contextmanager
def stage_run(stage: str, run_name: str, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An MLflow run in the stage's experiment, with params and tags logged up front."""
    import mlflow

    mlflow_dir = mlruns_dir()
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    use_experiment(stage)
    with mlflow.start_run(run_name=run_name, tags={"weightgen.stage": stage, **(tags or {})}) as run:
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
        yield run


def log_summary_run(stage: str, run_name: str, kind: str, summary: dict[str, Any], counts: tuple[str, ...],
                    metrics: dict[str, float], tags: dict[str, str] | None = None) -> str:
    """One MLflow run for a stage's summary: its settings as params (all but ``log`` and ``counts``), every
    ``log`` row as metrics at its step, then ``metrics``; tagged ``weightgen.kind = kind``. Returns the run id."""
    import mlflow

    params = {k: v for k, v in summary.items() if k != "log" and k not in counts}
    with stage_run(stage, run_name=run_name, params=params, tags={"weightgen.kind": kind, **(tags or {})}) as run:
        for row in summary["log"]:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
        mlflow.log_metrics(metrics)
        return run.info.run_id


_NOT_IN_A_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")  # what MLflow refuses in a metric's name


def metric_name(name: str) -> str:
    """``name`` with each character MLflow refuses in a metric name as ``_``: ``retrieval+head`` → ``retrieval_head``."""
    return _NOT_IN_A_METRIC_NAME.sub("_", name)


def _param_value(value: Any) -> Any:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow caps param values


# Registered-model names in the MLflow model registry; every trained stage adds a version.
ENCODER_MODEL = "weightgen-encoder"
DIT_MODEL = "weightgen-dit"
MODEL_REQUIREMENTS = ["torch", "safetensors", "weightgen"]


def register_model(run_id: str, model, name: str, registered_name: str) -> str:
    """Log ``model`` into the finished MLflow run ``run_id`` (PyTorch flavour) and register a new version.

    MLflow 3 saves PyTorch models as ``pt2`` (torch.export, which needs one traced example input per
    model: patches with kinds and lengths, token sequences with masks and conditions) or as pickle.
    Both models use pickle here — only for our own registry; weightgen never unpickles imported
    weights — loadable with ``mlflow.pytorch.load_model("models:/<name>/<version>")``. The same
    weights are in the run's artifacts as safetensors, the form weightgen itself reads.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(model, name=name, registered_model_name=registered_name,
                                        pip_requirements=MODEL_REQUIREMENTS, serialization_format="pickle")
    return str(info.registered_model_version)
