"""Datasets: deterministic, cached, split without overlap, standardised with train statistics, variants that bite."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from weightgen import data
from weightgen.data import cache_dir, cache_path, input_shape, load_task
from weightgen.specs import parse_task


def splits(ds):
    return {"train": ds.train, "val": ds.val, "test": ds.test}


def assert_same(a, b):
    for name in ("train", "val", "test"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert torch.equal(sa.x, sb.x), name
        assert torch.equal(sa.y, sb.y), name
    assert a.input_shape == b.input_shape


@pytest.fixture(scope="module")
def mnist1d():
    return load_task("mnist1d")


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


# Digits pixels are k/16 for k = 0..16; standardisation is one affine map, so the raw grid can be recovered
# from the training split's extremes (some training pixel is 0 and some is 16).
def raw_pixels(ds, x):
    lo, hi = ds.train.x.min().item(), ds.train.x.max().item()
    return (x.double().numpy() - lo) / (hi - lo) * 16


# --------------------------------------------------------------------------- determinism and cache
def test_two_loads_are_equal(digits):
    assert_same(digits, load_task("digits"))
    assert_same(digits, load_task({"dataset": "digits"}))  # spec forms share the cache entry


def test_cache_hit_equals_fresh_generation(mnist1d):
    path = cache_path("mnist1d")
    assert path.exists()
    path.unlink()
    fresh = load_task("mnist1d")
    assert path.exists()
    assert_same(mnist1d, fresh)


def test_cache_lives_under_weightgen_cache(isolated_state):
    load_task("digits")
    assert cache_dir() == isolated_state / "cache" / "data"
    assert cache_path("digits").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_file_is_regenerated_and_replaced(digits, damage):
    path = cache_path("digits:seed=3")
    good = load_task("digits:seed=3")
    blob = path.read_bytes()
    path.write_bytes({"garbage": b"this is not an npz file" * 50, "truncated": blob[: len(blob) // 2], "empty": b""}[damage])
    again = load_task("digits:seed=3")
    assert_same(good, again)
    assert path.read_bytes() == blob  # replaced by a complete file again
    with np.load(path) as arrays:
        assert set(arrays.files) == {f"{k}_{s}" for k in "xy" for s in ("train", "val", "test")}


def test_generating_mnist1d_leaves_numpy_global_rng_alone():
    np.random.seed(1234)
    before = np.random.get_state()
    data._generate(parse_task("mnist1d:samples=200"))
    after = np.random.get_state()
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# --------------------------------------------------------------------------- splits, shapes, dtypes
@pytest.mark.parametrize("name, sizes, shape", [("mnist1d", (3500, 500, 1000), (40,)), ("digits", (1258, 180, 359), (8, 8))])
def test_split_sizes_shapes_and_dtypes(name, sizes, shape, mnist1d, digits):
    ds = {"mnist1d": mnist1d, "digits": digits}[name]
    assert (len(ds.train), len(ds.val), len(ds.test)) == sizes
    assert ds.input_shape == shape == input_shape(name)
    assert ds.num_classes == 10
    for split in splits(ds).values():
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape) == (len(split), *shape)
        assert split.y.min() >= 0 and split.y.max() <= 9
    assert set(ds.train.y.tolist()) == set(range(10))


def test_input_shape_needs_no_data():
    assert input_shape("mnist1d:samples=100") == (40,)
    assert input_shape("digits:rot90=1") == (8, 8)


def test_digits_splits_do_not_overlap_and_cover_the_dataset(digits):
    rows = {name: {bytes(r) for r in raw_pixels(digits, s.x).round().astype(np.uint8).reshape(len(s), -1)}
            for name, s in splits(digits).items()}
    assert len(rows["train"]) == 1258 and len(rows["val"]) == 180 and len(rows["test"]) == 359  # no repeats within
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    reference = {bytes(r) for r in load_digits().images.astype(np.uint8).reshape(1797, -1)}
    assert rows["train"] | rows["val"] | rows["test"] == reference


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_inputs_standardised_with_train_statistics(name, mnist1d, digits):
    ds = {"mnist1d": mnist1d, "digits": digits}[name]
    x = ds.train.x.double()
    assert abs(x.mean().item()) < 1e-5
    assert abs(x.std(unbiased=False).item() - 1) < 1e-4
    assert abs(ds.val.x.double().mean().item()) > 1e-6  # val was not standardised on its own statistics
    if name == "digits":  # the same affine map for every split: val/test land on the train grid of k/16
        for split in (ds.val, ds.test):
            raw = raw_pixels(ds, split.x)
            assert np.abs(raw - raw.round()).max() < 1e-3
            assert raw.min() > -1e-3 and raw.max() < 16 + 1e-3


# --------------------------------------------------------------------------- variants
def test_label_perm_permutes_labels_consistently(digits):
    perm = load_task("digits:label_perm=3")
    mapping = {}
    for name, split in splits(digits).items():
        other = getattr(perm, name)
        assert torch.equal(split.x, other.x)  # same images, same order
        for a, b in zip(split.y.tolist(), other.y.tolist()):
            assert mapping.setdefault(a, b) == b  # one label always maps to the same label
    assert sorted(mapping) == list(range(10)) and sorted(mapping.values()) == list(range(10))  # a bijection
    assert any(a != b for a, b in mapping.items())
    assert load_task("digits:label_perm=4").train.y.tolist() != perm.train.y.tolist()


def test_rot90_rotates_images(digits):
    rotated = load_task("digits:rot90=1")
    # Rotation keeps the pixel statistics and (without noise) the split, so it is an exact rotation of the plain data.
    for name, split in splits(digits).items():
        other = getattr(rotated, name)
        assert torch.equal(other.x, torch.rot90(split.x, 1, dims=(1, 2))), name
        assert torch.equal(other.y, split.y)
    # And against sklearn directly: un-rotate a few test images and find them, with their label, in load_digits.
    bunch = load_digits()
    reference = {bytes(img.astype(np.uint8)): label for img, label in zip(bunch.images, bunch.target)}
    raw = raw_pixels(rotated, rotated.test.x).round().astype(np.uint8)
    for i in range(10):
        assert not np.array_equal(raw[i], np.rot90(raw[i], -1))
        assert reference[bytes(np.ascontiguousarray(np.rot90(raw[i], -1)))] == rotated.test.y[i].item()


def test_flip_mirrors_images(digits):
    flipped = load_task("digits:flip=true")
    assert torch.equal(flipped.train.x, digits.train.x.flip(-1))
    assert not torch.equal(flipped.train.x, digits.train.x)


def test_digits_noise_changes_pixels(digits):
    noisy = load_task("digits:noise=0.2")
    assert (len(noisy.train), len(noisy.val), len(noisy.test)) == (1258, 180, 359)
    assert len(torch.unique(digits.train.x)) <= 17  # clean: the 17 grey levels
    assert len(torch.unique(noisy.train.x)) > 1000  # noisy: off the grid everywhere
    assert abs(noisy.train.x.double().mean().item()) < 1e-5
    assert_same(noisy, load_task("digits:noise=0.2"))
    assert not torch.equal(noisy.train.x, load_task("digits:noise=0.2,seed=1").train.x)
    for clean, noisy_split in zip(splits(digits).values(), splits(noisy).values()):  # noise never moves the split
        assert torch.equal(clean.y, noisy_split.y)
        assert torch.corrcoef(torch.stack([clean.x.flatten(), noisy_split.x.flatten()]))[0, 1] > 0.8


def test_template_seed_changes_mnist1d_inputs(mnist1d):
    other = load_task("mnist1d:template_seed=1")
    assert other.train.x.shape == mnist1d.train.x.shape
    # Same seed: same labels and the same noise draws, so every example differs only by its perturbed template.
    assert torch.equal(other.train.y, mnist1d.train.y)
    for a, b in ((other.train.x, mnist1d.train.x), (other.test.x, mnist1d.test.x)):
        diff = (a - b).abs()
        assert (diff.amax(dim=1) > 1e-2).float().mean() > 0.99
        assert diff.mean() > 0.03  # about 0.07 (the templates are small next to mnist1d's noise)
    assert not torch.equal(other.train.x, load_task("mnist1d:template_seed=2").train.x)
