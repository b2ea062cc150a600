"""Import checkpoints from Hugging Face Hub repos or local hub-style folders into a corpus, and export them.

A source is either an existing folder or a repo id (``org/name``) fetched with
``huggingface_hub.snapshot_download`` — from the local cache only unless ``local_files_only=False``.
Weights are read with safetensors only: a pickle-only repo is refused, never unpickled.

A weightgen checkpoint (``config.json`` with a known ``arch`` family and a ``task``) is validated
against the network its config describes; anything else (BERT, MiniLM, ...) is stored as an
``external`` member. Every check runs before the corpus is touched, so a failed import leaves the
corpus exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from weightgen.checkpoint import (
    PICKLE_SUFFIXES, WEIGHTS_NAME, CheckpointError, model_for_weights, read_config, read_weights, save_checkpoint,
)
from weightgen.corpus import Checkpoint, Corpus
from weightgen.io import atomic_write_text
from weightgen.specs import FAMILIES, SpecError, parse_arch, parse_task

INDEX_NAME = "model.safetensors.index.json"
# Pickle patterns are fetched too, only so that a pickle-only repo gets a clear refusal, not "no weights".
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.bin", "*.pt", "*.pth", "*.ckpt"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")


class HubImportError(ValueError):
    """A hub source that cannot be imported: missing, not cached, pickle-only, corrupt or inconsistent."""


def resolve_source(source: str, *, local_files_only: bool = True, revision: str | None = None, cache_dir=None) -> Path:
    """The local folder holding ``source``: the folder itself, or the (cached) snapshot of a repo id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    path_like = source.startswith((".", "/", "~")) or (os.sep in source and not _REPO_ID.match(source))
    if path_like or path.exists():
        raise HubImportError(f"{source}: {'is not a folder' if path.exists() else 'does not exist'}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, revision=revision, local_files_only=local_files_only,
                                      cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS))
    except LocalEntryNotFoundError:
        hint = "unset HF_HUB_OFFLINE" if not local_files_only else "pass local_files_only=False and unset HF_HUB_OFFLINE"
        raise HubImportError(
            f"{source}: not a local folder, and repo {source!r}"
            f"{f' at revision {revision!r}' if revision else ''} is not in the Hugging Face cache "
            f"({cache_dir or 'default cache'}); to download it {hint}"
        ) from None
    except HFValidationError as exc:
        raise HubImportError(f"{source}: not an existing folder nor a valid repo id ({exc})") from None
    except HfHubHTTPError as exc:
        raise HubImportError(f"{source}: download from the Hub failed: {exc}") from None


