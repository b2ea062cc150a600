"""Experiment: fine-tune a trained DiT so that its one-step sample is a working network.

The diffusion loss scores weights by their distance to corpus members, and the DiT's samples stay at
chance (`benchmarks/denoise_levels.py`: what it gets wrong is what the function depends on). Here
the DiT's one-step prediction from pure noise (DDIM with 1 step: x0 from v at t = T) is decoded into
weights and scored *by the task*: cross-entropy of the built network on a batch of that task's
training data, backpropagated through the decoder (frozen) into the DiT — the DiT trained as a
hypernetwork over the corpus's seen (architecture, task) pairs, like a graph hypernetwork, keeping
the DiT's inputs (token coordinates, family, task features) so unseen architectures and tasks get
weights the same way. Only seen pairs' training data is used; unseen tasks' data never is.

Writes a run folder (``encoder/`` copied, ``dit/`` fine-tuned) that ``Generator.from_run`` and
``weightgen bench --run`` load; its ``dit/config.json`` names the sampler it was trained for (one
step; with ``--noise coords``, :func:`weightgen.sampling.coordinate_noise`). The fine-tune's FLOPs (counted with
``torch.utils.flop_counter``) go to ``dit/functional_finetune.json`` so the amortisation includes them.

    .venv/bin/python benchmarks/functional_finetune.py --run runs/v-tiny --corpus corpus/default --out runs/v-fn
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from weightgen import diffusion
from weightgen.corpus import Corpus
from weightgen.data import input_shape, load_task
from weightgen.dit_train import load_dit, save_pretrained
from weightgen.encoder import PatchAutoencoder
from weightgen.io import atomic_write_json
from weightgen.models import build_model
from weightgen.sampling import coordinate_noise, template
from weightgen.sequences import family_id, fan_in_scales, task_features
from weightgen.tokens import Tokens
from weightgen.specs import parse_arch

T_LAST = diffusion.NUM_TRAIN_STEPS - 1


def differentiable_state_dict(tokens: Tokens, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """``sequences.denormalize`` without its detach (float32 networks): gradients reach ``values``."""
    patches = values * fan_in_scales(tokens)[:, None]
    out = {}
    for lay in tokens.layout:
        if lay.is_passthrough:
            out[lay.name] = tokens.passthrough[lay.name]
            continue
        src = patches[lay.first_patch : lay.first_patch + lay.num_patches]
        out[lay.name] = (src.reshape(lay.rows, -1)[:, : lay.cols] if lay.rows else src.new_zeros(0, 0)).reshape(lay.shape)
    return out


class Pair:
    """One (architecture, task): its token template, conditioning, a network skeleton and its data."""

    def __init__(self, arch: str, task: str, patch_size: int):
        self.arch, self.task = arch, task
        self.tokens = template(arch, task, patch_size)
        self.coords, self.depth = self.tokens.coords[None], self.tokens.depth[None]
        self.mask = torch.ones(1, len(self.tokens), dtype=torch.bool)
        self.family = torch.tensor([family_id(parse_arch(arch).family)])
        self.features = task_features(task)[None]
        self.model = build_model(arch, input_shape(task), seed=0)
        data = load_task(task)
        self.train, self.val = data.train, data.val

    def weights(self, dit, encoder, noise: torch.Tensor, keep_noise: bool = False) -> dict[str, torch.Tensor]:
        """The one-step sample's state_dict, differentiable with respect to the DiT (+ the noise itself with ``keep_noise``)."""
        t = torch.full((1,), T_LAST, dtype=torch.long)
        v = dit(noise, t, self.coords, self.depth, self.mask, self.family, self.features)
        a = diffusion.ALPHAS_CUMPROD[T_LAST]
        x0 = a.sqrt() * noise - (1 - a).sqrt() * v  # DDIM's x0 at t = T, as in diffusion.sample
        if keep_noise:  # the noise is a random init in latent space (corpus scale); the DiT adds structure to it
            x0 = x0 + noise
        values = encoder.decode(encoder.unstandardize(x0[0]), self.tokens.coords)
        return differentiable_state_dict(self.tokens, values)

    def loss(self, state, batch: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.model, state, (self.train.x[batch],)), self.train.y[batch])

    @torch.no_grad()
    def val_acc(self, state) -> float:
        logits = functional_call(self.model, state, (self.val.x,))
        return float((logits.argmax(-1) == self.val.y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/v-tiny"), help="run with encoder/ and dit/")
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--out", type=Path, default=Path("runs/v-fn"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--noise", choices=["fixed", "fresh", "coords"], default="fixed",
                        help="fixed: each pair's seed-0 draw, the one Generator.sample(seed=0) starts from; fresh: a new "
                             "draw every step; coords: each token's draw seeded by its (layer, kind, row, chunk), so "
                             "architectures that share a position share its noise")
    parser.add_argument("--keep-noise", action=argparse.BooleanOptionalAction, default=True,
                        help="sample = noise + the DiT's x0 (the noise acts as a random init in latent space)")
    parser.add_argument("--holdout-archs", default="", help="';'-separated corpus architectures kept out of training, scored as unseen")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)

    encoder = PatchAutoencoder.load(args.run / "encoder").eval()
    encoder.requires_grad_(False)
    dit = load_dit(args.run / "dit").train()
    latent = dit.cfg.latent_dim
    frame = Corpus(args.corpus).require_nonempty()
    frame = frame[frame["family"] != "external"]
    holdout = {parse_arch(a).to_string() for a in args.holdout_archs.split(";") if a}
    every = [Pair(a, t, encoder.config.patch_size) for a, t in sorted(set(zip(frame["arch"], frame["task"])))]
    pairs = [p for p in every if p.arch not in holdout]
    held = [p for p in every if p.arch in holdout]
    print(f"{len(pairs)} training (architecture, task) pairs, {len(held)} held out ({', '.join(sorted(holdout)) or 'none'})")
    optimizer = torch.optim.AdamW(dit.parameters(), lr=args.lr)
    # What Generator.sample(seed=0) draws: diffusion.sample's first randn of shape [1, n, latent].
    seed0 = {id(p): torch.randn(1, len(p.tokens), latent, generator=torch.Generator().manual_seed(0)) for p in every}
    if args.noise == "coords":
        seed0 = {id(p): coordinate_noise(p.tokens.coords, latent)[None] for p in every}

    def evaluate(step: int) -> dict:
        dit.eval()
        with torch.no_grad():
            accs = {id(p): p.val_acc(p.weights(dit, encoder, seed0[id(p)], args.keep_noise)) for p in every}
        dit.train()
        row = {"step": step, "val_acc_median": float(pd.Series([accs[id(p)] for p in pairs]).median()),
               "val_acc_min": min(accs[id(p)] for p in pairs)}
        line = f"step {step:5d}  one-step sample val acc: training pairs median {row['val_acc_median']:.3f} min {row['val_acc_min']:.3f}"
        if held:
            row["heldout_val_acc_median"] = float(pd.Series([accs[id(p)] for p in held]).median())
            row.update({f"heldout/{p.arch}@{p.task}": accs[id(p)] for p in held})
            line += f"; held-out archs median {row['heldout_val_acc_median']:.3f}"
        print(line, flush=True)
        return row

    log, running, started = [evaluate(0)], 0.0, time.perf_counter()
    with FlopCounterMode(display=False) as counter:
        for step in range(1, args.steps + 1):
            optimizer.zero_grad(set_to_none=True)
            for p in rng.sample(pairs, args.pairs_per_step):
                noise = seed0[id(p)] if args.noise != "fresh" else torch.randn(1, len(p.tokens), latent)
                batch = torch.randint(0, len(p.train), (args.batch_size,))
                loss = p.loss(p.weights(dit, encoder, noise, args.keep_noise), batch) / args.pairs_per_step
                loss.backward()
                running += loss.item()
            torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
            optimizer.step()
            if step % args.eval_every == 0 or step == args.steps:
                print(f"step {step:5d}  task loss {running / args.eval_every:.4f}  ({time.perf_counter() - started:.0f} s)")
                running = 0.0
                log.append(evaluate(step))
    flops = int(counter.get_total_flops())  # includes the evaluation passes: an upper bound on the fine-tune's cost
    dit.eval()

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(args.run / "encoder", args.out / "encoder", dirs_exist_ok=True)
    save_pretrained(dit, args.out / "dit", weights="functional-finetune")
    base = json.loads((args.run / "dit" / "config.json").read_text())
    config = json.loads((args.out / "dit" / "config.json").read_text())
    # How Generator.from_run must sample this DiT: one step from the start it was trained on (a fresh
    # Gaussian draw has no fixed start, a fixed draw is the seed-0 Gaussian one).
    sampler = {"steps": 1, "noise": "coords" if args.noise == "coords" else "gaussian", "keep_noise": args.keep_noise}
    atomic_write_json(args.out / "dit" / "config.json", {**config, "train": base.get("train"), "sampler": sampler})
    atomic_write_json(args.out / "dit" / "functional_finetune.json", {
        "base_run": str(args.run), "corpus": args.corpus, "steps": args.steps, "pairs_per_step": args.pairs_per_step,
        "batch_size": args.batch_size, "lr": args.lr, "flops": flops, "wall_time_s": time.perf_counter() - started,
        "noise": args.noise, "keep_noise": args.keep_noise, "holdout_archs": sorted(holdout),
        "sampler": sampler, "log": log})
    pd.DataFrame(log).to_csv(args.out / "functional_finetune.csv", index=False)
    print(f"wrote {args.out} ({flops:.3e} FLOPs, {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
