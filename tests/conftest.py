"""Shared test set-up: every test writes caches, MLflow runs and Prefect state under a temp folder."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

import pytest

# Prefect's temporary API server logs "Stopping ..." from an atexit hook, after pytest has closed the
# streams; without this, logging prints a traceback under pytest's summary line.
logging.raiseExceptions = False

# Prefect reads its settings once, when it is first imported — at collection, before any fixture runs —
# so its home (database, result storage: the bench's baseline cache) must point at a temp folder now,
# or tests would read and write ~/.prefect, and one run's cached results would leak into the next.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="weightgen-tests-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)  # registered first, so it runs last
# Its temporary API server gets 20 s to start by default; on a busy 2-core machine that is sometimes too few.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


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
    saved = {k: os.environ.get(k) for k in ("WEIGHTGEN_CACHE", "WEIGHTGEN_MLRUNS", "MLFLOW_TRACKING_URI")}
    os.environ["WEIGHTGEN_CACHE"] = str(root / "cache")
    os.environ["WEIGHTGEN_MLRUNS"] = str(root / "mlruns")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --------------------------------------------------------------------------- a tiny corpus and generator
# Shared by the bench, tune and distil tests (one build per session): 2 architectures × 2 tasks × 2 seeds,
# an encoder and a 6-step tiny DiT. Tests read it and write only under their own tmp_path.
GRID = {"name": "bench-test", "seeds": [0, 1], "checkpoint_steps": [30], "recipe": {"steps": 60, "eval_every": 30, "batch_size": 64},
        "archs": ["mlp:hidden=16", "mlp:hidden=24x24"], "tasks": ["digits", "digits:rot90=1"]}


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    from weightgen.corpus import Corpus
    from weightgen.dit import DIT_PRESETS, DiTConfig
    from weightgen.dit_train import TrainConfig, train as train_dit
    from weightgen.encoder import EncoderConfig, encode_set, train_encoder
    from weightgen.sequences import corpus_sequences
    from weightgen.zoo import expand, load_grid, train_member

    root = tmp_path_factory.mktemp("bench")
    corpus = root / "corpus"
    for member in expand(load_grid(GRID)):
        train_member(member, corpus)
    Corpus(corpus).rebuild_manifest()
    run = root / "run"
    seqs = corpus_sequences(corpus, patch_size=8)
    encoder, _ = train_encoder(seqs, EncoderConfig(patch_size=8, latent_dim=8, hidden=32, steps=60, batch_size=512))
    encoder.save(run / "encoder")
    encode_set(encoder, seqs, standardize=True).save(run / "latents.safetensors")
    train_dit(run / "latents.safetensors", run / "dit", TrainConfig(steps=6, batch_size=4, log_every=3),
              DiTConfig(latent_dim=8, **DIT_PRESETS["tiny"]))
    return root, corpus, run
