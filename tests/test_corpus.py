"""The corpus store and checkpoint folders: atomic members, an honest manifest, safe loading."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from safetensors.torch import save_file

from weightgen.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from weightgen.corpus import Checkpoint, Corpus, CorpusError
from weightgen.models import build_model
from weightgen.specs import parse_arch, parse_task

ARCH, TASK = "mlp:hidden=8", "mnist1d"


def _info(arch: str = ARCH, task: str = TASK) -> dict:
    a, t = parse_arch(arch), parse_task(task)
    return {"source": "zoo", "arch": a.model_dump(), "arch_string": a.to_string(), "task": t.model_dump(),
            "task_string": t.to_string(), "seed": 0, "num_params": 418, "flops_per_step": 10}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    return build_model(ARCH, (40,), seed=seed).state_dict()


def _write(corpus: Corpus, member: str, steps=(10, 20)) -> None:
    corpus.write_member(member, _info(), [Checkpoint(s, _state(s), {"val_acc": s / 100, "test_acc": s / 200}) for s in steps])


def test_member_round_trip_and_manifest(tmp_path):
    corpus = Corpus(tmp_path)
    _write(corpus, "m1")
    assert corpus.is_complete("m1")
    frame = corpus.rebuild_manifest()
    assert list(frame["step"]) == [10, 20]
    assert set(frame["family"]) == {"mlp"} and set(frame["task"]) == {"mnist1d"}
    assert frame["val_acc"].tolist() == [0.1, 0.2]
    state, config = corpus.load("m1", 20)
    assert config["step"] == 20 and config["arch_string"] == ARCH and config["metrics"]["test_acc"] == 0.1
    assert all(torch.equal(state[k], v) for k, v in _state(20).items())
    assert corpus.manifest().equals(frame)  # read back from parquet


def test_manifest_lists_only_complete_members(tmp_path):
    corpus = Corpus(tmp_path)
    _write(corpus, "done")
    # a crash left a member folder without member.json, and a stray temp folder
    (corpus.members_dir / "half").mkdir()
    save_file(_state(), str(corpus.members_dir / "half" / "model.safetensors"))
    (corpus.members_dir / ".other.abc.tmp").mkdir()
    frame = corpus.rebuild_manifest()
    assert set(frame["member"]) == {"done"}
    assert not corpus.is_complete("half")


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    corpus = Corpus(tmp_path)
    _write(corpus, "good")
    before = sorted(p.name for p in corpus.members_dir.iterdir())
    bad = Checkpoint(5, {"w": torch.ones(2), "v": torch.ones(2)[:1]}, {})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("weightgen.corpus.atomic_write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        corpus.write_member("broken", _info(), [bad])
    assert sorted(p.name for p in corpus.members_dir.iterdir()) == before
    assert not corpus.is_complete("broken")


def test_rewrite_replaces_a_leftover_folder(tmp_path):
    corpus = Corpus(tmp_path)
    leftover = corpus.members_dir / "m"
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("partial")
    _write(corpus, "m", steps=(7,))
    assert not (leftover / "junk").exists() and corpus.is_complete("m")


def test_damaged_member_is_skipped_with_a_warning(tmp_path):
    corpus = Corpus(tmp_path)
    _write(corpus, "ok")
    _write(corpus, "bad")
    (corpus.member_dir("bad") / "member.json").write_text("{not json")
    _write(corpus, "lost")
    os.remove(corpus.member_dir("lost") / "step-0000010" / "model.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = corpus.rebuild_manifest()
    assert set(frame["member"]) == {"ok"}
    messages = " ".join(str(w.message) for w in caught)
    assert "bad" in messages and "lost" in messages


def test_claim_is_exclusive(tmp_path):
    corpus = Corpus(tmp_path)
    with corpus.claim("m") as first:
        assert first
        with Corpus(tmp_path).claim("m") as second:
            assert not second
    with corpus.claim("m") as again:
        assert again


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="is empty"):
        Corpus(tmp_path / "nothing").require_nonempty()
    with pytest.raises(CorpusError, match="no checkpoints"):
        Corpus(tmp_path).write_member("m", _info(), [])


# ------------------------------------------------------------------ checkpoint folders
def _native_config() -> dict:
    return {**_info(), "step": 3, "metrics": {}}


def test_load_model_builds_and_loads_strictly(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _state(1), _native_config())
    model = load_model(folder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in _state(1).items())


def test_shape_mismatch_names_the_tensor(tmp_path):
    state = _state()
    state["net.1.weight"] = torch.zeros(9, 40)
    folder = save_checkpoint(tmp_path / "ck", state, _native_config())
    with pytest.raises(CheckpointError, match=r"net\.1\.weight: file \(9, 40\) vs config \(8, 40\)"):
        load_model(folder)


def test_truncated_nan_pickle_and_missing_files_are_refused(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _state(), _native_config())
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(folder)

    state = _state()
    state["net.1.bias"][0] = float("nan")
    nan_folder = save_checkpoint(tmp_path / "nan", state, _native_config())
    with pytest.raises(CheckpointError, match=r"NaN/Inf\) in net\.1\.bias"):
        load_checkpoint(nan_folder)

    pickle_file = tmp_path / "pytorch_model.bin"
    pickle_file.write_bytes(b"\x80\x04not really a pickle")
    from weightgen.checkpoint import read_weights

    with pytest.raises(CheckpointError, match="refusing a pickle checkpoint"):
        read_weights(pickle_file)

    with pytest.raises(CheckpointError, match="folder not found"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "noconfig").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path / "noconfig")
    (tmp_path / "badconfig").mkdir()
    (tmp_path / "badconfig" / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        load_checkpoint(tmp_path / "badconfig")


def test_save_checkpoint_replaces_atomically(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _state(0), _native_config())
    save_checkpoint(folder, _state(1), {**_native_config(), "step": 4})
    state, config = load_checkpoint(folder)
    assert config["step"] == 4 and torch.equal(state["net.1.weight"], _state(1)["net.1.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp folders left
    assert json.loads((folder / "config.json").read_text())["arch"]["family"] == "mlp"


@pytest.mark.parametrize("arch", ["transformer:dim=8,depth=2,heads=2,patch=8", "mlp:hidden=4x4x4x4x4x4"])
def test_a_checkpoint_read_from_disk_tokenizes_like_the_built_network(tmp_path, arch):
    """safetensors sorts keys by name (blocks.0 before embed, net.11 before net.3); tokens number layers by
    first appearance, so a loaded checkpoint must come back in module order or a layer changes index."""
    from weightgen.tokens import tokenize

    state = build_model(arch, (40,), seed=0).state_dict()
    assert list(state) != sorted(state)  # the case that matters
    save_checkpoint(tmp_path / "ckpt", state, _info(arch, TASK))
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert list(loaded) == list(state)
    assert torch.equal(tokenize(loaded, 8).coords, tokenize(state, 8).coords)


def test_what_the_store_writes_takes_the_umasks_modes_not_owner_only_ones(tmp_path):
    """mkstemp, mkdtemp and safetensors' save_file make owner-only files and folders: renamed into place as they
    were, a corpus or a run would be unreadable to a teammate, a Prefect worker or the MLflow server running as
    another user."""
    import stat

    from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
    from weightgen.dit_train import save_pretrained
    from weightgen.io import atomic_write_json
    from weightgen.tokens import tokenize

    umask = os.umask(0o022)
    os.umask(umask)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    if (file_mode, folder_mode) == (0o600, 0o700):
        pytest.skip("this umask (077) asks for owner-only modes: nothing to tell apart")
    corpus = Corpus(tmp_path / "corpus")
    _write(corpus, "m")
    member = corpus.member_dir("m")
    assert mode(member) == folder_mode and mode(member / "member.json") == file_mode
    folder = save_checkpoint(tmp_path / "ckpt", _state(), {"arch": ARCH})
    assert mode(folder) == folder_mode and {mode(p) for p in folder.iterdir()} == {file_mode}
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    tokenize(_state(), 8).save(tmp_path / "t.safetensors")
    assert mode(tmp_path / "a.json") == mode(tmp_path / "t.safetensors") == file_mode
    save_pretrained(DiT(DiTConfig(latent_dim=8, **DIT_PRESETS["tiny"])), tmp_path / "dit")
    assert {mode(p) for p in (tmp_path / "dit").iterdir()} == {file_mode}
