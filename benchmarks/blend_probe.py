"""Does a generated sample fine-tune faster than the random init it could be blended with? A probe per family.

The bench's transformer cases start at chance from `generated` and train slower than from random init
(docs/results.md, item 46). This asks whether any mix of the two does better: on a corpus's own pairs,
the run's seed-0 sample (`Generator.sample`, as the bench samples it) and the pair's seed-0 random init
are blended, ``init + alpha * (sample - init)``, or, with ``--init-scales``, mixed as shrink-and-perturb mixes a
warm start with a fresh init (Ash & Adams 2020), ``alpha * sample + beta * init`` on matrices and kernels: the
sample kept and random directions added. With ``--match-scales`` every start is also scored with the sample's
matrices at the corpus's trained scale for their family and layer role (`weightgen.scale_prior`), the sampler
option `weightgen dit match-scales` writes. Each start is moved by K AdamW steps at the pair's
recipe LR on fixed batches (the tune's lookahead, `TuneTarget.lookahead`). It prints the median
validation accuracy at the start and after K steps, per family and alpha. Only corpus pairs are read,
never a suite's cases, so an alpha picked here is not picked on the benchmark. About 2 s per pair and
alpha on one core for the transformers:

    .venv/bin/python benchmarks/blend_probe.py --run runs/xsp-k100-s0-lr1e-4 --corpus corpus/wide \
        --families transformer,mlp --alphas 0,0.25,0.5,0.75,1 --steps 50 --pairs-per-family 12
    .venv/bin/python benchmarks/blend_probe.py --run runs/xsp-k100-s3 --corpus corpus/wide \
        --families transformer,mlp,cnn1d,cnn2d --alphas 1 --init-scales 0,0.25,0.5,1 --pairs-per-family 8
    .venv/bin/python benchmarks/blend_probe.py --run runs/xsp-k100-s3-lr1e-4 --corpus corpus/wide \
        --families transformer,mlp,cnn1d,cnn2d --alphas 1 --match-scales --pairs-per-family 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from weightgen.corpus import Corpus
from weightgen.generate import Generator
from weightgen.pairs import corpus_pairs
from weightgen.scale_prior import corpus_scale_prior, match_scales
from weightgen.specs import parse_arch
from weightgen.tune_target import TuneTarget


def mixed(init: dict[str, torch.Tensor], sample: dict[str, torch.Tensor], alpha: float, beta: float,
          matrices_only: bool) -> dict[str, torch.Tensor]:
    """``alpha * sample + beta * init`` per tensor; ``matrices_only``: vectors stay the sample's (a norm gain's
    init is a constant, not a random direction)."""
    def one(key: str, value: torch.Tensor) -> torch.Tensor:
        if not value.is_floating_point():
            return value
        if matrices_only and value.ndim < 2:
            return sample[key]
        return alpha * sample[key] + beta * value

    return {k: one(k, v) for k, v in init.items()}


def blend_accuracy(run_dir: Path, corpus_dir: Path, families: list[str], alphas: list[float], steps: int,
                   pairs_per_family: int, batch_size: int = 128, init_scales: list[float] | None = None,
                   scale_match: bool = False) -> pd.DataFrame:
    """One row per (pair, alpha[, beta], scales): the start's validation accuracy, and after ``steps`` fine-tune steps.

    ``init_scales`` None: the blend ``init + alpha * (sample - init)``; else ``alpha * sample + beta * init``
    for every alpha and every beta in it, on matrices and kernels only (vectors are the sample's). ``scale_match``:
    each mix also from the sample with matched scales (``scales`` 'matched'; else only 'sampled').
    """
    mixes = ([(a, 1.0 - a) for a in alphas] if init_scales is None
             else [(a, b) for a in alphas for b in init_scales])
    corpus, generator = Corpus(corpus_dir), Generator.from_run(run_dir)
    prior = corpus_scale_prior(corpus_dir) if scale_match else None
    lrs = {(r["arch_string"], r["task_string"]): float(r["recipe"]["lr"]) for r in corpus.members() if "recipe" in r}
    chosen = []
    for family in families:
        of_family = [p for p in corpus_pairs(corpus) if parse_arch(p[0]).family == family]
        stride = max(1, len(of_family) // pairs_per_family)  # spread over the family's widths and tasks
        chosen += of_family[::stride][:pairs_per_family]
    rows = []
    for arch, task in chosen:
        target = TuneTarget(arch, task, 32, 32, "coords", lrs.get((arch, task), 3e-3))
        init = target.model.state_dict()
        sampled = generator.sample(arch, task, seed=0).state_dicts[0]
        starts = {"sampled": sampled, **({"matched": match_scales(sampled, arch, prior)} if prior else {})}
        for (alpha, beta), (scales, sample) in ((m, s) for m in mixes for s in starts.items()):
            state = mixed(init, sample, alpha, beta, matrices_only=init_scales is not None)
            landed = target.lookahead(state, steps, batch_size, torch.Generator().manual_seed(0))
            rows.append({"family": parse_arch(arch).family, "arch": arch, "task": task, "alpha": alpha, "beta": beta,
                         "scales": scales, "val_acc_0": target.val_acc(state), f"val_acc_{steps}": target.val_acc(landed)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a generator run folder")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/default"))
    parser.add_argument("--families", default="transformer", help="comma-separated families")
    parser.add_argument("--alphas", default="0,0.5,1", help="comma-separated blend weights of the sample (0: random init)")
    parser.add_argument("--init-scales", default="", help="comma-separated betas: mix alpha * sample + beta * init instead")
    parser.add_argument("--steps", type=int, default=50, help="fine-tune steps after the start")
    parser.add_argument("--pairs-per-family", type=int, default=12)
    parser.add_argument("--match-scales", action="store_true", help="also score each start with the corpus's matrix scales")
    args = parser.parse_args()
    torch.set_num_threads(1)
    betas = [float(b) for b in args.init_scales.split(",")] if args.init_scales else None
    table = blend_accuracy(args.run, args.corpus, args.families.split(","), [float(a) for a in args.alphas.split(",")],
                           args.steps, args.pairs_per_family, init_scales=betas, scale_match=args.match_scales)
    scores = [c for c in table.columns if c.startswith("val_acc")]
    keys = ["alpha", "beta", "scales"]
    pairs = table.groupby("family")["arch"].count() // table.groupby(keys).ngroups
    print(f"median validation accuracy per family, alpha (the sample's weight) and beta (the init's) ({pairs.to_dict()} pairs)\n"
          + table.groupby(["family", *keys])[scores].median().round(3).to_string()
          + "\n\nall families\n" + table.groupby(keys)[scores].median().round(3).to_string())


if __name__ == "__main__":
    main()
