"""One corpus pair as a target of the one-step sampler: what the tune and the distillation train on.

A :class:`TuneTarget` is an (architecture, task) with its token template, conditioning, a network
skeleton, its training and validation data and its start (coordinate noise or a seeded draw). It
turns the DiT's one-step prediction into a differentiable state_dict, scores it by cross-entropy,
and moves it by a few fine-tune steps (the lookahead) — the pieces :mod:`weightgen.dit_tune` and
:mod:`weightgen.dit_distill` share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from weightgen import diffusion
from weightgen.rebalance import rebalance
from weightgen.sampling import kept_start
from weightgen.sequences import fan_in_scales
from weightgen.specs import parse_arch
from weightgen.tokens import Tokens
from weightgen.weight_selection import fit_state_dict

_T_LAST = diffusion.NUM_TRAIN_STEPS - 1


def differentiable_state_dict(tokens: Tokens, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """``sequences.denormalize`` without its detach (float32 networks), so gradients reach ``values``."""
    patches = values * fan_in_scales(tokens).to(values.device)[:, None]
    out = {}
    for lay in tokens.layout:
        if lay.is_passthrough:
            out[lay.name] = tokens.passthrough[lay.name].to(values.device)
            continue
        src = patches[lay.first_patch : lay.first_patch + lay.num_patches]
        out[lay.name] = (src.reshape(lay.rows, -1)[:, : lay.cols] if lay.rows else src.new_zeros(0, 0)).reshape(lay.shape)
    return out


def patches_from_state(tokens: Tokens, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The inverse of :func:`differentiable_state_dict`: ``state`` as ``tokens``'s normalised patches, padding 0."""
    device = next(iter(state.values())).device
    values = torch.zeros(tokens.patches.shape, device=device)
    for lay in tokens.layout:
        if lay.num_patches:
            rows = values[lay.first_patch : lay.first_patch + lay.num_patches].view(lay.rows, -1)
            rows[:, : lay.cols] = state[lay.name].detach().reshape(lay.rows, lay.cols).float()
    return values / fan_in_scales(tokens).to(device)[:, None]


