"""The patch autoencoder: masking, training, determinism, noise, save/load and model-level fidelity."""

from __future__ import annotations

import math

import pytest
import torch

from weightgen.checkpoint import model_for_weights
from weightgen.corpus import Corpus
from weightgen.data import load_task
from weightgen.encoder import (
    EncoderConfig, PatchAutoencoder, decode_set, encode_set, fidelity, per_kind_mse, reconstruct_state_dict,
    train_encoder, valid_lengths,
)
from weightgen.models import build_model
from weightgen.sequences import corpus_sequences, from_tokens
from weightgen.tokens import tokenize
from weightgen.training import evaluate
from weightgen.zoo import expand, load_grid, train_member

P = 8
SMALL = dict(patch_size=P, latent_dim=8, hidden=64, depth=2, batch_size=256, lr=3e-3)


def synthetic_set(seeds=(0, 1, 2), archs=("mlp:hidden=12", "cnn1d:channels=4x6,norm=batch", "transformer:dim=8,depth=1,heads=2,patch=8")):
    items = []
    for arch in archs:
        family = arch.split(":")[0]
        for s in seeds:
            tokens = tokenize(build_model(arch, (40,), seed=s).state_dict(), P)
            items.append((tokens, family, "mnist1d", {"arch": arch, "seed": s}))
    return from_tokens(items)




@pytest.fixture(scope="module")
def trained():
    train, val = synthetic_set(seeds=(0, 1, 2, 3)), synthetic_set(seeds=(7,))
    model, history = train_encoder(train, EncoderConfig(**SMALL, steps=300), val=val)
    return model, history, train, val


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    grid = load_grid({"seeds": [0], "recipe": {"steps": 40, "eval_every": 40, "batch_size": 64},
                      "archs": ["mlp:hidden=16", "cnn1d:channels=4"], "tasks": ["mnist1d", "mnist1d:label_perm=1"]})
    members = expand(grid)
    for member in members:
        train_member(member, root)
    return root, [m.member_id for m in members]


def test_padding_decodes_to_exact_zero_and_is_ignored_on_input(trained):
    model, _, _, val = trained
    valid = valid_lengths(val.coords, P)
    assert (valid < P).any()  # biases of width 12 etc. leave padded tails
    mask = torch.arange(P)[None, :] < valid[:, None]
    with torch.no_grad():
        latents = model.encode(val.values, val.coords)
        out = model.decode(latents, val.coords)
        garbage = torch.where(mask, val.values, torch.nan)  # whatever sits in the padding must not matter
        assert torch.equal(model.encode(garbage, val.coords), latents)
    assert out.shape == val.values.shape and not out[~mask].signbit().any() and (out[~mask] == 0).all()
    decoded = decode_set(model, encode_set(model, val))
    assert torch.equal(decoded.values, out) and torch.equal(decoded.offsets, val.offsets)


def test_training_beats_data_variance_and_standardizes_latents(trained):
    model, history, train, val = trained
    mask = torch.arange(P)[None, :] < valid_lengths(val.coords, P)[:, None]
    variance = float(val.values[mask].var())
    assert [h["step"] for h in history][-1] == 300 and history[-1]["val_mse"] < history[0]["val_mse"]
    assert history[-1]["val_mse"] < 0.2 * variance, (history[-1], variance)
    z = encode_set(model, train, standardize=True).values
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-3) and torch.allclose(z.std(0), torch.ones(8), atol=1e-3)
    raw = encode_set(model, val).values
    assert torch.allclose(model.unstandardize(model.standardize(raw)), raw, atol=1e-5)
    assert torch.allclose(decode_set(model, encode_set(model, val, standardize=True), standardized=True).values,
                          decode_set(model, encode_set(model, val)).values, atol=1e-4)
    table = per_kind_mse(model, val)
    assert set(table.columns) == {"kind", "tokens", "mse", "rel_error"} and table["tokens"].sum() == len(val.values)
    weights = table[table["kind"].isin(["linear_weight", "conv_weight", "attn_in_weight"])]
    assert len(weights) == 3 and (weights["rel_error"] < 0.5).all(), table


