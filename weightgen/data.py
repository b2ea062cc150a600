"""Datasets for the task specs: generated or packaged locally, split deterministically, cached on disk.

Every task gives a :class:`Dataset` with standardised float32 inputs and int64 labels in three
splits (train / val / test). The same spec always gives the same arrays, bit for bit; the arrays
are cached as ``.npz`` under :func:`cache_dir` keyed by the spec's canonical string, so a corpus
build generates each dataset once.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weightgen.io import atomic_write_bytes
from weightgen.specs import DigitsTask, MNIST1DTask, parse_task

NUM_CLASSES = 10
DATA_VERSION = 2  # bump when generation changes, so cached arrays are regenerated
VAL_FRACTION = 0.125  # of the training pool; mnist1d's 4,000 train samples → 3,500 train / 500 val


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32 [n, *input_shape]
    y: torch.Tensor  # int64 [n]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]  # (40,) for mnist1d sequences, (8, 8) for digits images
    num_classes: int = NUM_CLASSES


def input_shape(task) -> tuple[int, ...]:
    """The input shape a task's examples have, known without generating the data."""
    return {"mnist1d": (40,), "digits": (8, 8)}[parse_task(task).dataset]


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$WEIGHTGEN_CACHE/data`` or ``~/.cache/weightgen/data``."""
    root = os.environ.get("WEIGHTGEN_CACHE") or Path.home() / ".cache" / "weightgen"
    return Path(root) / "data"


def cache_path(task) -> Path:
    """The cache file of a task's arrays, keyed by its canonical string and the generator version."""
    task = parse_task(task)
    key = hashlib.sha256(f"{DATA_VERSION}:{task.to_string()}".encode()).hexdigest()[:16]
    return cache_dir() / f"{task.dataset}-{key}.npz"


def load_task(task) -> Dataset:
    """The dataset for a task spec (string, dict or spec), from the cache or generated now."""
    task = parse_task(task)
    path = cache_path(task)
    if path.exists():
        try:
            with np.load(path) as arrays:
                return _to_dataset({k: arrays[k] for k in arrays.files})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache entry is regenerated below and replaced atomically
    arrays = _generate(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = _npz_bytes(arrays)
    atomic_write_bytes(path, buffer)
    return _to_dataset(arrays)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _to_dataset(arrays: dict[str, np.ndarray]) -> Dataset:
    def split(name: str) -> Split:
        return Split(torch.from_numpy(arrays[f"x_{name}"].copy()), torch.from_numpy(arrays[f"y_{name}"].copy()))

    train, val, test = split("train"), split("val"), split("test")
    return Dataset(train, val, test, input_shape=tuple(train.x.shape[1:]))


def label_permutation(task, num_classes: int = NUM_CLASSES) -> np.ndarray | None:
    """The relabelling a task applies (label = perm[original class]), or None for none; the one definition."""
    task = parse_task(task)
    return np.random.default_rng(task.label_perm).permutation(num_classes) if task.label_perm else None


def _generate(task) -> dict[str, np.ndarray]:
    if isinstance(task, MNIST1DTask):
        x_pool, y_pool, x_test, y_test = _mnist1d(task)
    elif isinstance(task, DigitsTask):
        x_pool, y_pool, x_test, y_test = _digits(task)
    else:  # pragma: no cover - parse_task only returns the two
        raise TypeError(f"no generator for {type(task).__name__}")
    perm = label_permutation(task)
    if perm is not None:
        y_pool, y_test = perm[y_pool], perm[y_test]
    rng = np.random.default_rng(task.seed)
    order = rng.permutation(len(y_pool))
    n_val = int(round(len(order) * VAL_FRACTION))
    val_idx, train_idx = order[:n_val], order[n_val:]
    # Standardise with training statistics only, so val/test never leak into the inputs.
    mean, std = x_pool[train_idx].mean(), x_pool[train_idx].std() + 1e-8
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return {
        "x_train": norm(x_pool[train_idx]), "y_train": y_pool[train_idx].astype(np.int64),
        "x_val": norm(x_pool[val_idx]), "y_val": y_pool[val_idx].astype(np.int64),
        "x_test": norm(x_test), "y_test": y_test.astype(np.int64),
    }


def _mnist1d(task: MNIST1DTask):
    from mnist1d.data import get_dataset_args, get_templates, make_dataset

    args = get_dataset_args()
    args.num_samples = task.samples
    args.corr_noise_scale = task.noise
    args.iid_noise_scale = task.iid_noise
    args.max_translation = task.shift
    args.scale_coeff = task.scale
    args.shear_scale = task.shear
    args.seed = task.seed
    templates = get_templates()
    if task.template_seed:
        templates = perturbed_templates(templates, task.template_seed)
    # make_dataset reseeds numpy's global RNG; keep the caller's stream untouched.
    state = np.random.get_state()
    try:
        data = make_dataset(args, template=templates)
    finally:
        np.random.set_state(state)
    return data["x"].astype(np.float64), data["y"], data["x_test"].astype(np.float64), data["y_test"]


def perturbed_templates(templates: dict, seed: int) -> dict:
    """A new "alphabet": each class template gets a smooth random bump, same normalisation as the originals."""
    rng = np.random.default_rng(seed)
    x = templates["x"].copy()
    bumps = rng.normal(size=x.shape)
    kernel = np.array([0.25, 0.5, 0.25])
    bumps = np.stack([np.convolve(b, kernel, mode="same") for b in bumps])
    x = x + 0.5 * bumps * x.std(axis=1, keepdims=True)
    x -= x[:, :1]  # signals still start at 0, as mnist1d's own templates do
    return {**templates, "x": x}


def _digits(task: DigitsTask):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float64) / 16.0  # [1797, 8, 8] in 0..1
    labels = bunch.target.astype(np.int64)
    images = np.rot90(images, k=task.rot90, axes=(1, 2))
    if task.flip:
        images = images[:, :, ::-1]
    # Separate streams: the split depends on the seed only, never on whether noise was drawn.
    split_rng, noise_rng = (np.random.default_rng([task.seed, stream]) for stream in (0, 1))
    if task.noise:
        images = images + task.noise * noise_rng.normal(size=images.shape)
    order = split_rng.permutation(len(labels))
    n_test = len(labels) // 5  # 20% test, the rest is the train/val pool
    test, pool = order[:n_test], order[n_test:]
    return images[pool], labels[pool], images[test], labels[test]
