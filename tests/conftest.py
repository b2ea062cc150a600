"""Shared test set-up: every test writes caches, MLflow runs and Prefect state under a temp folder."""

from __future__ import annotations

import logging
import os

import pytest

# Prefect's temporary API server logs "Stopping ..." from an atexit hook, after pytest has closed the
# streams; without this, logging prints a traceback under pytest's summary line.
logging.raiseExceptions = False


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every model here is tiny: a second intra-op thread buys nothing and, on a busy 2-core machine,
    costs up to 30x in OpenMP spin-waits."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory):
    root = tmp_path_factory.mktemp("weightgen-state")
    saved = {k: os.environ.get(k) for k in ("WEIGHTGEN_CACHE", "WEIGHTGEN_MLRUNS", "PREFECT_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["WEIGHTGEN_CACHE"] = str(root / "cache")
    os.environ["WEIGHTGEN_MLRUNS"] = str(root / "mlruns")
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
