"""The benchmark's non-generative init methods: what a generated init has to beat.

Each method turns an architecture, a task and a seed into a starting state_dict for
``build_model(arch, input_shape(task), seed=seed)``, using the final checkpoint of each corpus
member (see ../shared/BENCHMARK.md, "Init methods compared on every case"):

``random``            the target's own init.
``moment``            random, each tensor standardised and rescaled to the corpus mean/std of its
                      layer role (family, parameter kind, first/middle/last layer), on fan-in-normalised
                      values, so a width never seen still gets the right scale.
``noisy-nearest``     the nearest-task checkpoint with exactly the target's shapes, plus Gaussian noise
                      (a memorisation baseline); none for an unseen architecture.
``retrieval``         the nearest checkpoint of the family (same dataset first, then task distance, then
                      architecture distance |log params ratio| + layers apart), fitted to the target by
                      weight selection (:mod:`weightgen.weight_selection`).
``weight-selection``  Xu et al. (2024): the family's largest checkpoint on the target's dataset (another
                      dataset's only if there is none), nearest task among equals, fitted the same way.

Tasks are near when their :func:`weightgen.sequences.task_features` vectors are, so an unseen task
still has a nearest seen one. With ``label_map`` (a suite's ``label_map: true``), the corpus methods
compare base tasks (label order aside), then label orders, and move the chosen member's output rows to
the target's label order (:func:`weightgen.relabel.to_label_order`), as ``generated`` does with the
same suite. Members equally near on every key (each (architecture, task) has one per training seed)
are a tie, and the case's seed draws among them (:func:`_nearest`), so a baseline is judged over its
equally good members across a suite's seeds, as ``generated`` is over its samples. A
:class:`CorpusIndex` loads each checkpoint and computes each family's moment stats once, so that cost
lands on the first call that needs it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from weightgen.corpus import Corpus, checkpoint_dirname, final_checkpoints
from weightgen.data import input_shape
from weightgen.flops import counting_flops
from weightgen.models import build_model, count_parameters
from weightgen.sequences import task_features
from weightgen.specs import ArchSpec, TaskSpec, parse_arch, parse_task
from weightgen.tokens import param_kind
from weightgen.weight_selection import fit_state_dict, layers

BASELINE_METHODS = ("random", "moment", "noisy-nearest", "retrieval", "weight-selection")

Role = tuple[str, str]  # (parameter kind, layer position first/middle/last); the family is the index's key


@dataclass
class Init:
    """One init for one case.

    ``flops`` are counted with ``torch.utils.flop_counter.FlopCounterMode`` around the whole method
    (building the target, reading and selecting/copying weights): it counts matmuls, convolutions and
    attention, so copies, selection and elementwise rescaling/noise count ~0, which is their true cost
    next to a training step.
    """

    method: str
    state_dict: dict[str, torch.Tensor] | None  # None = the method does not apply to this case (see note)
    flops: int
    wall_time: float  # seconds
    source: str = ""  # corpus member(s)/checkpoint it came from
    note: str = ""


class CorpusIndex:
    """The final checkpoint of every native corpus member, read once; state_dicts and stats cached on first use."""

    def __init__(self, corpus_root: str | os.PathLike):
        self.corpus = Corpus(corpus_root)
        frame = self.corpus.require_nonempty()
        frame = frame[frame["family"] != "external"]  # hub imports have no arch spec to build or fit
        finals = final_checkpoints(frame)
        self.finals = finals.sort_values("member").reset_index(drop=True)
        self._features: dict[str, torch.Tensor] = {}
        self._states: dict[str, dict[str, torch.Tensor]] = {}
        self._templates: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self._moments: dict[str, dict[Role, tuple[float, float]]] = {}

    def family(self, family: str) -> pd.DataFrame:
        return self.finals[self.finals["family"] == family]

    def state_dict(self, member: str) -> dict[str, torch.Tensor]:
        """The member's final state_dict in its module order (shared, cached: copy before changing it)."""
        if member not in self._states:
            row = self.finals.loc[self.finals["member"] == member].iloc[0]
            self._states[member] = self.corpus.load(member, int(row["step"]))[0]  # in module order
        return self._states[member]

    def source(self, row: pd.Series) -> str:
        return f"{row['member']}/{checkpoint_dirname(int(row['step']))}"

    def task_distance(self, a, b) -> float:
        """Euclidean distance between the two tasks' feature vectors."""
        fa, fb = (self._task_features(t) for t in (a, b))
        return float(torch.dist(fa, fb))

    def _task_features(self, task) -> torch.Tensor:
        key = parse_task(task).to_string()
        if key not in self._features:
            self._features[key] = task_features(key)
        return self._features[key]

    def num_layers(self, arch: str, task: str) -> int:
        """Layers (weight_selection's grouping) of ``arch`` on ``task``'s inputs."""
        return len(layers(self._template(arch, task)))

    def _template(self, arch: str, task: str) -> dict[str, torch.Tensor]:
        """``arch``'s state_dict on ``task``'s inputs as shapes only, in module order."""
        if (arch, task) not in self._templates:
            with torch.device("meta"):  # shapes without memory or init work
                self._templates[arch, task] = build_model(arch, input_shape(task)).state_dict()
        return self._templates[arch, task]

    def moments(self, family: str) -> dict[Role, tuple[float, float]]:
        """Mean and std of every layer role's fan-in-normalised values over the family's final checkpoints."""
        if family not in self._moments:
            sums: dict[Role, list[float]] = {}  # count, sum, sum of squares
            for member in self.family(family)["member"]:
                state = self.state_dict(member)
                for key, role in layer_roles(state).items():
                    values = state[key].double() * math.sqrt(fan_in(role[0], state[key].shape))
                    acc = sums.setdefault(role, [0, 0.0, 0.0])
                    acc[0] += values.numel()
                    acc[1] += float(values.sum())
                    acc[2] += float((values**2).sum())
            self._moments[family] = {
                role: (s / n, math.sqrt(max(ss / n - (s / n) ** 2, 0.0))) for role, (n, s, ss) in sums.items()
            }
        return self._moments[family]


