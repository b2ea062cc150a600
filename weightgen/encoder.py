"""The latent encoder: a small patch autoencoder in the p-diff style (stage 2 of the pipeline).

Every token is one fan-in-normalised patch of ``patch_size`` values (see :mod:`weightgen.sequences`).
An MLP maps it to ``latent_dim`` numbers and a mirror MLP maps them back. Both sides are told the
token's parameter kind (a learned embedding) and how many of its values are real (a row's last patch
is zero-padded), so one small network serves biases, norms and kernels alike; padded positions are
masked to exactly 0 on the way out and ignored by the loss.

As in p-diff, training adds a little noise to the inputs and to the latents (relative to the
latents' own spread) so the decoder learns a neighbourhood of each latent, not a point: the DiT's
samples are never exact, and a decoder that is smooth around the data forgives that. Noise is only
ever added in training mode.

After training, per-dimension latent mean/std over the training set are stored as buffers, so the
DiT can work on ~unit-variance latents through :meth:`PatchAutoencoder.standardize`.
A model's worth is judged by :func:`fidelity`: test accuracy of networks rebuilt from its
reconstructions, not MSE alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from weightgen.sequences import SequenceSet, denormalize, normalize
from weightgen.tokens import PARAM_KINDS, tokenize

_KIND_DIM = 16  # size of the learned parameter-kind embedding fed to both sides


@dataclass
class EncoderConfig:
    patch_size: int = 32
    latent_dim: int = 8
    hidden: int = 256
    depth: int = 2  # hidden layers per side
    input_noise: float = 0.001  # absolute, in normalised units
    latent_noise: float = 0.05  # relative to each latent dim's std over the batch
    lr: float = 1e-3
    batch_size: int = 4096
    steps: int = 3000
    seed: int = 0
    kind_embedding: bool = True


def valid_lengths(coords: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[T] how many values of each patch are real: ``min(P, cols - chunk * P)``."""
    return (coords[:, 6] - coords[:, 4] * patch_size).clamp(0, patch_size)


