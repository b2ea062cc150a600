"""Experiment driver for :mod:`weightgen.dit_tune`: tune a trained DiT by the task loss, print its progress.

The method and its choices are documented in ``weightgen/dit_tune.py``; ``weightgen dit tune`` is the
product command. This script keeps the commands of docs/results.md (levers 7 and 9) running, with the
held-out architectures scored at every evaluation.

    .venv/bin/python benchmarks/functional_finetune.py --run runs/v-tiny --corpus corpus/default --out runs/v-fn-coords \\
        --noise coords --steps 1500 --lr 1e-3 --holdout-archs "mlp:hidden=64x64;cnn1d:channels=32x32"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from weightgen.dit_tune import START_KINDS, TuneConfig, tune
from weightgen.sampling import KEEP_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/v-tiny"), help="run with encoder/ and dit/")
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--out", type=Path, default=Path("runs/v-fn"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--noise", choices=START_KINDS, default="coords",
                        help="coords: each token's start seeded by its position; fixed: each pair's seed-0 draw; "
                             "fresh: a new draw every step")
    parser.add_argument("--keep-noise", choices=KEEP_KINDS, default="matrices",
                        help="tokens on which the start is added back to the DiT's x0 (a random init in latent space)")
    parser.add_argument("--bias-penalty", type=float, default=0.0, help="x mean square of the sample's biases, added to the loss")
    parser.add_argument("--holdout-archs", default="", help="';'-separated corpus architectures kept out of training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TuneConfig(steps=args.steps, pairs_per_step=args.pairs_per_step, batch_size=args.batch_size, lr=args.lr,
                     eval_every=args.eval_every, noise=args.noise, keep_noise=args.keep_noise,
                     holdout_archs=[a for a in args.holdout_archs.split(";") if a], bias_penalty=args.bias_penalty)
    tune(args.run, args.corpus, args.out, cfg, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
