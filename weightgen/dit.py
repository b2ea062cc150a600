"""A diffusion transformer over latent patch sequences, after facebookresearch/DiT (adaLN-Zero).

A sequence is a bag of tokens, one per weight patch, with no positional index: *where* a token
sits in the network enters only through its coordinate embedding (layer, kind, chunk as learned
embeddings; row, log rows, log cols, ndim and relative depth as sinusoidal features), so one
model serves many widths and depths. Every block is conditioned through adaLN-Zero on
c = timestep embedding + family embedding + task embedding; the task is swapped for a learned
null embedding with probability ``cond_dropout`` in training (classifier-free guidance).
Padding tokens (``mask`` False) are never attended to and come out as zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weightgen.dit_presets import DIT_PRESETS  # torch-free, so the CLI can list them without importing torch
from weightgen.tokens import PARAM_KINDS


@dataclass
class DiTConfig:
    latent_dim: int
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    max_layers: int = 64  # layer / chunk indices beyond these share the last embedding
    max_chunks: int = 64
    task_features: int = 233
    num_families: int = 4
    cond_dropout: float = 0.1
    # per-token output: None = latent_dim (a denoiser); a student that writes weights directly gives
    # normalised patches instead (weightgen.dit_distill, output "patches"), so no decoder runs
    out_dim: int | None = None
    # > 0: each block's feed-forward is this many experts, a token routed to one by a hash of its position
    # (HashFeedForward): parameters grow with the experts, a token's FLOPs do not
    experts: int = 0


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sinusoidal(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[...] float → [..., dim] cos/sin features (the DiT/ADM timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values[..., None].float() * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.SiLU(), nn.Linear(d_out, d_out))


#################################################################################
#                        Embedding layers: timestep, coordinates                #
#################################################################################


class CoordEmbedder(nn.Module):
    """Token coordinates [B, L, 8] + depth [B, L] → [B, L, dim]."""

    FREQ = 32  # sinusoidal features per continuous coordinate

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.max_layers, self.max_chunks = cfg.max_layers, cfg.max_chunks
        self.layer = nn.Embedding(cfg.max_layers, cfg.dim)
        self.kind = nn.Embedding(len(PARAM_KINDS), cfg.dim)
        self.chunk = nn.Embedding(cfg.max_chunks, cfg.dim)
        self.continuous = mlp(5 * self.FREQ, cfg.dim)

    def forward(self, coords, depth):
        # coords columns: tensor, layer, kind, row, chunk, rows, cols, ndim
        layer = coords[..., 1].clamp(0, self.max_layers - 1)
        chunk = coords[..., 4].clamp(0, self.max_chunks - 1)
        scalars = torch.stack([
            coords[..., 3].float(),                                 # row
            100 * coords[..., 5].clamp(min=1).float().log(),        # log rows
            100 * coords[..., 6].clamp(min=1).float().log(),        # log cols
            100 * coords[..., 7].float(),                           # ndim
            1000 * depth.float(),                                   # relative depth in [0, 1]
        ], dim=-1)  # fmt: skip  # [B, L, 5], each roughly in [0, 1000]
        feats = sinusoidal(scalars, self.FREQ).flatten(-2)  # [B, L, 5 * FREQ]
        return self.layer(layer) + self.kind(coords[..., 2]) + self.chunk(chunk) + self.continuous(feats)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = mlp(freq_dim, dim)

    def forward(self, t):
        return self.mlp(sinusoidal(t, self.freq_dim))  # [B, dim]


#################################################################################
#                                 Core DiT Model                                #
#################################################################################


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # 3 × [B, H, L, hd]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # keys: True = attend
        return self.proj(x.transpose(1, 2).reshape(B, L, D))


class HashFeedForward(nn.Module):
    """``experts`` feed-forwards; each token goes through the one its route names (Roller et al. 2021, hash layers).

    The route is fixed by the token's position, not learnt, so no expert goes unused and no balancing loss is
    needed; each expert runs on its own tokens only, so a token costs one feed-forward's FLOPs (what
    ``FlopCounterMode`` counts) while the parameters, what a generator can store, grow with the experts.
    """

    def __init__(self, dim: int, hidden: int, experts: int):
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.empty(experts, dim, hidden)), nn.Parameter(torch.empty(experts, hidden, dim))
        self.b1, self.b2 = nn.Parameter(torch.zeros(experts, hidden)), nn.Parameter(torch.zeros(experts, dim))
        for w in (*self.w1, *self.w2):  # each expert as nn.Linear's xavier init would make it
            nn.init.xavier_uniform_(w)

    def forward(self, x, route):
        # tokens sorted by expert (stable: each expert's rows keep their order), so every expert reads one contiguous
        # slice and the step synchronises with the device once (the counts), not once per expert
        flat, route = x.reshape(-1, x.shape[-1]), route.reshape(-1)
        order = torch.argsort(route, stable=True)
        counts = torch.bincount(route, minlength=self.w1.shape[0]).tolist()
        outs = [F.gelu(rows @ self.w1[e] + self.b1[e], approximate="tanh") @ self.w2[e] + self.b2[e]
                for e, rows in enumerate(flat[order].split(counts))]
        out = torch.empty_like(flat)
        out[order] = torch.cat(outs)
        return out.view(x.shape)


def hash_route(coords: torch.Tensor, experts: int) -> torch.Tensor:
    """[B, L] expert of each token: a hash of its (layer, kind, row), so a position always takes the same one."""
    key = coords[..., 1] * 1_000_003 + coords[..., 2] * 10_007 + coords[..., 3]
    return key % experts


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, experts: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = (HashFeedForward(dim, hidden, experts) if experts else
                    nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c, mask, route=None):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), mask)
        h = modulate(self.norm2(x), shift_mlp, scale_mlp)
        x = x + gate_mlp.unsqueeze(1) * (self.mlp(h, route) if route is not None else self.mlp(h))
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.x_embedder = nn.Linear(cfg.latent_dim, cfg.dim)
        self.coord_embedder = CoordEmbedder(cfg)
        self.t_embedder = TimestepEmbedder(cfg.dim)
        self.family_embedder = nn.Embedding(cfg.num_families, cfg.dim)
        self.task_embedder = mlp(cfg.task_features, cfg.dim)
        self.null_task = nn.Parameter(torch.zeros(cfg.dim))
        self.blocks = nn.ModuleList([DiTBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.experts) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg.dim, cfg.out_dim or cfg.latent_dim)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

        self.apply(_basic_init)
        nn.init.normal_(self.null_task, std=0.02)
        for net in (self.t_embedder.mlp, self.task_embedder):
            nn.init.normal_(net[0].weight, std=0.02)
            nn.init.normal_(net[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as exactly zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def condition(self, t, family, task=None, drop_task=None):
        """c [B, dim] = timestep + family + (task or the null task)."""
        B = t.shape[0]
        null = self.null_task.expand(B, -1)
        if task is None:
            task_emb = null
        else:
            if drop_task is None:  # random CFG dropout in training only
                drop_task = torch.rand(B, device=t.device) < self.cfg.cond_dropout if self.training else None
            task_emb = self.task_embedder(task.float())  # [B, dim]; always computed so DDP sees its grads
            if drop_task is not None:
                task_emb = torch.where(drop_task[:, None], null, task_emb)
        return self.t_embedder(t) + self.family_embedder(family) + task_emb

    def forward(self, x, t, coords, depth, mask, family, task=None, drop_task=None):
        """
        x: [B, L, latent_dim] noisy latents; t: [B] int timesteps; coords: [B, L, 8] int64;
        depth: [B, L] float; mask: [B, L] bool, True = real token; family: [B] int64;
        task: [B, task_features] or None (= dropped); drop_task: [B] bool or None.
        """
        h = self.x_embedder(x) + self.coord_embedder(coords, depth)  # [B, L, dim]
        c = self.condition(t, family, task, drop_task)  # [B, dim]
        route = hash_route(coords, self.cfg.experts) if self.cfg.experts else None
        for block in self.blocks:
            h = block(h, c, mask, route)  # [B, L, dim]
        return self.final_layer(h, c) * mask[..., None]  # [B, L, out_dim or latent_dim]
