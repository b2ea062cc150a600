"""Tokenize a state_dict into fixed-size patches, and back, bit for bit.

A network is treated like a video. Each tensor of the state_dict is a *frame*; each frame is seen
as a 2-D matrix of *rows* (output units: ``shape[0]`` rows of ``numel / shape[0]`` columns; a 1-D
tensor is one row, a 0-D scalar one row of length 1, an empty tensor no rows); each row is cut
into *patches* of ``patch_size`` values, the last one zero-padded. Patches never straddle rows,
so one token always belongs to one output unit.

Every patch carries integer coordinates (:data:`COORD_COLUMNS`):

``tensor`` index of its tensor in the state_dict, ``layer`` index of the tensor's module prefix
(order of first appearance), ``kind`` index into :data:`PARAM_KINDS`, ``row`` and ``chunk`` its
place in the 2-D view, ``rows``/``cols``/``ndim`` the frame's size, so a model can tell a padded tail.

fp32/fp16/bf16 tensors are patched as raw float32 values (fp16/bf16 widen exactly, NaN payloads
included); anything else (int64 counters, bool masks, float64 buffers) is passed through verbatim.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save as save_bytes

from weightgen.io import atomic_write_bytes

PARAM_KINDS: tuple[str, ...] = (
    "linear_weight", "linear_bias", "conv_weight", "conv_bias", "norm_weight", "norm_bias",
    "norm_running_mean", "norm_running_var", "embedding", "pos_embedding",
    "attn_in_weight", "attn_in_bias", "attn_out_weight", "attn_out_bias", "scalar", "other",
)  # fmt: skip
KIND_ID = {k: i for i, k in enumerate(PARAM_KINDS)}
COORD_COLUMNS = ("tensor", "layer", "kind", "row", "chunk", "rows", "cols", "ndim")
PATCHED_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FORMAT = "weightgen.tokens/1"

# Name parts that say what a module is; matched against the dotted name's module parts.
_NORM = re.compile(r".*norm.*|(ln|bn|gn)(_?\d+|_f)?", re.I)
_ATTN = re.compile(r".*(attn|attention|mha).*|out_proj", re.I)  # out_proj: nn.MultiheadAttention
_ATTN_IN = {"query", "key", "value", "q", "k", "v", "q_proj", "k_proj", "v_proj", "qkv", "in_proj",
            "to_q", "to_k", "to_v", "to_qkv", "c_attn"}  # fmt: skip
_ATTN_OUT = {"out_proj", "o_proj", "c_proj", "to_out", "proj", "o", "output"}
_POS = {"pos_embedding", "pos_emb", "pos_embed", "position_embedding", "position_embeddings",
        "positional_embedding", "wpe"}  # fmt: skip
_EMBED = re.compile(r".*embed.*|.*_emb|emb|wte|tok_emb", re.I)
_BUFFERS = {"num_batches_tracked", "position_ids", "token_type_ids"}  # counters/ids, not weights


def param_kind(name: str, shape: tuple[int, ...]) -> str:
    """Label a state_dict entry: name heuristics first, then its shape."""
    *modules, leaf = name.lower().split(".")
    ndim = len(shape)
    if leaf in ("running_mean", "running_var"):
        return f"norm_{leaf}"
    if leaf in _BUFFERS:
        return "other"
    if leaf in ("in_proj_weight", "in_proj_bias"):
        return f"attn_in_{leaf[8:]}"
    if leaf in _POS or any(m in _POS for m in modules):
        return "pos_embedding"
    if leaf in ("weight", "bias"):
        if any(_NORM.fullmatch(m) for m in modules):
            return f"norm_{leaf}"
        attn = next((i for i, m in enumerate(modules) if _ATTN.fullmatch(m)), None)
        if attn is not None:
            inner = set(modules[attn:])  # only parts at or below the attention module
            if inner & _ATTN_IN:
                return f"attn_in_{leaf}"
            if inner & _ATTN_OUT:
                return f"attn_out_{leaf}"
        if any(_EMBED.fullmatch(m) for m in modules) and ndim == 2:
            return "embedding"
        if any("conv" in m for m in modules):
            return f"conv_{leaf}"
        if leaf == "weight" and ndim == 1:  # Linear weights are 2-D; a 1-D weight scales (a norm)
            return "norm_weight"
    elif _EMBED.fullmatch(leaf) and ndim == 2:
        return "embedding"
    return {0: "scalar", 1: "linear_bias", 2: "linear_weight"}.get(ndim, "conv_weight" if ndim <= 5 else "other")


@dataclass(frozen=True)
class TensorLayout:
    """Where one state_dict entry lives in the token sequence (one per entry, in order).

    Passthrough entries have a layout too (``num_patches == 0``) so that key order survives.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str
    layer: int
    rows: int
    cols: int
    first_patch: int
    num_patches: int
    scale: float  # for normalisation only; the exact round trip never uses it

    @property
    def is_passthrough(self) -> bool:
        return self.dtype not in PATCHED_DTYPES


