"""The diffusion process, kept apart from the network that denoises: cosine schedule, v-loss, DDIM.

Hand-written (~100 lines) rather than taken from ``diffusers``: we need four small functions over
*masked, variable-length* sequences, and ``diffusers`` would add a large dependency (and its
scheduler API assumes fixed image shapes) for no gain.

The network predicts **v** = sqrt(a)·eps − sqrt(1−a)·x0 (Salimans & Ho 2022), not eps: under the
cosine schedule a → 0 near t = T, where an eps-prediction gives a useless x0 estimate
(x0 = (x − sqrt(1−a)·eps)/sqrt(a) divides by ~0); v stays well-scaled at both ends, its
target has unit variance for unit-variance data, and DDIM steps read x0 and eps off it directly.

``a`` below is ``alphas_cumprod[t]`` (ᾱ_t). Padding tokens (``mask`` False) are kept at exactly
zero by the sampler and excluded from the loss.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

NUM_TRAIN_STEPS = 1000


def cosine_alphas_cumprod(steps: int = NUM_TRAIN_STEPS, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """[steps] ᾱ_t of Nichol & Dhariwal (2021), betas clipped at ``max_beta``; float64."""
    f = lambda u: math.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


ALPHAS_CUMPROD = cosine_alphas_cumprod()


def _a(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t for integer ``t`` [B], shaped [B, 1, 1] to broadcast over ``like`` [B, L, D]."""
    return ALPHAS_CUMPROD.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·noise."""
    a = _a(t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def v_target(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    a = _a(t, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, denominator=None) -> torch.Tensor:
    """Squared error summed over real tokens (``mask`` [B, L] True), divided by ``denominator``
    (default: number of real values, i.e. the mean). Pass a global count to weight every token
    of a batch split over processes the same."""
    sq = ((pred - target) ** 2).sum(-1) * mask  # [B, L]
    if denominator is None:
        denominator = mask.sum() * pred.shape[-1]
    return sq.sum() / denominator


def training_loss(model_fn: Callable, x0, t, noise, mask, denominator=None, **cond) -> torch.Tensor:
    """v-prediction loss of ``model_fn(x_t, t, mask=mask, **cond)`` on real tokens."""
    xt = q_sample(x0, t, noise) * mask[..., None]
    return masked_mse(model_fn(xt, t, mask=mask, **cond), v_target(x0, t, noise), mask, denominator)


@torch.no_grad()
def sample(
    model_fn: Callable,
    shape: tuple[int, int, int],
    mask: torch.Tensor | None = None,
    cond: dict | None = None,
    steps: int = 50,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    device=None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from pure noise to x0 [B, L, D] in ``steps`` evenly spaced steps.

    The start is ``noise`` when given (shape ``shape``), else a draw from ``generator``.

    ``model_fn(x, t, mask=mask, drop_task=bool[B] | None, **cond)`` returns v. With
    ``guidance_scale`` ≠ 1 it is called twice per step, with the task and with it dropped
    (classifier-free guidance: v = v_uncond + g·(v_cond − v_uncond)).
    """
    B, L, D = shape
    cond = cond or {}
    mask = torch.ones(B, L, dtype=torch.bool, device=device) if mask is None else mask
    m = mask[..., None].to(torch.float32)
    x = (torch.randn(shape, generator=generator, device=device) if noise is None else noise.to(device)) * m  # [B, L, D]
    ts = torch.linspace(NUM_TRAIN_STEPS - 1, 0, steps).round().long().tolist()
    keep, drop = torch.zeros(B, dtype=torch.bool, device=x.device), torch.ones(B, dtype=torch.bool, device=x.device)
    for i, step in enumerate(ts):
        t = torch.full((B,), step, dtype=torch.long, device=x.device)
        v = model_fn(x, t, mask=mask, drop_task=keep, **cond)
        if guidance_scale != 1.0:
            v_uncond = model_fn(x, t, mask=mask, drop_task=drop, **cond)
            v = v_uncond + guidance_scale * (v - v_uncond)
        a = _a(t, x)
        a_prev = _a(torch.full_like(t, ts[i + 1]), x) if i + 1 < len(ts) else torch.ones_like(a)
        x0 = a.sqrt() * x - (1 - a).sqrt() * v  # [B, L, D]
        eps = (1 - a).sqrt() * x + a.sqrt() * v
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps) * m
    return x
