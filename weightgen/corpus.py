"""The corpus store: a folder of members, each a trajectory of hub-style checkpoints, and a manifest.

```
CORPUS/
  members/<member-id>/member.json              written last: the member is complete
  members/<member-id>/step-000500/model.safetensors + config.json
  manifest.parquet                             one row per checkpoint of every complete member
```

A member is written whole into a temporary folder and renamed into place, so a crash leaves
either nothing or a complete member. The manifest is rebuilt from the complete members under a
file lock, so it never lists a checkpoint that is not there, even with two builds at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
from filelock import FileLock, Timeout

from weightgen.checkpoint import CONFIG_NAME, FORMAT, WEIGHTS_NAME, CheckpointError, load_checkpoint, write_checkpoint_files
from weightgen.io import atomic_write_bytes, atomic_write_json, with_default_mode

MEMBER_FILE = "member.json"
MANIFEST_NAME = "manifest.parquet"
MANIFEST_COLUMNS = [
    "member", "source", "family", "arch", "task", "dataset", "seed", "step", "val_acc", "test_acc",
    "num_params", "flops_per_step", "path",
]


class CorpusError(ValueError):
    """A corpus folder that is missing, empty or unusable."""


@dataclass
class Checkpoint:
    step: int
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float]


def final_checkpoints(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest rows of each member's last (highest-step) checkpoint."""
    return manifest.sort_values("step").groupby("member").tail(1)


def checkpoint_dirname(step: int) -> str:
    return f"step-{step:07d}"


class Corpus:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.members_dir = self.root / "members"
        self.manifest_path = self.root / MANIFEST_NAME

    # ------------------------------------------------------------------ members
    def member_dir(self, member_id: str) -> Path:
        return self.members_dir / member_id

    def is_complete(self, member_id: str) -> bool:
        return (self.member_dir(member_id) / MEMBER_FILE).is_file()

    @contextmanager
    def claim(self, member_id: str) -> Iterator[bool]:
        """Hold ``member_id`` for this process; yields False when another process is writing it."""
        self.members_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.members_dir / f".{member_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def write_member(self, member_id: str, info: dict[str, Any], checkpoints: list[Checkpoint]) -> Path:
        """Store a member's checkpoints atomically; ``info`` (arch, task, recipe, seed, ...) goes in every config.

        Call it while holding :meth:`claim` for ``member_id``: it replaces what a killed writer left behind.
        """
        if not checkpoints:
            raise CorpusError(f"member {member_id}: no checkpoints to write")
        self.members_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.members_dir.glob(f".{member_id}.*.tmp"):  # left by a killed writer; callers hold the claim
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=self.members_dir, prefix=f".{member_id}.", suffix=".tmp"))
        try:
            with_default_mode(tmp, directory=True)
            steps = []
            for ckpt in sorted(checkpoints, key=lambda c: c.step):
                folder = tmp / checkpoint_dirname(ckpt.step)
                folder.mkdir()
                config = {"format": FORMAT, "member": member_id, **info, "step": ckpt.step, "metrics": ckpt.metrics}
                write_checkpoint_files(folder, ckpt.state_dict, config)
                steps.append({"step": ckpt.step, "path": checkpoint_dirname(ckpt.step), **ckpt.metrics})
            atomic_write_json(tmp / MEMBER_FILE, {"format": FORMAT, "member": member_id, **info, "checkpoints": steps})
            target = self.member_dir(member_id)
            if target.exists():  # a leftover without member.json (a crash before the rename finished)
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.member_dir(member_id)

    def members(self) -> list[dict[str, Any]]:
        """member.json of every complete member (sorted by id); damaged ones are skipped with a warning."""
        if not self.members_dir.is_dir():
            return []
        out = []
        for path in sorted(self.members_dir.glob(f"*/{MEMBER_FILE}")):
            try:
                record = json.loads(path.read_text())
                missing = [c["path"] for c in record["checkpoints"] if not _checkpoint_files_present(path.parent / c["path"])]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _warn(f"skipping {path.parent.name}: unreadable {MEMBER_FILE} ({exc})")
                continue
            if missing:
                _warn(f"skipping {path.parent.name}: checkpoint files missing in {', '.join(missing)}")
                continue
            out.append(record)
        return out

    def load(self, member_id: str, step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return load_checkpoint(self.member_dir(member_id) / checkpoint_dirname(step))

    # ------------------------------------------------------------------ manifest
    def rebuild_manifest(self) -> pd.DataFrame:
        """Index every checkpoint of every complete member; written atomically under a lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".manifest.lock")):
            rows = []
            for record in self.members():
                arch, task = record.get("arch", {}), record.get("task", {})
                for ckpt in record["checkpoints"]:
                    rows.append({
                        "member": record["member"],
                        "source": record.get("source", "zoo"),
                        "family": arch.get("family", "external"),
                        "arch": record.get("arch_string", ""),
                        "task": record.get("task_string", ""),
                        "dataset": task.get("dataset", ""),
                        "seed": int(record.get("seed", -1)),
                        "step": int(ckpt["step"]),
                        "val_acc": float(ckpt.get("val_acc", float("nan"))),
                        "test_acc": float(ckpt.get("test_acc", float("nan"))),
                        "num_params": int(record.get("num_params", 0)),
                        "flops_per_step": int(record.get("flops_per_step", 0)),
                        "path": f"members/{record['member']}/{ckpt['path']}",
                    })
            frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
            atomic_write_bytes(self.manifest_path, frame.to_parquet(index=False))
        return frame

    def manifest(self) -> pd.DataFrame:
        """The manifest table (rebuilt if it is missing)."""
        if not self.manifest_path.is_file():
            return self.rebuild_manifest()
        return pd.read_parquet(self.manifest_path)

    def require_nonempty(self) -> pd.DataFrame:
        frame = self.manifest()
        if frame.empty:
            raise CorpusError(f"corpus {self.root} is empty: build it with `weightgen corpus build` or import checkpoints")
        return frame


def _checkpoint_files_present(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file()


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)


__all__ = ["Corpus", "Checkpoint", "CorpusError", "CheckpointError", "MANIFEST_COLUMNS"]