@dataclass
class Tokens:
    """Patches, their coordinates and the layout needed to put the state_dict back together."""

    patch_size: int
    patches: torch.Tensor  # [N, patch_size] float32, raw values, zero-padded row tails
    coords: torch.Tensor  # [N, len(COORD_COLUMNS)] int64
    depth: torch.Tensor  # [N] float32, layer / max(1, num_layers - 1)
    layout: list[TensorLayout]
    passthrough: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError if patches/coords/depth/passthrough do not fit the layout."""
        n = sum(lay.num_patches for lay in self.layout)
        expect = {"patches": (n, self.patch_size), "coords": (n, len(COORD_COLUMNS)), "depth": (n,)}
        for field, shape in expect.items():
            got = getattr(self, field)
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
                got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                raise ValueError(f"Tokens.{field} must have shape {shape} for this layout, got {got_shape}")
        if self.patches.dtype != torch.float32 or self.coords.dtype != torch.int64:
            got = f"{self.patches.dtype}, {self.coords.dtype}"
            raise ValueError(f"Tokens needs float32 patches and int64 coords, got {got}")
        missing = [lay.name for lay in self.layout if lay.is_passthrough and lay.name not in self.passthrough]
        if missing:
            raise ValueError(f"Tokens.passthrough is missing entries {missing}")

    def __len__(self) -> int:
        return self.patches.shape[0]

    def coords_frame(self) -> pd.DataFrame:
        """One row per patch: the coordinate columns, depth, kind name and tensor name."""
        c = self.coords.numpy()
        df = pd.DataFrame(c, columns=list(COORD_COLUMNS))
        df["depth"] = self.depth.numpy()
        df["kind_name"] = pd.Categorical.from_codes(c[:, 2], categories=list(PARAM_KINDS))
        df["tensor_name"] = pd.Categorical.from_codes(c[:, 0], categories=[lay.name for lay in self.layout])
        return df

    def patch_scales(self) -> torch.Tensor:
        scales = torch.tensor([lay.scale for lay in self.layout], dtype=torch.float32)
        return scales[self.coords[:, 0].cpu()].to(self.patches.device)

    def normalized(self) -> torch.Tensor:
        return self.patches / self.patch_scales()[:, None]

    def with_patches(self, patches: torch.Tensor) -> Tokens:
        """Same layout and coordinates, new patch values (e.g. generated ones)."""
        if not isinstance(patches, torch.Tensor) or not patches.is_floating_point():
            raise ValueError(f"patches must be a floating-point torch.Tensor, got {patches!r:.80}")
        if tuple(patches.shape) != tuple(self.patches.shape):
            raise ValueError(f"patches must have shape {tuple(self.patches.shape)}, got {tuple(patches.shape)}")
        return dataclasses.replace(self, patches=patches.detach().to(torch.float32))

    def save(self, path: str | os.PathLike) -> None:
        """One .safetensors file; layout and patch_size go in its metadata. Written atomically."""
        path = Path(path)
        tensors = {"patches": self.patches, "coords": self.coords, "depth": self.depth}
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        tensors |= {f"passthrough/{k}": v.detach().cpu().clone() for k, v in self.passthrough.items()}
        meta = {
            "format": _FORMAT,
            "patch_size": str(self.patch_size),
            "layout": json.dumps([dataclasses.asdict(lay) for lay in self.layout]),
        }
        atomic_write_bytes(path, save_bytes(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokens:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a weightgen tokens file (format={meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        layout = [TensorLayout(**{**d, "shape": tuple(d["shape"])}) for d in json.loads(meta["layout"])]
        prefix = "passthrough/"
        passthrough = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        patches, coords, depth = tensors["patches"], tensors["coords"], tensors["depth"]
        return cls(int(meta["patch_size"]), patches, coords, depth, layout, passthrough)


def _chunks(cols: int, patch_size: int) -> int:
    return -(-cols // patch_size)


def _view_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    numel = math.prod(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return (1, shape[0]) if numel else (0, 0)
    return (shape[0] if numel else 0), math.prod(shape[1:])


def _scale(t: torch.Tensor, cols: int) -> float:
    fallback = 1.0 / math.sqrt(cols) if cols > 0 else 1.0
    if t.numel() < 2:
        return fallback
    std = float(t.detach().to(torch.float32).std())  # fp16 would overflow its own std
    return std if math.isfinite(std) and std > 0 else fallback


def _to_f32(t: torch.Tensor) -> torch.Tensor:
    """Widen exactly. A plain .float() quiets signalling NaNs, changing their bits."""
    if t.dtype == torch.float32:
        return t
    if t.dtype == torch.bfloat16:  # bf16 is the top half of an fp32
        return (t.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
    out = t.float()
    nan = t.isnan()
    if nan.any():
        b = t.view(torch.int16)[nan].to(torch.int32)
        out.view(torch.int32)[nan] = (b & -32768) << 16 | 0x7F800000 | (b & 0x3FF) << 13
    return out


def _from_f32(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Narrow with round-to-nearest (exact for values that came from dtype), NaN bits kept."""
    if dtype == torch.float32:
        return x.clone(memory_format=torch.contiguous_format)
    out = x.to(dtype, memory_format=torch.contiguous_format)
    nan = x.isnan()
    if nan.any():
        b = x[nan].view(torch.int32)
        if dtype == torch.bfloat16:
            h = b >> 16
            h = torch.where((h & 0x7F) == 0, h | 0x40, h)  # payload only in dropped bits: stay NaN
        else:
            m = (b >> 13) & 0x3FF
            h = (b >> 16) & -32768 | 0x7C00 | torch.where(m == 0, 0x200, m)
        out.view(torch.int16)[nan] = h.to(torch.int16)
    return out


