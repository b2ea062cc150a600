"""Benchmark suites: which target cases, fine-tuned how, from which inits (see BENCHMARK.md).

A suite file (YAML) names the corpus and generator it judges, the fine-tune recipe (one per family,
identical for every init), the init methods and the target cases, each tagged with its split::

    name: default
    corpus: corpus/default        # the generator's training corpus: checked for leaks
    generator: runs/default       # run folder with encoder/ and dit/
    seeds: [100, 101]             # fine-tune seeds (= random-init seeds) for every case
    recipe: {lr: 0.003, batch_size: 100, steps: 1000, eval_every: 25}
    recipes: {cnn1d: {lr: 0.01}}  # per-family overrides of the recipe
    methods: [random, moment, noisy-nearest, retrieval, weight-selection, generated, generated-best-of-k]
                                  # any may carry "+head": its head refitted to training examples
    samples: 4                    # k of generated-best-of-k
    label_map: false              # true: every corpus method, generated included, maps label orders exactly
    cases:
      - {arch: "mlp:hidden=96x96", task: mnist1d, split: unseen-arch}

:func:`check_splits` holds every case to its tag against the corpus manifest — an ``unseen`` case
whose architecture or task a corpus member has is a leak, and the suite is refused before any
compute is spent.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from weightgen.head_fit import HEAD_FIT_SUFFIX
from weightgen.specs import SpecError, load_settings, parse_arch
from weightgen.zoo import _COMPATIBLE, ArchString, FamilyRecipes, TaskString

SPLITS = ("seen", "unseen-arch", "unseen-task", "unseen-both")
# The protocol's methods (BENCHMARK.md), the default of every suite.
PROTOCOL_METHODS = ("random", "moment", "noisy-nearest", "retrieval", "weight-selection", "generated",
                    "generated-best-of-k")
# Each of them with its head refitted to the task's training examples (weightgen.head_fit): `retrieval+head`,
# `generated+head`, ...; `random+head` is the control (a random body's features, a fitted head). `random`
# itself stays the framework's init: the target and every saving are relative to it.
HEAD_FIT_METHODS = tuple(m + HEAD_FIT_SUFFIX for m in PROTOCOL_METHODS)
METHODS = PROTOCOL_METHODS + HEAD_FIT_METHODS
GENERATED_METHODS = tuple(m for m in METHODS if m.startswith("generated"))
Split = Literal["seen", "unseen-arch", "unseen-task", "unseen-both"]
Method = Literal[METHODS]


class SuiteError(SpecError):
    """A suite that cannot be run: bad file, bad field, or cases that do not match their split."""


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    arch: ArchString
    task: TaskString
    split: Split
    seeds: list[int] | None = Field(default=None, min_length=1, description="overrides the suite's seeds")

    @model_validator(mode="after")
    def _compatible(self) -> "Case":
        from weightgen.data import input_shape

        family = parse_arch(self.arch).family
        if len(input_shape(self.task)) not in _COMPATIBLE[family]:
            raise ValueError(f"a {family} network cannot take {self.task}'s inputs")
        return self

    @property
    def case_id(self) -> str:
        return f"{self.arch}@{self.task}"


class Suite(FamilyRecipes):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    corpus: str = "corpus/default"
    generator: str = "runs/default"
    seeds: list[int] = Field(default=[100], min_length=1)
    methods: list[Method] = Field(default=list(PROTOCOL_METHODS), min_length=1)
    samples: int = Field(4, ge=1, le=64, description="k of generated-best-of-k")
    guidance: float = Field(1.0, ge=0.0, le=20.0)
    ddim_steps: int = Field(50, ge=1, le=1000)
    target_fraction: float = Field(0.99, gt=0.0, le=1.0, description="target = this × random's mean final val acc")
    # A label order is a renaming of the classes, and a network's output rows can be renamed exactly
    # (weightgen.relabel). On, every corpus method gets that map: generated samples the base task, the
    # baselines pick members by their base task, and each moves its output rows to the case's label order.
    label_map: bool = Field(False, description="every corpus method maps label orders exactly (weightgen.relabel)")
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "Suite":
        if "random" not in self.methods:
            raise ValueError("methods must include 'random': the target and compute_saved are relative to it")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {sorted({m for m in self.methods if self.methods.count(m) > 1})}")
        ids = [c.case_id for c in self.cases]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"cases listed twice: {twice}")
        return self

    def seeds_for(self, case: Case) -> list[int]:
        return case.seeds or self.seeds

    def unseen_archs(self) -> list[str]:
        """The architectures of the unseen-arch and unseen-both cases (sorted, once each): a distillation
        keeps them out of its neighbours, so the suite still judges architectures the generator never saw."""
        return sorted({c.arch for c in self.cases if c.split in ("unseen-arch", "unseen-both")})

    def unseen_tasks(self) -> list[str]:
        """The tasks of the unseen-task and unseen-both cases (sorted, once each): a tune keeps them, and their
        label orders and template sets, out of its task neighbours."""
        return sorted({c.task for c in self.cases if c.split in ("unseen-task", "unseen-both")})

    def with_sources(self, corpus=None, generator=None, ddim_steps: int | None = None,
                     label_map: bool | None = None, guidance: float | None = None) -> "Suite":
        """The same suite judged against another corpus, generator run folder, DDIM step count, label map and/or
        guidance scale (None keeps the suite's)."""
        update = {k: str(v) for k, v in (("corpus", corpus), ("generator", generator)) if v}
        for key, value in (("ddim_steps", ddim_steps), ("label_map", label_map), ("guidance", guidance)):
            if value is not None:
                update[key] = value
        return load_suite({**self.model_dump(), **update})  # validated: a bad override is a SuiteError

    def narrowed(self, methods: list[str] | None = None, splits: list[str] | None = None) -> "Suite":
        """The same suite with only these methods and/or the cases of these splits (None keeps all).

        What a lever's bench needs (random and generated on the target splits) without a hand-edited copy of
        the suite; ``random`` is kept whatever is asked, since the target and every saving are relative to it.
        """
        update = {}
        if methods:
            unknown = sorted(set(methods) - set(METHODS))
            if unknown:
                raise SuiteError(f"suite {self.name}: unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
            update["methods"] = ["random"] + [m for m in dict.fromkeys(methods) if m != "random"]
        if splits:
            unknown = sorted(set(splits) - set(SPLITS))
            if unknown:
                raise SuiteError(f"suite {self.name}: unknown split(s) {unknown}; valid: {', '.join(SPLITS)}")
            update["cases"] = [c.model_dump() for c in self.cases if c.split in splits]
            if not update["cases"]:
                raise SuiteError(f"suite {self.name}: no case in split(s) {sorted(set(splits))}")
        return load_suite({**self.model_dump(), **update}) if update else self


def load_suite(source: str | os.PathLike | dict) -> Suite:
    """A suite from a YAML file or a dict; a SuiteError names the file and every bad field."""
    return load_settings(source, Suite, "suite", SuiteError)


def check_splits(suite: Suite, manifest) -> None:
    """Refuse a suite whose cases do not match their split tags in this corpus manifest.

    seen: the corpus has this architecture on this task, and the case's seeds are new (an init seed
    a member was trained from would make `random` a corpus member's own start); unseen-arch: no
    member has the architecture, the task is in the corpus; unseen-task: the reverse; unseen-both:
    neither. Every problem is listed, naming the case and the members that leak.
    """
    frame = manifest[manifest["family"] != "external"]
    archs, tasks, families = set(frame["arch"]), set(frame["task"]), set(frame["family"])
    problems = []
    for i, case in enumerate(suite.cases):
        label = f"case {i} ({case.case_id}, {case.split})"
        family = parse_arch(case.arch).family
        if family not in families:
            problems.append(f"{label}: the corpus has no {family} member at all")
            continue
        arch_in, task_in = case.arch in archs, case.task in tasks
        pair = frame[(frame["arch"] == case.arch) & (frame["task"] == case.task)]
        if case.split == "seen":
            if pair.empty:
                problems.append(f"{label}: not in the corpus, so it cannot be 'seen'")
            elif "seed" in pair and set(pair["seed"].dropna().astype(int)) & set(suite.seeds_for(case)):
                used = sorted(set(pair["seed"].dropna().astype(int)) & set(suite.seeds_for(case)))
                problems.append(f"{label}: seeds {used} are the corpus members' own seeds; use new ones")
            continue
        leaks = []
        if case.split in ("unseen-arch", "unseen-both") and arch_in:
            leaks.append(("architecture", sorted(set(frame[frame["arch"] == case.arch]["member"]))))
        if case.split in ("unseen-task", "unseen-both") and task_in:
            leaks.append(("task", sorted(set(frame[frame["task"] == case.task]["member"]))))
        for what, members in leaks:
            problems.append(f"{label}: leaks — {len(members)} corpus members have this {what} "
                            f"(e.g. {', '.join(members[:2])}); exclude it from the corpus grid")
        if case.split == "unseen-arch" and not task_in:
            problems.append(f"{label}: its task is not in the corpus either; tag it unseen-both")
        if case.split == "unseen-task" and not arch_in:
            problems.append(f"{label}: its architecture is not in the corpus either; tag it unseen-both")
    if problems:
        raise SuiteError(f"suite {suite.name!r} does not match corpus {suite.corpus}:\n  " + "\n  ".join(problems))