def test_training_is_deterministic_for_a_seed():
    data = synthetic_set(seeds=(0,))
    runs = [train_encoder(data, EncoderConfig(**SMALL, steps=20, seed=3)) for _ in range(2)]
    other = train_encoder(data, EncoderConfig(**SMALL, steps=20, seed=4))[0]
    (a, ha), (b, hb) = runs
    assert [(h["step"], h["train_mse"]) for h in ha] == [(h["step"], h["train_mse"]) for h in hb]  # val_mse: NaN, no val set
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.encoder[0].weight, other.encoder[0].weight)


def test_noise_only_in_training_mode(trained):
    model, _, _, val = trained
    x, c = val.values[:64], val.coords[:64]
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.encode(x, c), model.encode(x, c))
        model.train()
        noisy = model.encode(x, c), model.encode(x, c)
        model.eval()
    assert not torch.equal(*noisy)


def test_save_load_round_trip(trained, tmp_path):
    model, _, _, val = trained
    folder = model.save(tmp_path / "enc")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json"}
    loaded = PatchAutoencoder.load(folder)
    assert loaded.config == model.config and torch.equal(loaded.latent_std, model.latent_std)
    with torch.no_grad():
        assert torch.equal(loaded(val.values, val.coords), model(val.values, val.coords))


def test_reconstruct_state_dict_keeps_layout_and_passthrough(trained):
    model, _, _, _ = trained
    state = build_model("cnn1d:channels=4x6,norm=batch", (40,), seed=9).state_dict()
    state["extra_half"] = torch.randn(3, 5).half()
    state["extra_f64"] = torch.randn(4, dtype=torch.float64)
    recon = reconstruct_state_dict(model, state, P)
    assert list(recon) == list(state)
    for k, v in state.items():
        assert recon[k].shape == v.shape and recon[k].dtype == v.dtype, k
    for k in ("features.1.num_batches_tracked", "extra_f64"):  # not patched: bit-identical
        assert torch.equal(recon[k], state[k])
    with pytest.raises(ValueError, match="patch_size"):
        reconstruct_state_dict(model, state, 16)


def test_fidelity_matches_a_hand_computation(tiny_corpus):
    root, members = tiny_corpus
    seqs = corpus_sequences(root, P)
    model, _ = train_encoder(seqs, EncoderConfig(**SMALL, steps=150))
    table = fidelity(model, root, members)
    assert list(table["member"]) == members and set(table["family"]) == {"mlp", "cnn1d"}
    assert {"arch", "task", "acc_original", "acc_reconstructed", "acc_kept", "weight_rel_error"} <= set(table.columns)
    # by hand, for the first member's last checkpoint
    row = table.iloc[0]
    state, config = Corpus(root).load(members[0], 40)
    test = load_task(config["task"]).test
    recon = reconstruct_state_dict(model, state)
    acc_o = evaluate(model_for_weights(state, config["arch"], config["task"]), test)[1]
    acc_r = evaluate(model_for_weights(recon, config["arch"], config["task"]), test)[1]
    err = math.sqrt(sum(float((recon[k] - v).double().pow(2).sum()) for k, v in state.items())
                    / sum(float(v.double().pow(2).sum()) for v in state.values()))
    assert row["step"] == 40 and row["acc_original"] == acc_o and row["acc_reconstructed"] == acc_r
    assert row["acc_kept"] == pytest.approx(acc_r / acc_o) and row["weight_rel_error"] == pytest.approx(err, rel=1e-6)
    assert (table["weight_rel_error"] < 1).all()
    with pytest.raises(ValueError, match="not in corpus"):
        fidelity(model, root, ["nobody"])
