"""Hub-style checkpoint folders: ``model.safetensors`` + ``config.json``, written atomically, read safely.

``config.json`` carries everything that produced the weights (architecture, task, recipe, seed,
step, metrics), so :func:`load_model` rebuilds the network from the folder alone. Weights are read
with safetensors only — never ``torch.load`` — so an untrusted checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save as save_bytes

from weightgen.io import atomic_write_bytes, atomic_write_json, with_default_mode

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "weightgen-checkpoint/1"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete, corrupt or does not match its config."""


def write_checkpoint_files(folder: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write the two files into an existing (temporary) folder; callers rename the folder into place."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write_bytes(folder / WEIGHTS_NAME, save_bytes(tensors, metadata={"format": "pt"}))
    atomic_write_json(folder / CONFIG_NAME, config)


def save_checkpoint(folder: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write a hub-style folder atomically: built beside the target, then renamed into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        with_default_mode(tmp, directory=True)
        write_checkpoint_files(tmp, state_dict, config)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(config).__name__}")
    return config


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or Inf."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def read_weights(path: str | os.PathLike, check_finite: bool = True) -> dict[str, torch.Tensor]:
    """Tensors from one ``.safetensors`` file, with a clear error for pickles, corruption and NaN/Inf."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: refusing a pickle checkpoint ({path.suffix}); weightgen loads safetensors only, "
            "because unpickling an untrusted file can run arbitrary code"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
    if check_finite:
        bad = non_finite(tensors)
        if bad:
            raise CheckpointError(f"{path}: non-finite values (NaN/Inf) in {', '.join(bad[:5])}")
    return tensors


def load_checkpoint(folder: str | os.PathLike, check_finite: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, config) from a hub-style folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    config = read_config(folder)
    return in_module_order(read_weights(folder / WEIGHTS_NAME, check_finite), config), config


def in_module_order(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state_dict with its keys in the order the described network's ``state_dict()`` has them.

    safetensors hands keys back sorted by name (``blocks.0`` before ``embed``, ``net.11`` before
    ``net.3``, bias before weight). Tokens number layers by first appearance, so a checkpoint read
    from disk must be laid out like a freshly built network, or the same layer gets another index.
    Configs that describe no weightgen architecture, or weights that do not match it, are left as read.
    """
    from weightgen.data import input_shape
    from weightgen.models import build_model

    arch, task = config.get("arch"), config.get("task")
    if not isinstance(arch, dict) or not isinstance(task, dict) or arch.get("family") in (None, "external"):
        return state_dict
    try:
        with torch.device("meta"):  # shapes and names only: no memory, no init work
            order = list(build_model(arch, input_shape(task)).state_dict())
    except ValueError:  # a config that no longer parses: model_for_weights reports it
        return state_dict
    if set(order) != set(state_dict):
        return state_dict
    return {k: state_dict[k] for k in order}


def model_for_weights(state_dict: dict[str, torch.Tensor], arch, task, where: str = "checkpoint") -> torch.nn.Module:
    """Build ``arch`` for ``task`` and load ``state_dict`` strictly; a CheckpointError names every mismatch."""
    from weightgen.data import input_shape
    from weightgen.models import build_model

    model = build_model(arch, input_shape(task))
    expected = model.state_dict()
    problems = [f"{k}: file {tuple(state_dict[k].shape)} vs config {tuple(v.shape)}"
                for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems += [f"missing {k}" for k in sorted(set(expected) - set(state_dict))[:5]]
    problems += [f"unexpected {k}" for k in sorted(set(state_dict) - set(expected))[:5]]
    if problems:
        raise CheckpointError(f"{where}: weights do not match the architecture in config.json "
                              f"({model.__class__.__name__} for {arch}): " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(folder: str | os.PathLike) -> torch.nn.Module:
    """The network a weightgen checkpoint folder describes, with its weights loaded (strict)."""
    state_dict, config = load_checkpoint(folder)
    if "arch" not in config or "task" not in config or config.get("arch", {}).get("family") == "external":
        raise CheckpointError(f"{folder}: config.json does not describe a weightgen architecture and task")
    return model_for_weights(state_dict, config["arch"], config["task"], where=str(folder))
