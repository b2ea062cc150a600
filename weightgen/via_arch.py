"""Sample an architecture the generator was trained on, and cut it to the target's shapes: the frame's own readout.

A shared-frame corpus (configs/grids/default.yaml, "parents") makes every member from its family's parent by weight
selection, so a unit of one width sits at the same *proportion* of the way along the layer as in another width, not
at the same index (``benchmarks/frame_alignment.py``: median cosine 0.69-0.85 between a narrower member's tensors and
the wider member's read at weight selection's indices, 0.00-0.16 at the same indices). The generator's tokens name a
weight by its absolute row and chunk, so for an architecture it never saw it writes each position as if the widths
lined up index by index. Sampled this way instead, an unseen architecture takes the generator's sample of the
nearest architecture it was trained on (retrieval's distance: |log parameter ratio| + layers apart), and weight
selection fits it to the target (:func:`weightgen.weight_selection.fit_state_dict`; positions the source lacks keep
the target's random init at the sample's seed), as the frame built its members. Architectures the generator was
trained on sample as they always did.

A run opts in through its sampler (``via_archs`` in ``dit/config.json``: the corpus's architectures, written by
:func:`via_archs_run`), so the bench's ``generated`` method needs no new name.

``canvas`` goes one step further, as the frame itself does: every architecture of a family, seen or not, is
sampled as the family's *canvas* (the grid's parent, family → architecture) and cut to its shapes, so the DiT
writes one network per family and task and every width reads its units at their proportional places. A DiT tuned
through that readout (``weightgen dit tune --canvas GRID``: the cut is differentiable, weight selection being
index selection) samples so; an untuned one was never asked to.

Both lose to sampling every architecture as itself with the recipe's student, whose samples are not the frame's
networks (docs/results.md, item 71: 0.18 and −0.05 against 0.34 saved on unseen architectures); they stay options.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from weightgen.baselines import size_distance
from weightgen.data import input_shape
from weightgen.models import build_model, count_parameters
from weightgen.specs import parse_arch, parse_task
from weightgen.weight_selection import layers


@functools.lru_cache(maxsize=256)
def _size(arch: str, task: str) -> tuple[int, int]:
    """Parameters and weight-selection layers of ``arch`` on ``task``'s inputs (shapes only, no values)."""
    with torch.device("meta"):
        model = build_model(arch, input_shape(task))
    return count_parameters(model), len(layers(model.state_dict()))


def arch_distance(source: str, target: str, task: str) -> float:
    """Retrieval's architecture distance (:func:`weightgen.baselines.size_distance`) from ``source`` to ``target``."""
    return size_distance(*_size(source, task), *_size(target, task))


def nearest_arch(arch, task, archs: list[str]) -> str:
    """``arch`` itself when it is among ``archs``; else the nearest of ``archs``'s same-family architectures (ties:
    the first by name); ``arch`` when ``archs`` has none of its family."""
    arch, task = parse_arch(arch), parse_task(task).to_string()
    target = arch.to_string()
    mine = sorted({parse_arch(a).to_string() for a in archs if parse_arch(a).family == arch.family})
    if target in mine or not mine:
        return target
    return min(mine, key=lambda a: (arch_distance(a, target, task), a))


def source_arch(arch, task, via_archs: list[str] | None = None, canvas: dict[str, str] | None = None) -> str:
    """The architecture the DiT writes for ``arch``: its family's canvas, else (``via_archs``) the nearest seen
    architecture, else ``arch`` itself (canonical spelling)."""
    arch = parse_arch(arch)
    if canvas and arch.family in canvas:
        return parse_arch(canvas[arch.family]).to_string()
    return nearest_arch(arch, task, via_archs) if via_archs else arch.to_string()


def corpus_archs(corpus_root: str | os.PathLike) -> list[str]:
    """Every architecture with a native member in the corpus (hub imports aside), sorted."""
    from weightgen.corpus import Corpus

    frame = Corpus(corpus_root).require_nonempty()
    return sorted(set(frame.loc[frame["family"] != "external", "arch"]))


def via_archs_run(run_dir: str | os.PathLike, corpus_root: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A copy of ``run_dir`` that samples unseen architectures through the nearest of ``corpus_root``'s (the corpus
    the generator was trained on); the run is left as it is and an existing ``out_dir`` is refused."""
    from weightgen.generate import copy_run_with_sampler

    return copy_run_with_sampler(run_dir, out_dir, {"via_archs": corpus_archs(corpus_root)})


__all__ = ["arch_distance", "corpus_archs", "nearest_arch", "source_arch", "via_archs_run"]