def tokenize(state_dict: Mapping[str, torch.Tensor], patch_size: int) -> Tokens:
    """Cut every fp32/fp16/bf16 tensor into row patches; pass other dtypes through verbatim."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be an int >= 1, got {patch_size!r}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of name -> tensor, got {type(state_dict).__name__}")
    layout, passthrough, prefixes, first = [], {}, {}, 0
    for name, t in state_dict.items():
        if not isinstance(name, str):
            raise ValueError(f"state_dict keys must be str, got {name!r}")
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"state_dict[{name!r}] is a {type(t).__name__}, not a torch.Tensor")
        shape, dtype = tuple(t.shape), str(t.dtype).removeprefix("torch.")
        rows, cols = _view_2d(shape)
        patched = dtype in PATCHED_DTYPES
        n = rows * _chunks(cols, patch_size) if patched else 0
        if not patched:
            passthrough[name] = t.detach()
        layer = prefixes.setdefault(name.rpartition(".")[0], len(prefixes))
        scale = _scale(t, cols) if patched else 1.0
        layout.append(TensorLayout(name, shape, dtype, param_kind(name, shape), layer, rows, cols, first, n, scale))
        first += n

    # One buffer; each tensor's 2-D view is copied into its padded slots and only the row tails
    # are zeroed: the same result as F.pad + view + cat, without the two intermediate copies.
    patches = torch.empty(first, patch_size, dtype=torch.float32)
    for lay, t in zip(layout, state_dict.values()):
        if lay.num_patches:
            dst = patches[lay.first_patch : lay.first_patch + lay.num_patches].view(lay.rows, -1)
            dst[:, : lay.cols].copy_(_to_f32(t.detach().reshape(lay.rows, lay.cols)))
            dst[:, lay.cols :].zero_()

    # Coordinates: per-tensor constants repeated per patch, then row/chunk from the local index.
    per_tensor = torch.tensor(
        [[i, lay.layer, KIND_ID[lay.kind], 0, 0, lay.rows, lay.cols, len(lay.shape)] for i, lay in enumerate(layout)],
        dtype=torch.int64,
    ).reshape(-1, len(COORD_COLUMNS))
    counts = torch.tensor([lay.num_patches for lay in layout], dtype=torch.int64)
    coords = per_tensor.repeat_interleave(counts, dim=0)
    tensor = coords[:, 0]
    firsts = torch.tensor([lay.first_patch for lay in layout], dtype=torch.int64)
    chunks = torch.tensor([_chunks(lay.cols, patch_size) for lay in layout], dtype=torch.int64)
    local, per_row = torch.arange(first) - firsts[tensor], chunks[tensor]
    coords[:, 3] = local // per_row
    coords[:, 4] = local % per_row
    depth = coords[:, 1].to(torch.float32) / max(1, len(prefixes) - 1)
    return Tokens(patch_size, patches, coords, depth, layout, passthrough)


def detokenize(tokens: Tokens) -> dict[str, torch.Tensor]:
    """The original state_dict: same keys, order, shapes, dtypes and bits. Padding is ignored."""
    tokens.validate()  # fields may have been reassigned since construction
    out = {}
    for lay in tokens.layout:
        if lay.is_passthrough:
            out[lay.name] = tokens.passthrough[lay.name].clone()
            continue
        src = tokens.patches[lay.first_patch : lay.first_patch + lay.num_patches]
        src = src.reshape(lay.rows, -1)[:, : lay.cols] if lay.rows else src.new_zeros(0, 0)
        out[lay.name] = _from_f32(src, PATCHED_DTYPES[lay.dtype]).reshape(lay.shape)
    return out


def from_normalized(tokens: Tokens, normalized: torch.Tensor) -> dict[str, torch.Tensor]:
    """Undo :meth:`Tokens.normalized` on (generated) values and detokenize. Approximate by nature."""
    if not isinstance(normalized, torch.Tensor):
        raise ValueError(f"normalized must be a torch.Tensor, got {type(normalized).__name__}")
    if tuple(normalized.shape) != tuple(tokens.patches.shape):
        raise ValueError(f"normalized must have shape {tuple(tokens.patches.shape)}, got {tuple(normalized.shape)}")
    return detokenize(tokens.with_patches(normalized.float() * tokens.patch_scales().to(normalized.device)[:, None]))


_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float64: torch.int64}


def same_state_dict(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """True when keys (in order), shapes, dtypes and every bit agree — NaN payloads and -0.0 included."""
    if list(a) != list(b):
        return False

    def bits(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().view(_INT_VIEW[t.dtype]) if t.dtype in _INT_VIEW else t

    return all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(bits(a[k]), bits(b[k])) for k in a)
