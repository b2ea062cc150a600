"""The zoo: a grid of architectures × tasks × seeds, each member trained and stored with its trajectory.

A grid file (YAML) looks like::

    name: default
    seeds: [0, 1]
    checkpoint_steps: [250, 500, 1000, 2000]
    recipe: {lr: 0.003, batch_size: 100, steps: 2000, eval_every: 250}
    recipes: {cnn1d: {lr: 0.01}}          # per-family overrides of the recipe (optional)
    archs: ["mlp:hidden=32x32", "cnn1d:channels=16x16x16"]
    tasks: ["mnist1d", "digits:rot90=1"]
    exclude: {archs: [], tasks: []}       # kept out of the corpus (the bench's unseen cases)
    parents: {mlp: "mlp:hidden=128x128x128"}   # shared-parent members (optional, below)

Pairs whose family cannot take the task's inputs (cnn1d on images, cnn2d on sequences) are left
out. A member's id names its architecture, task and seed plus a short hash of the recipe, so a
rerun skips members that are complete and retrains only what is missing. A corpus keeps one history per
(architecture, task, seed): a grid that would add the same network trained another way is refused
(:func:`require_one_history`).

``parents`` (family → architecture) gives a family one shared frame. For each dataset, the parent
architecture is trained from its random init on the grid's first task of that dataset (first seed);
every other member of the family on that dataset then starts from the parent's final weights,
fitted to its shapes by weight selection (:mod:`weightgen.weight_selection`), instead of from its own
random init. Independently initialised networks sit ≈ √2 apart (relative distance) in arbitrary
unit orders; members fine-tuned from one parent keep its unit order, so "unit *i* of layer *l*" means
the same thing across the family and a generator sees one mode per architecture, not one per seed.
Parents are corpus members like any other (``info["parent"]`` is empty); children name their parent.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from weightgen.specs import Recipe, SpecError, load_settings, parse_arch, parse_task

_COMPATIBLE = {"mlp": {1, 2}, "transformer": {1, 2}, "cnn1d": {1}, "cnn2d": {2}}  # family → input ranks


# Spec strings validated and stored in canonical form, so "mlp:hidden=8,activation=relu" equals "mlp:hidden=8".
ArchString = Annotated[str, AfterValidator(lambda a: parse_arch(a).to_string())]
TaskString = Annotated[str, AfterValidator(lambda t: parse_task(t).to_string())]


class Exclude(BaseModel):
    model_config = ConfigDict(extra="forbid")
    archs: list[ArchString] = []
    tasks: list[TaskString] = []


class FamilyRecipes(BaseModel):
    """One training recipe with per-family overrides (``recipes: {cnn1d: {lr: 0.01}}``), checked on load."""

    model_config = ConfigDict(extra="forbid")
    recipe: Recipe = Recipe()
    recipes: dict[str, dict[str, Any]] = {}

    @field_validator("recipes")
    @classmethod
    def _known_families(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = set(v) - set(_COMPATIBLE)
        if unknown:
            raise ValueError(f"recipes for unknown families {sorted(unknown)}")
        for overrides in v.values():
            Recipe.model_validate({**Recipe().model_dump(), **overrides})  # a bad override fails now, not mid-run
        return v

    def recipe_for(self, family: str) -> Recipe:
        return Recipe.model_validate({**self.recipe.model_dump(), **self.recipes.get(family, {})})


class Grid(FamilyRecipes):
    name: str = "grid"
    seeds: list[int] = Field(default=[0], min_length=1)
    checkpoint_steps: list[int] = Field(default=[], description="steps saved along each trajectory; the last step is always saved")
    archs: list[ArchString] = Field(min_length=1)
    tasks: list[TaskString] = Field(min_length=1)
    exclude: Exclude = Exclude()
    parents: dict[str, ArchString] = Field(default={}, description="family -> parent architecture (see module doc)")

    @field_validator("parents")
    @classmethod
    def _parent_families(cls, v: dict[str, str]) -> dict[str, str]:
        for family, arch in v.items():
            if family not in _COMPATIBLE:
                raise ValueError(f"parents: unknown family {family!r}")
            if parse_arch(arch).family != family:
                raise ValueError(f"parents: {arch!r} is not a {family} architecture")
        return v


class MemberSpec(BaseModel):
    """One zoo member: everything needed to train it, and its id in the corpus."""

    model_config = ConfigDict(frozen=True)
    arch: str
    task: str
    seed: int
    recipe: Recipe
    checkpoint_steps: tuple[int, ...]
    parent: str | None = None  # member id of the shared parent this member starts from (None: its own random init)

    @property
    def member_id(self) -> str:
        identity = [self.recipe.model_dump(), list(self.checkpoint_steps)] + ([self.parent] if self.parent else [])
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]
        return f"{parse_arch(self.arch).slug}__{parse_task(self.task).slug}__seed{self.seed}__r{digest}"


def load_grid(source: str | os.PathLike | dict) -> Grid:
    """A grid from a YAML file or a dict; a clear SpecError names what is wrong."""
    return load_settings(source, Grid, "grid")


def expand(grid: Grid) -> list[MemberSpec]:
    """The members a grid asks for: compatible archs × tasks × seeds, minus the exclude lists.

    With ``parents``, each (family, dataset) parent comes first and the family's other members on
    that dataset name it; a member never starts training before its parent is complete (see
    :func:`training_waves`).
    """
    from weightgen.data import input_shape

    leaking = sorted(a for a in grid.parents.values() if a in grid.exclude.archs)
    if leaking:
        raise SpecError(f"parents {leaking} are in exclude.archs: an excluded architecture cannot be in the corpus as a parent")
    members, parents = [], {}  # (family, dataset) -> parent spec
    for arch in grid.archs:
        if arch in grid.exclude.archs:
            continue
        family = parse_arch(arch).family
        recipe = grid.recipe_for(family)
        bad_steps = [s for s in grid.checkpoint_steps if not 0 <= s <= recipe.steps]
        if bad_steps:
            raise SpecError(f"checkpoint_steps {bad_steps} fall outside 0..{recipe.steps} (the {family} recipe's steps)")
        steps = tuple(sorted(set(grid.checkpoint_steps) | {recipe.steps}))
        for task in grid.tasks:
            if task in grid.exclude.tasks or len(input_shape(task)) not in _COMPATIBLE[family]:
                continue
            parent = _parent(grid, family, task, parents, steps)
            for seed in grid.seeds:
                spec = MemberSpec(arch=arch, task=task, seed=seed, recipe=recipe, checkpoint_steps=steps,
                                  parent=parent.member_id if parent else None)
                if parent and (spec.arch, spec.task, spec.seed) == (parent.arch, parent.task, parent.seed):
                    continue  # the parent itself, listed first
                members.append(spec)
    return list(parents.values()) + members


def _parent(grid: Grid, family: str, task: str, parents: dict, steps: tuple[int, ...]) -> MemberSpec | None:
    """The parent of ``family`` on ``task``'s dataset (created on first use), or None without one."""
    if family not in grid.parents:
        return None
    dataset = parse_task(task).dataset
    if (family, dataset) not in parents:
        first_task = next(t for t in grid.tasks if parse_task(t).dataset == dataset and t not in grid.exclude.tasks)
        parents[family, dataset] = MemberSpec(arch=grid.parents[family], task=first_task, seed=grid.seeds[0],
                                              recipe=grid.recipe_for(family), checkpoint_steps=steps)
    return parents[family, dataset]


