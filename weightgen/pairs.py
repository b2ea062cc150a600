"""Which (architecture, task) pairs a distillation or a tune trains on, and how each pair's targets are drawn.

The corpus's own pairs (:func:`corpus_pairs`, in the order the distillation numbers its targets), their
width-scaled neighbours (:func:`neighbour_pairs`: each family at more widths than the dozen the corpus
trained), each family's fine-tune recipe, and the seeded batches of a pair's target fine-tune.
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


__all__ = ["WIDTH_FIELDS", "corpus_pairs", "family_recipe", "family_recipes", "neighbour_arch", "neighbour_pairs",
           "target_generator"]