def valid_mask(coords: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[T, P] True where a patch holds a real value, False on its zero padding."""
    valid = valid_lengths(coords, patch_size)
    return torch.arange(patch_size, device=coords.device)[None, :] < valid[:, None]


def _mlp(n_in: int, hidden: int, depth: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        # LayerNorm keeps training stable despite rare patches ~40x the typical scale.
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.SiLU()]
    layers.append(nn.Linear(hidden if depth else n_in, n_out))
    return nn.Sequential(*layers)


class PatchAutoencoder(nn.Module):
    """Patch ↔ latent. ``coords`` are the token coordinates (:data:`weightgen.tokens.COORD_COLUMNS`)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        c = config
        cond = (_KIND_DIM if c.kind_embedding else 0) + 1  # kind embedding + valid fraction
        self.kind_emb = nn.Embedding(len(PARAM_KINDS), _KIND_DIM) if c.kind_embedding else None
        self.encoder = _mlp(c.patch_size + cond, c.hidden, c.depth, c.latent_dim)
        self.decoder = _mlp(c.latent_dim + cond, c.hidden, c.depth, c.patch_size)
        self.register_buffer("latent_mean", torch.zeros(c.latent_dim))
        self.register_buffer("latent_std", torch.ones(c.latent_dim))

    def _cond(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.config.patch_size
        mask = valid_mask(coords, p)
        parts = [mask.sum(dim=1, keepdim=True).float() / p]  # the valid fraction
        if self.kind_emb is not None:
            parts.insert(0, self.kind_emb(coords[:, 2]))
        return torch.cat(parts, dim=1), mask

    def encode(self, values: torch.Tensor, coords: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[T, P] normalised patches → [T, latent_dim] raw latents (noisy in training mode)."""
        cond, mask = self._cond(coords)
        x = torch.where(mask, values, 0.0)  # padding carries no information; never let stray values (even NaN) in
        if self.training and self.config.input_noise > 0:
            x = x + self.config.input_noise * torch.randn(x.shape, generator=generator, device=x.device) * mask
        z = self.encoder(torch.cat([x, cond], dim=1))
        if self.training and self.config.latent_noise > 0:
            spread = z.detach().std(dim=0, keepdim=True) if len(z) > 1 else z.detach().abs()
            z = z + self.config.latent_noise * spread * torch.randn(z.shape, generator=generator, device=z.device)
        return z

    def decode(self, latents: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """[T, latent_dim] raw latents → [T, P] normalised patches; padding positions exactly 0."""
        cond, mask = self._cond(coords)
        return torch.where(mask, self.decoder(torch.cat([latents, cond], dim=1)), 0.0)  # +0.0, not x * 0 = -0.0

    def forward(self, values: torch.Tensor, coords: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(values, coords, generator), coords)

    def standardize(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def unstandardize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean

    def save(self, path: str | os.PathLike) -> Path:
        """A hub-style folder: model.safetensors + config.json (written atomically)."""
        from weightgen.checkpoint import save_checkpoint

        config = {"format": "weightgen.encoder/1", "encoder": dataclasses.asdict(self.config)}
        return save_checkpoint(path, self.state_dict(), config)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchAutoencoder":
        from weightgen.checkpoint import CheckpointError, load_checkpoint

        state, config = load_checkpoint(path)
        if config.get("format") != "weightgen.encoder/1":
            raise CheckpointError(f"{path}: not a weightgen encoder folder (format={config.get('format')!r})")
        model = cls(EncoderConfig(**config["encoder"]))
        model.load_state_dict(state, strict=True)
        return model.eval()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, coords: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean squared error over real (non-padding) values only."""
    mask = torch.arange(patch_size, device=pred.device)[None, :] < valid_lengths(coords, patch_size)[:, None]
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def _check(seqs: SequenceSet, width: int) -> None:
    if seqs.values.shape[1] != width:
        raise ValueError(f"expected values of width {width}, got {tuple(seqs.values.shape)}")


@torch.no_grad()
def _batched(fn, seqs: SequenceSet | tuple[torch.Tensor, torch.Tensor], batch: int = 65536) -> torch.Tensor:
    """``fn(values, coords)`` over row batches (bounded memory), concatenated."""
    values, coords = (seqs.values, seqs.coords) if isinstance(seqs, SequenceSet) else seqs
    parts = [fn(values[i : i + batch], coords[i : i + batch]) for i in range(0, len(values), batch)]
    return torch.cat(parts) if parts else values.new_zeros(0, 0)


def eval_mse(model: PatchAutoencoder, seqs: SequenceSet) -> float:
    was = model.training
    model.eval()
    recon = _batched(model, seqs)
    model.train(was)
    return float(masked_mse(recon, seqs.values, seqs.coords, model.config.patch_size))


def train_encoder(
    train: SequenceSet,
    config: EncoderConfig,
    val: SequenceSet | None = None,
    on_step: Callable[[dict], None] | None = None,
    eval_every: int | None = None,
) -> tuple[PatchAutoencoder, list[dict]]:
    """Train a patch autoencoder on ``train`` tokens; returns it (eval mode) and its history.

    History rows ``{step, train_mse, val_mse}`` (masked MSE in normalised units; train_mse is the mean
    training loss since the last row, noise included). Deterministic for ``config.seed``.
    """
    _check(train, config.patch_size)
    if len(train.values) == 0:
        raise ValueError("train_encoder needs a non-empty training set")
    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = PatchAutoencoder(config)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    # Cosine decay to 10%: the last steps at a small LR buy a noticeably lower reconstruction error.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / max(config.steps, 1))))
    eval_every = eval_every or max(1, config.steps // 20)
    n, bs = len(train.values), min(config.batch_size, len(train.values))
    history, running, count, order, pos = [], 0.0, 0, torch.randperm(n, generator=gen), 0
    model.train()
    for step in range(1, config.steps + 1):
        if pos + bs > n:  # a fresh permutation each epoch
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        x, c = train.values[idx], train.coords[idx]
        loss = masked_mse(model(x, c, gen), x, c, config.patch_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running, count = running + loss.item(), count + 1
        if step % eval_every == 0 or step == config.steps:
            row = {"step": step, "train_mse": running / count,
                   "val_mse": eval_mse(model, val) if val is not None and len(val.values) else float("nan")}
            history.append(row)
            running, count = 0.0, 0
            if on_step:
                on_step(row)
    model.eval()
    latents = _batched(model.encode, train)
    model.latent_mean.copy_(latents.mean(0))
    model.latent_std.copy_(latents.std(0).clamp(min=1e-6) if len(latents) > 1 else torch.ones_like(model.latent_std))
    return model, history


def encode_set(model: PatchAutoencoder, seqs: SequenceSet, standardize: bool = False) -> SequenceSet:
    """Same sequences, values replaced by latents (raw, or standardised for the DiT)."""
    _check(seqs, model.config.patch_size)
    model.eval()
    z = _batched(model.encode, seqs)
    return seqs.with_values(model.standardize(z) if standardize else z)


def decode_set(model: PatchAutoencoder, seqs: SequenceSet, standardized: bool = False) -> SequenceSet:
    """Same sequences, latents (raw, or standardised) replaced by decoded normalised patches."""
    _check(seqs, model.config.latent_dim)
    model.eval()
    fn = (lambda z, c: model.decode(model.unstandardize(z), c)) if standardized else model.decode
    return seqs.with_values(_batched(fn, seqs))


def reconstruct_state_dict(model: PatchAutoencoder, state_dict: dict, patch_size: int | None = None) -> dict:
    """tokenize → normalise → encode → decode → denormalise → detokenize. Keys, shapes, dtypes kept;
    passthrough entries (int counters, float64 buffers) come back untouched."""
    patch_size = patch_size or model.config.patch_size
    if patch_size != model.config.patch_size:
        raise ValueError(f"patch_size {patch_size} does not match the encoder's {model.config.patch_size}")
    tokens = tokenize(state_dict, patch_size)
    values = normalize(tokens)
    model.eval()
    recon = _batched(model, (values, tokens.coords)) if len(values) else values
    return denormalize(tokens, recon)


def per_kind_mse(model: PatchAutoencoder, seqs: SequenceSet) -> pd.DataFrame:
    """Per parameter kind: tokens, masked MSE (normalised units) and relative error ‖x̂−x‖/‖x‖."""
    model.eval()
    recon = _batched(model, seqs)
    p = model.config.patch_size
    mask = torch.arange(p)[None, :] < valid_lengths(seqs.coords, p)[:, None]
    err, ref = ((recon - seqs.values) ** 2 * mask).sum(1), (seqs.values**2 * mask).sum(1)
    n, kinds = mask.sum(1), seqs.coords[:, 2]
    rows = []
    for k in kinds.unique().tolist():
        sel = kinds == k
        rows.append({"kind": PARAM_KINDS[k], "tokens": int(sel.sum()), "mse": float(err[sel].sum() / n[sel].sum().clamp(min=1)),
                     # undefined (NaN) for all-zero data, e.g. freshly initialised biases
                     "rel_error": float(err[sel].sum().sqrt() / ref[sel].sum().sqrt()) if ref[sel].sum() > 0 else float("nan")})
    return pd.DataFrame(rows, columns=["kind", "tokens", "mse", "rel_error"]).sort_values("tokens", ascending=False, ignore_index=True)


def weight_rel_error(original: dict, recon: dict) -> float:
    """‖ŵ−w‖/‖w‖ over every floating-point tensor of a state_dict."""
    num = den = 0.0
    for k, v in original.items():
        if v.is_floating_point():
            num += float(((recon[k].double() - v.double()) ** 2).sum())
            den += float((v.double() ** 2).sum())
    return math.sqrt(num / den) if den > 0 else 0.0


def fidelity(model: PatchAutoencoder, corpus_root, members: list[str], step: int | None = None) -> pd.DataFrame:
    """Test accuracy of each member's checkpoint (default: its last step) before and after reconstruction."""
    from weightgen.checkpoint import model_for_weights
    from weightgen.corpus import Corpus
    from weightgen.data import load_task
    from weightgen.specs import parse_arch, parse_task
    from weightgen.training import evaluate

    corpus = Corpus(corpus_root)
    frame = corpus.require_nonempty()
    rows = []
    for member in members:
        steps = frame.loc[frame["member"] == member, "step"]
        if steps.empty:
            raise ValueError(f"member {member!r} is not in corpus {corpus_root}")
        s = int(steps.max()) if step is None else step
        state, config = corpus.load(member, s)
        arch, task = parse_arch(config["arch"]), parse_task(config["task"])
        recon = reconstruct_state_dict(model, state)
        test = load_task(task).test
        _, acc_o = evaluate(model_for_weights(state, arch, task), test)
        _, acc_r = evaluate(model_for_weights(recon, arch, task), test)
        rows.append({"member": member, "family": arch.family, "arch": arch.to_string(), "task": task.to_string(),
                     "step": s, "acc_original": acc_o, "acc_reconstructed": acc_r,
                     "acc_kept": acc_r / acc_o if acc_o > 0 else float("nan"),
                     "weight_rel_error": weight_rel_error(state, recon)})
    return pd.DataFrame(rows)