def read_hub_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a hub folder: model.safetensors, a sharded index, or its only .safetensors file."""
    folder = Path(folder)
    if (folder / WEIGHTS_NAME).is_file():
        return _read(folder / WEIGHTS_NAME)
    if (folder / INDEX_NAME).is_file():
        return _read_sharded(folder)
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return _read(found[0])
    if found:
        raise HubImportError(f"{folder}: {len(found)} .safetensors files but no {WEIGHTS_NAME} or {INDEX_NAME} "
                             f"saying which to use: {', '.join(p.name for p in found)}")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise HubImportError(f"{folder}: pickle-only checkpoint refused: weightgen loads safetensors only "
                             f"(found {', '.join(pickles)}; unpickling an untrusted file can run arbitrary code)")
    raise HubImportError(f"{folder}: no weights found (expected {WEIGHTS_NAME} or {INDEX_NAME})")


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return read_weights(path)  # safetensors only; corrupt files and NaN/Inf raise CheckpointError
    except CheckpointError as exc:
        raise HubImportError(str(exc)) from None


def _read_sharded(folder: Path) -> dict[str, torch.Tensor]:
    index_path = folder / INDEX_NAME
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HubImportError(f"{index_path}: not a valid shard index (needs a 'weight_map' object): {exc}") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard:  # an index must not point outside the folder
            raise HubImportError(f"{index_path}: shard {shard!r} is not a file name in the folder")
        tensors.update(_read(folder / shard))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise HubImportError(f"{index_path}: tensors listed in weight_map but in no shard: {', '.join(missing[:5])}")
    return tensors


def _check_native(config: dict[str, Any], state_dict: dict[str, torch.Tensor], where: str):
    """(arch, task, num_params) of a weightgen config, after checking the weights load strictly into its network."""
    from weightgen.models import count_parameters

    try:
        arch, task = parse_arch(config["arch"]), parse_task(config["task"])
        model = model_for_weights(state_dict, arch, task, where=f"{where} ({task.dataset})")
    except SpecError as exc:
        raise HubImportError(f"{where}: config.json has an invalid weightgen spec: {exc}") from None
    except CheckpointError as exc:
        raise HubImportError(str(exc)) from None
    return arch, task, count_parameters(model)


def _default_member_id(source: str, folder: Path) -> str:
    local = Path(source).expanduser().is_dir()
    name = folder.resolve().name if local else source.replace("/", "--")
    return "hub--" + re.sub(r"[^\w.-]", "-", name)


def import_checkpoint(source: str, corpus_root, *, member_id: str | None = None, local_files_only: bool = True,
                      revision=None, cache_dir=None) -> str:
    """Store the checkpoint at ``source`` (folder or repo id) as one corpus member; returns the member id."""
    folder = resolve_source(source, local_files_only=local_files_only, revision=revision, cache_dir=cache_dir)
    member_id = member_id or _default_member_id(source, folder)
    if not _SAFE_ID.match(member_id):
        raise HubImportError(f"member id {member_id!r} must be a plain name (letters, digits, '.', '_', '-')")
    corpus = Corpus(corpus_root)
    with corpus.claim(member_id) as mine:
        if not mine:
            raise HubImportError(f"{source}: member {member_id} is being written by another process")
        if not corpus.is_complete(member_id):  # already imported: nothing to do (idempotent)
            info, ckpt = _prepare(source, folder)
            corpus.write_member(member_id, info, [ckpt])
    corpus.rebuild_manifest()
    return member_id


def _prepare(source: str, folder: Path) -> tuple[dict[str, Any], Checkpoint]:
    """Every check of an import, with nothing written: the member info and its single checkpoint."""
    try:
        config = read_config(folder)
    except CheckpointError as exc:
        raise HubImportError(f"{source}: {exc}") from None
    state_dict = read_hub_weights(folder)
    arch_cfg = config.get("arch")
    step, metrics = config.get("step", 0), config.get("metrics") or {}
    if isinstance(arch_cfg, dict) and arch_cfg.get("family") in FAMILIES and "task" in config:
        arch, task, num_params = _check_native(config, state_dict, source)
        arch_info = {"arch": arch.model_dump(), "arch_string": arch.to_string(),
                     "task": task.model_dump(), "task_string": task.to_string()}
        seed = config.get("seed", -1)
    else:
        model_type = config.get("model_type")
        arch_info = {"arch": {"family": "external", "model_type": model_type,
                              "architectures": config.get("architectures")},
                     "arch_string": f"external:{model_type}", "task": {}, "task_string": ""}
        seed, step, metrics = -1, 0, {}  # an external config's own fields mean nothing to weightgen
        num_params = sum(v.numel() for v in state_dict.values() if v.is_floating_point())
    # Bad values here would otherwise only surface later, when the manifest is rebuilt.
    if not (isinstance(step, int) and step >= 0) or not isinstance(seed, int):
        raise HubImportError(f"{source}: config.json step must be an integer >= 0 and seed an integer "
                             f"(got step={step!r}, seed={seed!r})")
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) for v in metrics.values()):
        raise HubImportError(f"{source}: config.json metrics must map names to numbers (got {metrics!r})")
    name = folder.name
    revision = name if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", name) else None
    info = {"source": "hub", "origin": source, "revision": revision, **arch_info, "seed": seed,
            "num_params": num_params, "hub_config": config}
    return info, Checkpoint(step=step, state_dict=state_dict, metrics=metrics)


def export_checkpoint(folder, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """:func:`weightgen.checkpoint.save_checkpoint` plus a README.md model card, so the folder is a hub repo."""
    folder = save_checkpoint(folder, state_dict, config)
    arch = config.get("arch_string") or json.dumps(config.get("arch"))
    task = config.get("task_string") or json.dumps(config.get("task"))
    metrics = "\n".join(f"| {k} | {v} |" for k, v in (config.get("metrics") or {}).items()) or "| (none) | |"
    atomic_write_text(folder / "README.md", (
        "---\nlibrary_name: weightgen\ntags:\n- weightgen\n---\n\n"
        f"# {folder.name}\n\nA weightgen checkpoint: weights in `{WEIGHTS_NAME}` (safetensors), "
        "everything that produced them in `config.json`.\n\n"
        f"- architecture: `{arch}`\n- task: `{task}`\n- seed: {config.get('seed', 'n/a')}\n"
        f"- step: {config.get('step', 'n/a')}\n\n| metric | value |\n|---|---|\n{metrics}\n"
    ))
    return folder
