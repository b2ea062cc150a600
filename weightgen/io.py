"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a rerun after a crash) therefore sees either the old file or the complete new one,
never a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)  # os.umask is read only by setting it: read once at import, and put back at once
os.umask(_UMASK)


def with_default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give an owner-only file or folder (mkstemp's, mkdtemp's) the mode a plain open or mkdir gives under the umask,
    so the corpus and runs stay readable to the team, a Prefect worker or MLflow. Weights go through
    atomic_write_bytes too, since safetensors' save_file also writes owner-only files."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or 'missing' (a fingerprint of what a stage or a cached result reads)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
