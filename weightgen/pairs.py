"""Which (architecture, task) pairs a distillation or a tune trains on, and how each pair's targets are drawn.

The corpus's own pairs (:func:`corpus_pairs`, in the order the distillation numbers its targets), their
width-scaled neighbours (:func:`neighbour_pairs`: each family at more widths than the dozen the corpus
trained), their task neighbours (:func:`task_neighbour_pairs`: the same architecture on a task one knob away,
which a tune can score by its data alone), each family's fine-tune recipe, and the seeded batches of a pair's
target fine-tune.
:mod:`weightgen.dit_distill`, :mod:`weightgen.dit_tune` and the benchmarks that rebuild a distillation's
targets share them, so each draws the same pairs, recipes and batches from the same seed.
"""
from __future__ import annotations

import math

import torch

WIDTH_FIELDS = {"mlp": "hidden", "cnn1d": "channels", "cnn2d": "channels"}  # the transformer's dim: a multiple of heads


def neighbour_arch(arch: str, generator: torch.Generator, low: float = 0.5, high: float = 2.0) -> str:
    """``arch`` with its widths scaled by one random factor in [low, high] (log-uniform), as a spec string.

    One factor for every layer keeps the family's shape (a 64x64 MLP becomes 90x90, an 8x16 CNN 11x22).
    """
    from weightgen.specs import parse_arch

    spec = parse_arch(arch)
    factor = float(torch.empty(1).uniform_(math.log(low), math.log(high), generator=generator).exp())

    def scale(width: int, multiple: int = 1) -> int:
        return max(multiple, round(width * factor / multiple) * multiple)

    if spec.family == "transformer":
        return spec.model_copy(update={"dim": scale(spec.dim, spec.heads)}).to_string()
    name = WIDTH_FIELDS[spec.family]
    return spec.model_copy(update={name: [scale(w) for w in getattr(spec, name)]}).to_string()


def neighbour_pairs(pairs: list[tuple[str, str]], count: int, exclude: set[str], seed: int = 0) -> list[tuple[str, str]]:
    """``count`` new (architecture, task) pairs per pair: its architecture's widths scaled, on the same task.

    Never a pair already given and never an architecture in ``exclude``; seeded, so one list per seed.
    """
    generator, taken, out = torch.Generator().manual_seed(seed), set(pairs), []
    for arch, task in pairs:
        for _ in range(count):
            for _attempt in range(20):  # a draw that lands on a taken or excluded architecture is drawn again
                pair = (neighbour_arch(arch, generator), task)
                if pair not in taken and pair[0] not in exclude:
                    taken.add(pair)
                    out.append(pair)
                    break
    return out


def target_generator(seed: int, index: int) -> torch.Generator:
    """The batches of the ``index``-th pair's target fine-tune (the corpus pairs first, in order, then the neighbours)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def family_recipes(corpus) -> dict[str, dict]:
    """Each family's fine-tune recipe (lr, batch_size) as the corpus trained it; a neighbour takes its family's."""
    return {m["arch"]["family"]: m["recipe"] for m in corpus.members() if "recipe" in m}


def family_recipe(recipes: dict[str, dict], arch: str) -> tuple[float, int]:
    """``arch``'s (lr, batch_size) from :func:`family_recipes`; 3e-3 and 100 where the corpus recorded none."""
    from weightgen.specs import parse_arch

    recipe = recipes.get(parse_arch(arch).family, {})
    return float(recipe.get("lr", 3e-3)), int(recipe.get("batch_size", 100))


def corpus_pairs(corpus) -> list[tuple[str, str]]:
    """The corpus's own (architecture, task) pairs, sorted, imported checkpoints left out.

    The distillation numbers its targets in this order (:func:`target_generator`'s ``index``).
    """
    frame = corpus.require_nonempty()
    frame = frame[frame["family"] != "external"]  # imported checkpoints: no pair of ours to sample
    return sorted(set(zip(frame["arch"], frame["task"])))