def fan_in(kind: str, shape) -> int:
    """numel / shape[0] for a matrix or kernel; 1 for vectors and position tables, whose scale is their own."""
    return math.prod(shape[1:]) if len(shape) >= 2 and kind != "pos_embedding" else 1


def layer_roles(state_dict: dict[str, torch.Tensor]) -> dict[str, Role]:
    """Role of every floating-point entry: its parameter kind and whether its layer is first, middle or last."""
    groups = list(layers(state_dict).values())
    roles = {}
    for i, entries in enumerate(groups):
        position = "first" if i == 0 else "last" if i == len(groups) - 1 else "middle"
        for key in entries.values():
            if state_dict[key].is_floating_point():
                roles[key] = (param_kind(key, tuple(state_dict[key].shape)), position)
    return roles


def _std(t: torch.Tensor) -> float:
    return float(t.std()) if t.numel() > 1 else 0.0  # one value has no spread (std would be NaN)


@dataclass
class _Case:
    arch: ArchSpec
    task: TaskSpec
    seed: int
    model: nn.Module  # the target, at its own seeded init
    index: CorpusIndex
    noise_scale: float
    label_map: bool = False

    def candidates(self) -> pd.DataFrame:
        """The family's final checkpoints with ``other_dataset``, ``task_distance`` and ``order_distance`` to this case.

        ``order_distance`` is the distance between the tasks as they are; ``task_distance`` is the same, or with
        ``label_map`` the distance between their base tasks (a label order costs nothing when it is mapped). Every
        method ranks by ``order_distance`` right after ``task_distance``, so the map only adds members: among
        equally near base tasks, the nearest label order (the case's own, where a member has it) still wins.
        """
        rows = self.index.family(self.arch.family)
        order_distance = [self.index.task_distance(t, self.task) for t in rows["task"]]
        if self.label_map:
            from weightgen.relabel import base_task

            distance = [self.index.task_distance(base_task(t), base_task(self.task)) for t in rows["task"]]
        else:
            distance = order_distance
        return rows.assign(other_dataset=rows["dataset"] != self.task.dataset, task_distance=distance,
                           order_distance=order_distance)

    def in_label_order(self, state: dict[str, torch.Tensor], member_task: str) -> dict[str, torch.Tensor]:
        """A state_dict with this case's shapes, from a member trained on ``member_task``: with ``label_map``,
        its output rows moved to this case's label order; otherwise as it is."""
        if not self.label_map:
            return state
        from weightgen.relabel import output_layer, to_label_order

        return to_label_order(state, output_layer(self.arch, input_shape(self.task)), member_task, self.task)


Result = tuple[dict[str, torch.Tensor] | None, str, str]  # state_dict, source, note


def _nearest(rows: pd.DataFrame, by: list[str], seed: int, ascending: list[bool] | None = None) -> pd.Series:
    """The first row by ``by``; where several rows tie on every key, the ``seed % n``-th of them by member id.

    Taking the smallest member id would judge a baseline on one of its equally near members, and the pick
    alone moves a split median by up to 0.17 (docs/results.md item 61); drawing by the case's seed judges it
    over all of them. The note says which of how many it took."""
    ascending = ascending if ascending is not None else [True] * len(by)
    ordered = rows.sort_values(by + ["member"], ascending=ascending + [True])
    first = ordered.iloc[0]
    ties = ordered[(ordered[by] == first[by]).all(axis=1)]
    pick = ties.iloc[seed % len(ties)].copy()
    pick["tie"] = f"member {seed % len(ties) + 1} of {len(ties)} equally near" if len(ties) > 1 else ""
    return pick


def _random(case: _Case) -> Result:
    return case.model.state_dict(), "", ""


