"""Faults: a corpus build killed part-way, and two builds writing one corpus at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from weightgen.checkpoint import load_checkpoint
from weightgen.corpus import Corpus

ROOT = Path(__file__).resolve().parents[1]


def _grid(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "faults", "seeds": [0, 1, 2], "checkpoint_steps": [steps // 2],
        "recipe": {"steps": steps, "eval_every": steps // 2, "batch_size": 64},
        "archs": ["mlp:hidden=32", "transformer:dim=8,depth=1,heads=2,patch=8"], "tasks": ["digits"],
    }))
    return path


def _build(grid: Path, out: Path, home: Path, workers: int = 1) -> subprocess.Popen:
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "WEIGHTGEN_MLRUNS": str(home / "mlruns")}
    return subprocess.Popen([sys.executable, "-m", "weightgen.cli", "corpus", "build", "--grid", str(grid), "--out",
                             str(out), "--workers", str(workers)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _assert_sound(corpus: Corpus, members: int) -> None:
    frame = corpus.rebuild_manifest()
    assert frame["member"].nunique() == members and len(frame) == 2 * members
    assert not frame.duplicated(["member", "step"]).any()
    for path in frame["path"]:  # every listed checkpoint loads and is finite
        state, config = load_checkpoint(corpus.root / path)
        assert state and config["member"] in path


def test_killed_build_resumes_without_retraining(tmp_path):
    grid, out = _grid(tmp_path, steps=600), tmp_path / "corpus"
    proc = _build(grid, out, tmp_path)
    corpus = Corpus(out)
    deadline = time.monotonic() + 240
    while len(list(corpus.members_dir.glob("*/member.json"))) < 2 if corpus.members_dir.exists() else True:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no member finished in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Prefect server and its pool workers
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in corpus.members_dir.glob("*/member.json")}
    assert 2 <= len(finished) < 6

    rerun = _build(grid, out, tmp_path)
    output = rerun.communicate(timeout=400)[0]
    assert rerun.returncode == 0, output
    assert f"{len(finished)} members complete already, {6 - len(finished)} to train" in output
    assert {p.parent.name: p.stat().st_mtime_ns for p in corpus.members_dir.glob("*/member.json")
            if p.parent.name in finished} == finished  # finished members were not retrained
    assert not list(corpus.members_dir.glob(".*.tmp"))  # what the killed writer left was cleared
    _assert_sound(corpus, 6)


def test_two_builds_at_once_agree(tmp_path):
    grid, out = _grid(tmp_path, steps=200), tmp_path / "corpus"
    procs = [_build(grid, out, tmp_path / f"h{i}", workers=1) for i in range(2)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    corpus = Corpus(out)
    _assert_sound(corpus, 6)
    assert not list(corpus.members_dir.glob(".*.tmp"))
    trained = sum(o.count(" trained ") for o in outputs)
    assert trained <= 6  # no member was trained by both builds
