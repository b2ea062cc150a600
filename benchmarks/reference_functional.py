"""Experiment: a DiT that *improves a retrieved network for the task*, trained by the task loss.

Levers 6 and 7 in docs/results.md, combined: the DiT is given the retrieval init (the nearest corpus
checkpoint weight-selected to the target's shapes, ``benchmarks/reference_conditioned.py``) and
outputs a correction to its latents in one deterministic pass (zero noise at t = T); the corrected
latents are decoded, built, and scored by cross-entropy on a batch of the target pair's training data
(``benchmarks/functional_finetune.py``). The DiT's output layer starts at zero, so training starts
exactly at the retrieval baseline. Because the input carries the weights, what it learns ("fix what
weight selection from another architecture or task breaks") can carry over to architectures it was
not trained on — which the held-out corpus architectures test: their references come from the other
architectures only, and their data is never used.

    .venv/bin/python benchmarks/reference_functional.py --run runs/shared-parent --corpus corpus/shared-parent \\
        --holdout-archs "mlp:hidden=64x64;cnn1d:channels=32x32;cnn2d:channels=16x16x16;transformer:dim=16,depth=1,heads=2,patch=8"
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import pandas as pd
import torch
from init_conditioned import conditioned_dit  # benchmarks/ is on sys.path when run as a script
from reference_conditioned import LEAVE_OUT, reference, without

from weightgen import diffusion
from weightgen.baselines import CorpusIndex
from weightgen.tune_target import TuneTarget, differentiable_state_dict
from weightgen.encoder import PatchAutoencoder
from weightgen.specs import parse_arch


class Case(TuneTarget):
    """A target (architecture, task) with one retrieved reference, its conditioning and its data."""

    def __init__(self, arch: str, task: str, leave_out: str, index: CorpusIndex, encoder: PatchAutoencoder):
        super().__init__(arch, task, encoder.config.patch_size, encoder.config.latent_dim, noise="fixed")
        self.leave_out = leave_out
        # The reference's own tokens: their layout is the template's, and their scales decode its latents.
        self.tokens, self.z_ref, init = reference(encoder, without(index, arch, task, leave_out), arch, task, 0)
        self.source = init.source.split("/")[0]

    def weights(self, dit, encoder, correct: bool = True) -> dict[str, torch.Tensor]:
        z = self.z_ref
        if correct:
            x = torch.zeros(1, len(self.tokens), z.shape[-1])
            t = torch.full((1,), diffusion.NUM_TRAIN_STEPS - 1, dtype=torch.long)
            z = z + dit(torch.cat([x, self.z_ref[None]], -1), t, self.coords, self.depth, self.mask, self.family, self.features)[0]
        return differentiable_state_dict(self.tokens, encoder.decode(encoder.unstandardize(z), self.tokens.coords))


def has_reference(index: CorpusIndex, arch: str, task: str, leave_out: str) -> bool:
    family = parse_arch(arch).family
    return not without(index, arch, task, leave_out).family(family).empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/shared-parent"), help="run with encoder/")
    parser.add_argument("--corpus", default="corpus/shared-parent")
    parser.add_argument("--out", type=Path, default=Path("runs/v-ref-fn"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--cases-per-step", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--holdout-archs", default="", help="';'-separated corpus architectures never trained on, scored as unseen")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)

    encoder = PatchAutoencoder.load(args.run / "encoder").eval()
    encoder.requires_grad_(False)
    index = CorpusIndex(args.corpus)
    holdout = {parse_arch(a).to_string() for a in args.holdout_archs.split(";") if a}
    seen = index.finals[~index.finals["arch"].isin(holdout)]
    train_index = without(index, "", "", "none")
    train_index.finals = seen  # training references never come from a held-out architecture
    pairs = sorted(set(zip(seen["arch"], seen["task"])))
    started = time.perf_counter()
    train_cases = [Case(a, t, m, train_index, encoder) for a, t in pairs for m in LEAVE_OUT
                   if has_reference(train_index, a, t, m)]  # a family with one architecture left has no arch leave-out
    held_pairs = sorted(set(zip(index.finals["arch"], index.finals["task"])) - set(pairs))
    held_cases = [Case(a, t, "arch", index, encoder) for a, t in held_pairs]  # references from other architectures
    print(f"{len(train_cases)} training cases ({len(pairs)} pairs × {len(LEAVE_OUT)} leave-outs), "
          f"{len(held_cases)} held-out cases; references in {time.perf_counter() - started:.0f} s")

    dit = conditioned_dit(encoder.config.latent_dim, args.preset)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=args.lr)
    refs = {id(c): c.val_acc(c.weights(dit, encoder, correct=False)) for c in train_cases + held_cases}

    def evaluate(step: int) -> list[dict]:
        dit.eval()
        rows = []
        with torch.no_grad():
            for group, cases in (("train", train_cases), ("held-out", held_cases)):
                for c in cases:
                    rows.append({"step": step, "group": group, "arch": c.arch, "task": c.task, "leave_out": c.leave_out,
                                 "reference": c.source, "ref_acc": refs[id(c)], "acc": c.val_acc(c.weights(dit, encoder))})
        dit.train()
        frame = pd.DataFrame(rows)
        summary = frame.groupby(["group", "leave_out"])[["ref_acc", "acc"]].median()
        print(f"step {step:5d}  validation accuracy, medians:\n{summary.to_string(float_format='%.3f')}", flush=True)
        return rows

    log, running = evaluate(0), 0.0
    dit.train()
    for step in range(1, args.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        for c in rng.sample(train_cases, args.cases_per_step):
            loss = c.loss(c.weights(dit, encoder), torch.randint(0, len(c.train), (args.batch_size,))) / args.cases_per_step
            loss.backward()
            running += loss.item()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step:5d}  task loss {running / args.eval_every:.4f}  ({time.perf_counter() - started:.0f} s)")
            running = 0.0
            log += evaluate(step)
    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(log)
    frame.to_csv(args.out / "reference_functional.csv", index=False)
    last = frame[frame["step"] == frame["step"].max()]
    with pd.option_context("display.width", 250):
        print(last[last["group"] == "held-out"].drop(columns=["step", "group"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