def training_waves(members: list[MemberSpec]) -> list[list[MemberSpec]]:
    """Members in the order they can train: parents (and every member without one) first, then children."""
    waves = [[m for m in members if m.parent is None], [m for m in members if m.parent is not None]]
    return [w for w in waves if w]


def require_one_history(members: list[MemberSpec], corpus_root: str | os.PathLike, grid_name: str) -> None:
    """Refuse (CorpusError) a grid whose members the corpus already holds trained another way: the same
    architecture, task and seed under another member id (another recipe, checkpoint steps or parent).

    Building it would keep both, two networks for one (architecture, task, seed) with different histories:
    retrieval would count them as equally near, and a shared frame would be mixed with networks outside it.
    It is checked before anything trains, so the stored corpus stays as it was.
    """
    from weightgen.corpus import Corpus, CorpusError

    members_dir = Corpus(corpus_root).members_dir
    if not members_dir.is_dir():
        return
    stored = [p.name for p in members_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    clashes = []
    for spec in members:
        wanted = spec.member_id
        prefix = wanted.rsplit("__r", 1)[0] + "__r"  # arch, task and seed; the hash after it is the history
        clashes += [(wanted, other) for other in stored if other.startswith(prefix) and other != wanted]
    if clashes:
        shown = "; ".join(f"{wanted} (stored: {other})" for wanted, other in clashes[:3])
        raise CorpusError(
            f"{corpus_root} already holds {len(clashes)} of grid {grid_name!r}'s members trained another way "
            f"(same architecture, task and seed; another recipe, checkpoint steps or parent), e.g. {shown}. "
            "A corpus holds one history per (architecture, task, seed): build this grid into another folder (--out).")


def untrained(member_id: str, status: str) -> dict[str, Any]:
    """The summary of a member this process did not train: ``skipped`` (complete) or ``busy`` (claimed elsewhere)."""
    return {"member": member_id, "status": status, "train_flops": 0, "wall_time": 0.0}


def train_member(spec: MemberSpec, corpus_root: str | os.PathLike) -> dict[str, Any]:
    """Train one member and store it; skips it if complete or claimed by another process.

    Returns a summary: ``status`` is ``trained``, ``skipped`` (already complete) or ``busy``.
    """
    from weightgen.corpus import Checkpoint, Corpus
    from weightgen.data import load_task
    from weightgen.models import build_model, count_parameters
    from weightgen.training import train

    corpus = Corpus(corpus_root)
    member_id = spec.member_id
    if corpus.is_complete(member_id):
        return untrained(member_id, "skipped")
    with corpus.claim(member_id) as mine:
        if not mine:
            return untrained(member_id, "busy")
        if corpus.is_complete(member_id):  # finished by another process while we waited for the lock
            return untrained(member_id, "skipped")
        arch, task = parse_arch(spec.arch), parse_task(spec.task)
        data = load_task(task)
        model = build_model(arch, data.input_shape, seed=spec.seed)
        if spec.parent:
            start_from_parent(model, corpus, spec.parent)
        result = train(model, data, spec.recipe, seed=spec.seed, checkpoint_steps=spec.checkpoint_steps)
        info = {
            "source": "zoo",
            "arch": arch.model_dump(), "arch_string": arch.to_string(),
            "task": task.model_dump(), "task_string": task.to_string(),
            "recipe": spec.recipe.model_dump(), "seed": spec.seed, "parent": spec.parent or "",
            "num_params": count_parameters(model),
            "flops_per_step": result.flops_per_step, "eval_flops": result.eval_flops,
            "curve": [vars(p) for p in result.curve],
            "wall_time": result.wall_time,
        }
        checkpoints = [Checkpoint(s, sd, result.checkpoint_metrics[s]) for s, sd in result.checkpoints.items()]
        corpus.write_member(member_id, info, checkpoints)
        return {
            "member": member_id, "status": "trained", "test_acc": result.test_acc,
            "train_flops": result.train_flops, "wall_time": result.wall_time,
        }


def start_from_parent(model, corpus, parent_id: str) -> None:
    """Load the parent's final weights into ``model``, fitted to its shapes by weight selection."""
    from weightgen.corpus import MEMBER_FILE, CorpusError
    from weightgen.weight_selection import fit_state_dict

    if not corpus.is_complete(parent_id):
        raise CorpusError(f"parent {parent_id} is not in {corpus.root} yet: train the parents first (training_waves)")
    record = json.loads((corpus.member_dir(parent_id) / MEMBER_FILE).read_text())
    final_step = max(c["step"] for c in record["checkpoints"])
    parent_state, _ = corpus.load(parent_id, final_step)
    fitted, _ = fit_state_dict(parent_state, model.state_dict())
    model.load_state_dict(fitted)


def build_summary(summaries: list[dict[str, Any]], manifest, wall_time: float) -> dict[str, float]:
    """Counts and costs of one build, for the CLI table and MLflow metrics."""
    from weightgen.flops import corpus_training_flops

    statuses = [s["status"] for s in summaries]
    return {
        "members_requested": len(summaries),
        "members_trained": statuses.count("trained"),
        "members_skipped": statuses.count("skipped"),
        "members_busy": statuses.count("busy"),
        "corpus_members": int(manifest["member"].nunique()) if len(manifest) else 0,
        "corpus_checkpoints": len(manifest),
        "corpus_families": int(manifest["family"].nunique()) if len(manifest) else 0,
        "corpus_tasks": int(manifest["task"].nunique()) if len(manifest) else 0,
        "build_train_flops": float(sum(s["train_flops"] for s in summaries)),
        "corpus_train_flops": float(corpus_training_flops(manifest)) if len(manifest) else 0.0,
        "wall_time_s": wall_time,
    }


def log_build(grid: Grid, corpus_root: str | os.PathLike, summary: dict[str, float], manifest, tags: dict[str, str] | None = None) -> str:
    """One MLflow run per build: the grid as params, the summary as metrics, manifest + plot as artifacts."""
    import tempfile

    import mlflow

    from weightgen.plots import corpus_accuracy_plot
    from weightgen.tracking import stage_run

    params = {"grid": grid.name, "corpus_dir": str(Path(corpus_root).resolve()), "seeds": grid.seeds,
              "archs": len(grid.archs), "tasks": len(grid.tasks), "checkpoint_steps": grid.checkpoint_steps,
              "recipe": grid.recipe.to_string(), "exclude_archs": grid.exclude.archs, "exclude_tasks": grid.exclude.tasks}
    with stage_run("corpus", run_name=f"corpus-{grid.name}", params=params, tags=tags) as run:
        mlflow.log_metrics(summary)
        mlflow.log_dict(grid.model_dump(mode="json"), "grid.yaml")
        manifest_path = Path(corpus_root) / "manifest.parquet"
        if manifest_path.is_file():
            mlflow.log_artifact(str(manifest_path))
        if len(manifest):
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(str(corpus_accuracy_plot(manifest, Path(tmp) / "corpus_accuracy.png")))
        return run.info.run_id
