"""A distillation's written targets, kept in its run folder so that another distillation can reuse them.

With ``target_steps`` K > 0 (or a retrieval start) a student learns networks that K fine-tune steps make, one per
(architecture, task) pair: at K = 300 on the wide corpus they took 12–16 of a distillation's 21–23 minutes on
one thread (docs/results.md, item 77). ``targets.safetensors`` holds each pair's target as patches, keyed by the
pair's place and name, and its metadata says what made them: the teacher's weights, the corpus's manifest and the
settings that choose the pairs and move them. A distillation given ``targets_from`` reads them instead of fine-tuning again, and
only when every one of those matches, so a student is never taught another teacher's or another seed's targets.
The fine-tunes' FLOPs are stored too: the reusing student is charged them, as it would be had it made them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from weightgen.checkpoint import CheckpointError, read_weights
from weightgen.io import atomic_write_bytes, file_digest

TARGETS_FILE = "targets.safetensors"
FORMAT = "weightgen-distill-targets/1"
# the distillation settings that decide which pairs there are and where their fine-tunes take them
TARGET_SETTINGS = ("target_steps", "target_start", "seed", "neighbours", "exclude_archs", "holdout_archs")


class TargetsError(ValueError):
    """Stored targets that are missing, unreadable or were made for another distillation."""


def pair_key(index: int, arch: str, task: str) -> str:
    """A pair's tensor name: its place (neighbours may repeat a name across draws) and its name, for a reader."""
    return f"{index:05d} {arch} {task}"


def targets_identity(teacher_dit_sha256: str, corpus_dir: str | os.PathLike, cfg) -> dict[str, str]:
    """What made a distillation's targets, as the file's metadata strings (``cfg``: a DistillConfig)."""
    return {"format": FORMAT, "teacher_dit_sha256": teacher_dit_sha256,
            "corpus_manifest_sha256": file_digest(Path(corpus_dir) / "manifest.parquet"),
            **{name: json.dumps(getattr(cfg, name)) for name in TARGET_SETTINGS}}


def save_targets(run_dir: str | os.PathLike, targets: dict[str, torch.Tensor], identity: dict[str, str],
                 flops: int) -> Path:
    """Write ``targets`` (pair key → patches) and what made them into ``run_dir``, atomically."""
    path = Path(run_dir) / TARGETS_FILE
    tensors = {key: value.detach().cpu().contiguous() for key, value in targets.items()}
    atomic_write_bytes(path, save(tensors, metadata={**identity, "flops": str(int(flops))}))
    return path


def load_targets(run_dir: str | os.PathLike, identity: dict[str, str],
                 keys: list[str]) -> tuple[dict[str, torch.Tensor], int]:
    """The targets a run stored for exactly this distillation, and what making them cost; else a TargetsError."""
    path = Path(run_dir) / TARGETS_FILE
    if not path.is_file():
        raise TargetsError(f"{path}: no stored targets (a distillation with target_steps > 0 or a retrieval start "
                           "writes them into its run folder)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored, names = handle.metadata() or {}, set(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise TargetsError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
    differ = [f"{name} {stored.get(name)} there, {value} here" for name, value in identity.items()
              if stored.get(name) != value]
    if differ:
        raise TargetsError(f"{path}: made for another distillation, so not reused: {'; '.join(differ)}")
    if names != set(keys):
        raise TargetsError(f"{path}: its {len(names)} pairs are not this distillation's {len(keys)}")
    try:
        tensors = read_weights(path)
    except CheckpointError as exc:
        raise TargetsError(str(exc)) from None
    return {key: tensors[key] for key in keys}, int(stored["flops"])
