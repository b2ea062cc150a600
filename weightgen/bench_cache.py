"""The bench's cache of generator-free baselines: the key of what they read, and a reused result relabelled.

A job's ``random``, ``moment``, ``noisy-nearest``, ``retrieval`` and ``weight-selection`` results
depend on the case, the seed, the family's recipe, the corpus and this code, never on the generator,
so ``flows/evaluate.py`` caches them with Prefect under :func:`baseline_key`, and a bench of the next
generator reuses them. Prefect's own cache policies hash the task's inputs, which hold the suite
(its name, its generator) and miss the corpus's and the library's contents; hence a key of our own.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from weightgen.bench import BASELINE_METHODS, Job
from weightgen.specs import parse_arch
from weightgen.suite import Suite


def baseline_key(suite: Suite, job: Job, methods: Sequence[str]) -> str:
    """The cache key of a job's generator-free methods: everything their results depend on.

    The case's architecture and task, the seed, the methods, the family's fine-tune recipe, the corpus
    (its manifest's bytes: a member added or retrained changes them), the suite's label map, and the code
    (every module of this package, and torch's version) — so an edit anywhere in weightgen starts the cache afresh.
    Not the suite's name or the case's place in it: :func:`relabel` fits a reused result to those.
    """
    if generated := [m for m in methods if m not in BASELINE_METHODS]:
        raise ValueError(f"{generated}: generated inits depend on the generator and are never cached")
    from weightgen.corpus import Corpus
    from weightgen.io import file_digest

    family = parse_arch(job.case.arch).family
    payload = {"arch": job.case.arch, "task": job.case.task, "seed": job.seed, "methods": sorted(methods),
               "recipe": suite.recipe_for(family).to_string(), "corpus": file_digest(Corpus(suite.corpus).manifest_path),
               "code": code_digest(), "torch": torch.__version__}
    if suite.label_map:  # only when on, so the keys of every suite without it stay as they were
        payload["label_map"] = True
    return "weightgen-bench-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def relabel(result: dict[str, Any], suite: Suite, job: Job, reused: bool) -> dict[str, Any]:
    """``result`` (from :func:`run_job`, maybe read back from a cache) under this suite's and job's names."""
    names = {"suite": suite.name, "case": job.case.case_id, "case_index": job.case_index, "split": job.case.split}
    return {**result, "case_index": job.case_index,
            "rows": [{**row, **names, "reused": reused} for row in result["rows"]],
            "curves": [{**c, "case_index": job.case_index} for c in result["curves"]]}


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of every module of the weightgen package, in path order."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


__all__ = ["baseline_key", "code_digest", "relabel"]
