"""Corpus checkpoints as token sequences with conditions: what the encoder and the DiT train on.

Each checkpoint becomes one *sequence*: its patches normalised by a scale known from the
architecture alone (``1/sqrt(fan_in)`` for weight matrices and kernels, 1 for vectors), so a
sampled sequence for a new architecture can be scaled back without any trained weights to look
at. Beside the values every token keeps its coordinates (:data:`weightgen.tokens.COORD_COLUMNS`)
and relative depth; every sequence keeps a family id and a task feature vector.

Task features describe a task by what generates it — the dataset, its noise/shift/scale knobs,
the ten MNIST-1D class templates themselves, the digits rotation/flip, and the label permutation
as a 10×10 matrix — so a task never seen in training still has a meaningful condition.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from safetensors import safe_open

from weightgen.data import NUM_CLASSES, label_permutation
from weightgen.specs import FAMILIES, DigitsTask, MNIST1DTask, parse_task
from weightgen.tokens import KIND_ID, Tokens, detokenize

_MATRIX_KINDS = {KIND_ID[k] for k in ("linear_weight", "conv_weight", "attn_in_weight", "attn_out_weight")}
_TABLE_KINDS = {KIND_ID[k] for k in ("embedding", "pos_embedding")}
_FORMAT = "weightgen.sequences/1"
TASK_FEATURES = 2 + 5 + 120 + 6 + NUM_CLASSES * NUM_CLASSES


# --------------------------------------------------------------------------- conditions
def family_id(family: str) -> int:
    return FAMILIES.index(family)


def task_features(task) -> torch.Tensor:
    """A fixed-length float vector describing how a task's data is generated (see module doc)."""
    task = parse_task(task)
    dataset = torch.zeros(2)
    knobs, templates, digits = torch.zeros(5), torch.zeros(120), torch.zeros(6)
    if isinstance(task, MNIST1DTask):
        from mnist1d.data import get_templates

        from weightgen.data import perturbed_templates

        dataset[0] = 1
        knobs[:] = torch.tensor([task.noise, task.iid_noise * 10, task.shift / 60, task.scale, task.shear])
        t = get_templates()
        if task.template_seed:
            t = perturbed_templates(t, task.template_seed)
        templates[:] = torch.from_numpy(np.asarray(t["x"], dtype=np.float32).reshape(-1))
    elif isinstance(task, DigitsTask):
        dataset[1] = 1
        digits[task.rot90] = 1
        digits[4], digits[5] = float(task.flip), task.noise
    perm = label_permutation(task)
    perm = np.arange(NUM_CLASSES) if perm is None else perm
    permutation = torch.zeros(NUM_CLASSES, NUM_CLASSES)
    permutation[torch.arange(NUM_CLASSES), torch.from_numpy(perm)] = 1  # row = original class, col = label
    return torch.cat([dataset, knobs, templates, digits, permutation.reshape(-1)])


# --------------------------------------------------------------------------- scales
def fan_in_scales(tokens: Tokens) -> torch.Tensor:
    """[N] per-token scale: 1/sqrt(cols) for matrices/kernels, the tensor's own std for embedding tables, else 1.

    Embedding tables have no fan-in to go by (a BERT word table has std ≈ 0.05, a fresh one 1), so they
    use the stored per-tensor std; for a template built from a fresh network that is its init scale.
    """
    kind, cols = tokens.coords[:, 2], tokens.coords[:, 6].clamp(min=1).to(torch.float32)
    is_matrix = torch.isin(kind, torch.tensor(sorted(_MATRIX_KINDS)))
    is_table = torch.isin(kind, torch.tensor(sorted(_TABLE_KINDS)))
    scales = torch.where(is_matrix, cols.rsqrt(), torch.ones_like(cols))
    return torch.where(is_table, tokens.patch_scales(), scales)


def normalize(tokens: Tokens) -> torch.Tensor:
    return tokens.patches / fan_in_scales(tokens)[:, None]