class TuneTarget:
    """One (architecture, task): its token template, conditioning, a network skeleton, its data and its start.

    With ``source`` (another architecture of the family: its canvas, :mod:`weightgen.via_arch`) the DiT writes the
    source's tokens, from the source's start, and :meth:`to_target` cuts that network to the pair's shapes by weight
    selection (index selection: the gradient passes); the skeleton, data and losses stay the pair's.
    """

    def __init__(self, arch: str, task: str, patch_size: int, latent_dim: int, noise: str, lr: float = 3e-3,
                 source: str | None = None):
        from weightgen.data import input_shape, load_task
        from weightgen.models import build_model
        from weightgen.sampling import coordinate_noise, template
        from weightgen.sequences import family_id, task_features

        self.arch, self.task, self.lr = arch, task, lr  # lr: the fine-tune recipe's, for lookahead
        self.source = source if source is not None and parse_arch(source).to_string() != parse_arch(arch).to_string() else None
        written = self.source or arch  # the architecture whose tokens the DiT writes
        self.tokens = template(written, task, patch_size)
        n = len(self.tokens)
        self.coords, self.depth = self.tokens.coords[None], self.tokens.depth[None]
        self.mask = torch.ones(1, n, dtype=torch.bool)
        self.family = torch.tensor([family_id(parse_arch(arch).family)])
        self.features = task_features(task)[None]
        self.model = build_model(arch, input_shape(task), seed=0)
        # the written network's seed-0 init: the spectrum reshape's reference, as Generator.sample reshapes before the cut
        self.written_init = (build_model(written, input_shape(task), seed=0).state_dict() if self.source
                             else self.model.state_dict())
        self.head = None  # (name, nn.Linear) of the classifier head, found on first use (with_fitted_head)
        data = load_task(task)
        self.train, self.val = data.train, data.val
        # The start Generator.sample(seed=0) uses for this pair: coordinate noise, or the seed-0 Gaussian draw.
        self.start = (coordinate_noise(self.tokens.coords, latent_dim)[None] if noise == "coords"
                      else torch.randn(1, n, latent_dim, generator=torch.Generator().manual_seed(0)))

    def to(self, device: torch.device) -> "TuneTarget":
        """Everything a step touches on ``device`` (the token template stays put: the state dict follows the values)."""
        from weightgen.data import Split

        for name in ("coords", "depth", "mask", "family", "features", "start"):
            setattr(self, name, getattr(self, name).to(device))
        self.model = self.model.to(device)
        self.written_init = {k: v.to(device) for k, v in self.written_init.items()}
        self.train, self.val = (Split(s.x.to(device), s.y.to(device)) for s in (self.train, self.val))
        return self

    def batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Training-row indices drawn from ``generator`` (on the CPU, so every device draws the same)."""
        return torch.randint(0, len(self.train), (batch_size,), generator=generator).to(self.train.y.device)

    def weights(self, dit, encoder, start: torch.Tensor, keep_noise: str, mode: str = "none",
                drop_task: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The one-step sample from ``start`` as a state_dict, differentiable with respect to the DiT.

        ``mode`` rebalances it to the skeleton's (seed-0) init scale, as the sampler does to the target's.
        ``drop_task`` ([1] bool): the training step's classifier-free-guidance dropout of the task condition.
        A DiT that writes patches itself (a distilled student, ``dit.cfg.out_dim`` set) is read as its sampler
        reads it: its output is the network's patches, with no start kept and no decoder.
        """
        if dit.cfg.out_dim is not None:
            return self.state_from_patches(self.one_step_patches(dit, start, drop_task), mode)
        x0 = self.one_step_x0(dit, start, drop_task) + kept_start(start, self.coords, keep_noise)
        return self.state_from_latents(encoder, x0, mode)

    def one_step_x0(self, dit, start: torch.Tensor, drop_task: torch.Tensor | None = None) -> torch.Tensor:
        """The DiT's prediction of the clean latents [1, N, latent] from ``start``: DDIM's x0 at t = T, as in diffusion.sample."""
        t = torch.full((1,), _T_LAST, dtype=torch.long, device=start.device)
        v = dit(start, t, self.coords, self.depth, self.mask, self.family, self.features, drop_task)
        a = diffusion.ALPHAS_CUMPROD[_T_LAST]
        return a.sqrt() * start - (1 - a).sqrt() * v

    def one_step_patches(self, dit, start: torch.Tensor, drop_task: torch.Tensor | None = None) -> torch.Tensor:
        """A patch-writing DiT's output [N, P] from ``start``: the pair's normalised patches, padding 0 (as sampled).

        ``drop_task`` as in :meth:`one_step_x0` (None: the DiT's own CFG dropout in training).
        """
        from weightgen.sampling import direct_patches

        def model_fn(x, t, mask, **_):  # the step's drop_task, not direct_patches's sampling one (none dropped)
            return dit(x, t, self.coords, self.depth, mask, self.family, self.features, drop_task)

        return direct_patches(model_fn, start, self.coords[0], self.tokens.patch_size)

    def state_from_latents(self, encoder, z: torch.Tensor, mode: str = "none") -> dict[str, torch.Tensor]:
        """Latents [1, N, latent] decoded into this pair's state_dict (differentiable), rebalanced by ``mode``."""
        return self.state_from_patches(encoder.decode(encoder.unstandardize(z[0]), self.coords[0]), mode)

    def state_from_patches(self, values: torch.Tensor, mode: str = "none") -> dict[str, torch.Tensor]:
        """Normalised patches [N, P] as the written network's state_dict (differentiable), rebalanced by ``mode``:
        the pair's own, or with ``source`` the source's (:meth:`to_target` cuts it)."""
        state = differentiable_state_dict(self.tokens, values)
        if mode == "none":
            return state
        if self.source:
            raise ValueError("rebalance is not supported with a canvas: it rescales the pair's ReLU chain, not the source's")
        return rebalance(state, self.arch, self.model.state_dict(), mode)

    def to_target(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The written network cut to the pair's shapes by weight selection (differentiable; positions the source
        lacks keep the pair's seed-0 init); the state itself when the DiT writes the pair's own architecture."""
        return fit_state_dict(state, self.model.state_dict())[0] if self.source else state

    def loss(self, state, batch: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.model, state, (self.train.x[batch],)), self.train.y[batch])

    def anchor_loss(self, state, member) -> torch.Tensor:
        """The sample's squared relative distance to the trained member, Σ‖state − member‖² ÷ Σ‖member‖² over the
        network's parameters: 0 at the member, 1 at zero weights, 4 at the member's negation."""
        names = [k for k, _ in self.model.named_parameters()]
        diff = torch.stack([(state[k] - member[k]).pow(2).sum() for k in names]).sum()
        return diff / torch.stack([member[k].pow(2).sum() for k in names]).sum()

    def distill_loss(self, state, teacher, batch: torch.Tensor) -> torch.Tensor:
        """KL(teacher ‖ sample) of the predictions on the batch: the trained member's soft targets."""
        x = self.train.x[batch]
        with torch.no_grad():
            target = F.log_softmax(functional_call(self.model, teacher, (x,)), -1)
        return F.kl_div(F.log_softmax(functional_call(self.model, state, (x,)), -1), target, log_target=True,
                        reduction="batchmean")

    def with_fitted_head(self, state, generator: torch.Generator, examples: int = 1000) -> dict[str, torch.Tensor]:
        """``state`` with its classifier head replaced by :func:`weightgen.head_fit.logistic_head` on its body's features.

        The fit reads ``examples`` training examples drawn from ``generator``, as ``generated+head`` fits a sample's
        head before it is fine-tuned. The fitted head is a constant: the gradient reaches the body through the
        features the head reads, not through the fit. At the fit's optimum on the same examples that is the exact
        gradient of the best head's loss (the envelope theorem); on other batches, and after the lookahead, it is a
        first-order approximation, as the lookahead itself is.
        """
        from weightgen.head_fit import classifier_head, logistic_head

        if self.head is None:
            self.head = classifier_head(self.model, self.train.x[:2])
        name, module = self.head
        rows = torch.randperm(len(self.train), generator=generator)[:examples].to(self.train.y.device)
        captured: list[torch.Tensor] = []
        handle = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            with torch.no_grad():
                functional_call(self.model, {k: v.detach() for k, v in state.items()}, (self.train.x[rows],))
        finally:
            handle.remove()
        weight, bias = logistic_head(captured[-1].flatten(1).double(), self.train.y[rows], module.out_features)
        return {**state, f"{name}.weight": weight.float(), f"{name}.bias": bias.float()}

    def lookahead(self, state, steps: int, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``state`` moved by ``steps`` AdamW steps at the recipe's LR, the move detached (first-order).

        The loss there, differentiated through the identity path ``state + move``, gives the gradient at
        the point the fine-tune reaches, applied to the sample: first-order MAML, which drops the
        derivative of the move itself (for Adam's first step, sign descent, that term is zero almost
        everywhere; later steps make it an approximation). It scores a sample by where fine-tuning
        takes it, which is what compute saved measures, not by its loss at init alone.
        """
        names = {name for name, _ in self.model.named_parameters()}
        params = {k: v.detach().clone().requires_grad_(True) for k, v in state.items() if k in names}
        fixed = {k: v.detach() for k, v in state.items() if k not in names}
        optimizer = torch.optim.AdamW(params.values(), lr=self.lr, weight_decay=0.0)
        for _ in range(steps):
            loss = self.loss({**fixed, **params}, self.batch(batch_size, generator))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return {k: state[k] + (params[k].detach() - state[k].detach()) if k in params else v for k, v in state.items()}

    @torch.no_grad()
    def val_acc(self, state) -> float:
        return float((functional_call(self.model, state, (self.val.x,)).argmax(-1) == self.val.y).float().mean())


__all__ = ["TuneTarget", "differentiable_state_dict", "patches_from_state"]