def _moment(case: _Case) -> Result:
    stats = case.index.moments(case.arch.family)
    state = {k: v.clone() for k, v in case.model.state_dict().items()}
    roles = layer_roles(state)
    params = dict(case.model.named_parameters())  # buffers (running stats, counters) stay as they are
    rescaled = 0
    for key in params:
        if roles[key] not in stats:  # a role the corpus never had keeps its random values
            continue
        mean, std = stats[roles[key]]
        value, spread = state[key], _std(state[key])
        # a constant tensor (LayerNorm ones, zero biases) has nothing to standardise: it becomes the role mean
        z = (value - value.mean()) / spread if spread > 0 else torch.zeros_like(value)
        state[key] = (z * std + mean) / math.sqrt(fan_in(roles[key][0], value.shape))
        rescaled += 1
    members = len(case.index.family(case.arch.family))
    return state, f"{members} {case.arch.family} members", f"{rescaled} of {len(params)} parameter tensors rescaled"


def _noisy_nearest(case: _Case) -> Result:
    rows = case.candidates()
    rows = rows[(rows["arch"] == case.arch.to_string()) & ~rows["other_dataset"]]
    if rows.empty:
        return None, "", "no corpus checkpoint has this architecture's shapes"
    best = _nearest(rows, ["task_distance", "order_distance"], case.seed)
    generator = torch.Generator().manual_seed(case.seed)
    buffers = {name for name, _ in case.model.named_buffers()}
    state = {}
    for key, value in case.index.state_dict(best["member"]).items():
        if key in buffers or not value.is_floating_point():
            state[key] = value.clone()
        else:
            noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
            state[key] = value + noise * (case.noise_scale * _std(value))
    note = f"{best['task']} (task distance {best['task_distance']:.3g}) + noise {case.noise_scale} x std"
    note += f"; {best['tie']}" if best["tie"] else ""
    return case.in_label_order(state, best["task"]), case.index.source(best), note


def _fitted(case: _Case, best: pd.Series) -> Result:
    state, report = fit_state_dict(case.index.state_dict(best["member"]), case.model.state_dict())
    note = f"{best['arch']} on {best['task']}; {report['filled']} of {len(state)} tensors filled"
    if best["other_dataset"]:
        note += f" (no {case.arch.family} member on {case.task.dataset}: from {best['dataset']})"
    note += f"; {best['tie']}" if best["tie"] else ""
    return case.in_label_order(state, best["task"]), case.index.source(best), note


RETRIEVAL_KEYS = ["other_dataset", "task_distance", "order_distance", "arch_distance"]


def size_distance(params: int, num_layers: int, target_params: int, target_layers: int) -> float:
    """Retrieval's architecture distance: |log parameter ratio| + layers apart (``weightgen.via_arch`` reads it too)."""
    return abs(math.log(params / target_params)) + abs(num_layers - target_layers)


def _retrieval_candidates(case: _Case) -> pd.DataFrame:
    """The family's members with retrieval's keys: ``candidates`` plus ``arch_distance`` (:func:`size_distance`)."""
    rows = case.candidates()
    target_params = count_parameters(case.model)
    target_layers = len(layers(case.model.state_dict()))

    def arch_distance(row: pd.Series) -> float:
        num_layers = case.index.num_layers(row["arch"], row["task"])
        return size_distance(row["num_params"], num_layers, target_params, target_layers)

    return rows.assign(arch_distance=rows.apply(arch_distance, axis=1))


def _retrieval(case: _Case) -> Result:
    return _fitted(case, _nearest(_retrieval_candidates(case), RETRIEVAL_KEYS, case.seed))


def _weight_selection(case: _Case) -> Result:
    rows = case.candidates()
    best = _nearest(rows, ["other_dataset", "num_params", "task_distance", "order_distance"], case.seed,
                    ascending=[True, False, True, True])
    return _fitted(case, best)


_METHODS = {"random": _random, "moment": _moment, "noisy-nearest": _noisy_nearest,
            "retrieval": _retrieval, "weight-selection": _weight_selection}  # fmt: skip


def make_init(method: str, arch, task, seed: int, index: CorpusIndex, *, noise_scale: float = 0.1,
              label_map: bool = False) -> Init:
    """The ``method`` init of ``arch`` on ``task`` (spec strings or specs) for ``seed``; see the module doc
    (``label_map``: members of any label order, mapped to the task's)."""
    if method not in _METHODS:
        raise ValueError(f"unknown init method {method!r}; valid: {', '.join(BASELINE_METHODS)}")
    arch, task = parse_arch(arch), parse_task(task)
    started = time.perf_counter()
    with counting_flops() as counter:
        model = build_model(arch, input_shape(task), seed=seed)
        if method != "random" and index.family(arch.family).empty:
            state, source, note = None, "", f"the corpus has no {arch.family} member"
        else:
            state, source, note = _METHODS[method](_Case(arch, task, seed, model, index, noise_scale, label_map))
    return Init(method, state, int(counter.get_total_flops()), time.perf_counter() - started, source, note)


__all__ = ["BASELINE_METHODS", "CorpusIndex", "Init", "make_init"]