# --------------------------------------------------------------------------- task neighbours
# The knobs a task neighbour changes (one each), with the values each may take. Label orders and
# template sets are seeds, so a wide range gives the tune many tasks no corpus member was trained on.
TASK_KNOBS = {
    "mnist1d": {"label_perm": list(range(1, 41)), "template_seed": list(range(1, 41))},
    "digits": {"label_perm": list(range(1, 41)), "orientation": [(r, f) for f in (False, True) for r in range(4)],
               "noise": [0.0, 0.1, 0.2, 0.3]},
}
_KEPT = ("seed", "samples")  # how a task's rows are drawn and split, not what the task is


def _defining(task) -> dict:
    """The settings that make ``task`` what it is: those that differ from its dataset's defaults."""
    defaults = type(task)()
    return {k: v for k, v in task.model_dump().items() if k not in _KEPT and v != getattr(defaults, k)}


def excludes_task(task, excluded: list) -> bool:
    """Whether ``task`` shares what defines any of the ``excluded`` tasks (parsed specs): it has all of one's
    defining settings (a rotated, noisy copy of an excluded rotation is still that rotation), or it uses one's
    label order or template set, which are seeds shared across datasets (``label_perm=2`` is one permutation
    for MNIST-1D and digits alike, and the task features carry it)."""
    drawn = task.model_dump()
    for other in excluded:
        defining = _defining(other)
        if task == other or (task.dataset == other.dataset and defining
                             and all(drawn.get(k) == v for k, v in defining.items())):
            return True
        if any(k in ("label_perm", "template_seed") and drawn.get(k) == v for k, v in defining.items()):
            return True
    return False


def tasks_one_knob_away(task: str) -> dict[str, list[str]]:
    """Every task that differs from ``task`` in one of its dataset's :data:`TASK_KNOBS`, by knob, as spec strings."""
    from weightgen.specs import parse_task

    spec = parse_task(task)
    settings, out = spec.model_dump(), {}
    for name, values in TASK_KNOBS[spec.dataset].items():
        current = (spec.rot90, spec.flip) if name == "orientation" else getattr(spec, name)
        updates = [{"rot90": v[0], "flip": v[1]} if name == "orientation" else {name: v} for v in values if v != current]
        out[name] = [type(spec)(**{**settings, **u}).to_string() for u in updates]
    return out


def task_neighbour_pairs(pairs: list[tuple[str, str]], count: int, exclude: list[str], seed: int = 0) -> list[tuple[str, str]]:
    """``count`` new (architecture, task) pairs per pair: its architecture on a task one knob away from its own.

    Each draw picks a knob (uniformly among those with a value left), then a value. Never a pair already given or
    drawn, and never a task that :func:`excludes_task` refuses against ``exclude`` (a suite's unseen tasks); fewer
    than ``count`` only when a pair runs out of tasks. Seeded, so one list per seed. Only the task's data is
    needed: a neighbour has no corpus member.
    """
    from weightgen.specs import parse_task

    excluded = [parse_task(t) for t in exclude]
    generator, taken, out = torch.Generator().manual_seed(seed), set(pairs), []
    for arch, task in pairs:
        left = {knob: [t for t in tasks if (arch, t) not in taken and not excludes_task(parse_task(t), excluded)]
                for knob, tasks in tasks_one_knob_away(task).items()}
        for _ in range(count):
            knobs = [k for k, tasks in left.items() if tasks]
            if not knobs:
                break
            tasks = left[knobs[int(torch.randint(len(knobs), (1,), generator=generator))]]
            pair = (arch, tasks.pop(int(torch.randint(len(tasks), (1,), generator=generator))))
            taken.add(pair)
            out.append(pair)
    return out


__all__ = ["TASK_KNOBS", "WIDTH_FIELDS", "corpus_pairs", "excludes_task", "family_recipe", "family_recipes",
           "neighbour_arch", "neighbour_pairs", "target_generator", "task_neighbour_pairs", "tasks_one_knob_away"]
