"""The DiT stage around the training script: launch it (1 process or Accelerate), then judge samples.

Training runs as a subprocess — ``python -m weightgen.dit_train`` for one process, ``accelerate
launch --multi_gpu --num_processes N`` for several (``ACCELERATE_USE_CPU=true`` without a GPU) —
so the same script serves a laptop, a multi-core box and a GPU node. With ``MLFLOW_RUN_ID`` set,
the script logs its losses and the accuracy of a few sampled seen architectures into that run.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch


def launch_command(processes: int, args: list[str], module: str = "weightgen.dit_train") -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment that run ``module`` (an Accelerate script) on ``processes`` processes."""
    if processes <= 1:
        return [sys.executable, "-m", module, *args], {}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = {} if torch.cuda.is_available() else {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m", module, *args], env


def run_streaming(command: list[str], env: dict[str, str], on_line=print, what: str = "DiT training") -> None:
    """Run ``command`` with ``env`` added, passing each output line to ``on_line`` as it comes; a failure names its tail."""
    tail: collections.deque[str] = collections.deque(maxlen=60)  # enough to explain a failure
    with subprocess.Popen(command, env={**os.environ, **env}, text=True, bufsize=1,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            on_line(line.rstrip())
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def train_dit(latents: str | os.PathLike, out: str | os.PathLike, processes: int = 1, extra_env: dict | None = None,
              on_line=print, **options) -> Path:
    """Run the training script; ``options`` become ``--flags`` (``eval_pairs=...`` → ``--eval-pairs ...``).

    Its output (a loss line every ``log_every`` steps) is passed to ``on_line`` as it comes.
    """
    args = ["--data", str(latents), "--out", str(out)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value not in (None, False):
            args += [flag, str(value)]
    _check_latents_unchanged(Path(latents), Path(out), resume=bool(options.get("resume")))
    command, env = launch_command(processes, args)
    run_streaming(command, {**env, **(extra_env or {})}, on_line)
    return Path(out)


def _check_latents_unchanged(latents: Path, out: Path, resume: bool) -> None:
    """Resuming on other latents would silently mix two datasets: refuse, naming the way out."""
    import hashlib

    from weightgen.io import atomic_write_text

    digest = hashlib.sha256(latents.read_bytes()).hexdigest()
    stamp = out / "latents.sha256"
    if resume and stamp.is_file() and stamp.read_text().strip() != digest and (out / "checkpoints").is_dir():
        raise ValueError(f"{latents} changed since the DiT checkpoints in {out} were written; "
                         f"remove {out} or train with resume off")
    atomic_write_text(stamp, digest + "\n")