def denormalize(tokens: Tokens, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state_dict for normalised patch ``values`` laid out like ``tokens`` (padding ignored)."""
    return detokenize(tokens.with_patches(values * fan_in_scales(tokens)[:, None]))


# --------------------------------------------------------------------------- sequence sets
@dataclass
class SequenceSet:
    """Many variable-length token sequences, concatenated; ``offsets`` marks where each starts."""

    values: torch.Tensor  # [T, D] float32: normalised patches, or latents
    coords: torch.Tensor  # [T, len(COORD_COLUMNS)] int64
    depth: torch.Tensor  # [T] float32
    offsets: torch.Tensor  # [S + 1] int64
    family: torch.Tensor  # [S] int64
    task: torch.Tensor  # [S, TASK_FEATURES] float32
    meta: list[dict] = field(default_factory=list)  # per sequence: member, step, arch, task, metrics

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def sequence(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.values[a:b], self.coords[a:b], self.depth[a:b]

    def with_values(self, values: torch.Tensor) -> "SequenceSet":
        if values.shape[0] != self.values.shape[0]:
            raise ValueError(f"values must have {self.values.shape[0]} rows, got {values.shape[0]}")
        return replace(self, values=values.detach().to(torch.float32).contiguous())

    def subset(self, indices) -> "SequenceSet":
        indices = [int(i) for i in indices]
        parts = [self.sequence(i) for i in indices]
        lengths = torch.tensor([0] + [len(p[0]) for p in parts])
        return SequenceSet(
            torch.cat([p[0] for p in parts]) if parts else self.values[:0],
            torch.cat([p[1] for p in parts]) if parts else self.coords[:0],
            torch.cat([p[2] for p in parts]) if parts else self.depth[:0],
            lengths.cumsum(0), self.family[indices], self.task[indices], [self.meta[i] for i in indices],
        )

    def save(self, path: str | os.PathLike) -> None:
        from weightgen.io import atomic_write_bytes
        from safetensors.torch import save as save_bytes

        tensors = {k: getattr(self, k).contiguous() for k in ("values", "coords", "depth", "offsets", "family", "task")}
        atomic_write_bytes(path, save_bytes(tensors, metadata={"format": _FORMAT, "meta": json.dumps(self.meta)}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SequenceSet":
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a weightgen sequence set (format={meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return cls(**tensors, meta=json.loads(meta["meta"]))


def from_tokens(items: list[tuple[Tokens, str, object, dict]]) -> SequenceSet:
    """A set from (tokens, family, task, meta) items; values are the fan-in-normalised patches."""
    values, coords, depth = [], [], []
    for tokens, _, _, _ in items:
        values.append(normalize(tokens))
        coords.append(tokens.coords)
        depth.append(tokens.depth)
    lengths = torch.tensor([0] + [len(v) for v in values])
    return SequenceSet(
        torch.cat(values), torch.cat(coords), torch.cat(depth), lengths.cumsum(0),
        torch.tensor([family_id(f) for _, f, _, _ in items], dtype=torch.int64),
        torch.stack([task_features(t) for _, _, t, _ in items]) if items else torch.zeros(0, TASK_FEATURES),
        [m for _, _, _, m in items],
    )


def corpus_sequences(corpus_root, patch_size: int, min_step: int = 0, exclude_members=(), progress: bool = False,
                     canonical: bool = False) -> SequenceSet:
    """Every weightgen (non-external) checkpoint of a corpus at ``step >= min_step``, tokenized and normalised;
    with ``canonical``, each in its canonical hidden-unit order (:mod:`weightgen.canonical`)."""
    from weightgen.canonical import canonicalize
    from weightgen.corpus import Corpus
    from weightgen.tokens import tokenize

    corpus = Corpus(corpus_root)
    frame = corpus.require_nonempty()
    frame = frame[(frame["family"] != "external") & (frame["step"] >= min_step) & ~frame["member"].isin(list(exclude_members))]
    rows = list(frame.itertuples())
    if progress:
        from rich.progress import track

        rows = track(rows, description=f"tokenizing {len(rows)} checkpoints")
    items = []
    for row in rows:
        state, config = corpus.load(row.member, row.step)
        if canonical:
            state = canonicalize(state, config["arch"])
        meta = {"member": row.member, "step": int(row.step), "arch": row.arch, "task": row.task,
                "family": row.family, "test_acc": float(row.test_acc), "val_acc": float(row.val_acc)}
        items.append((tokenize(state, patch_size), row.family, config["task"], meta))
    return from_tokens(items)
