"""Does a generated matrix fine-tune faster with a random init's spectrum? Its singular vectors kept, its values swapped.

Item 48 of docs/results.md found the generated matrices' energy in fewer directions than a trained or random
network's, and item 54 that every role of a generated transformer is a worse start than random init. Adding
random directions on top (shrink-and-perturb) did not help. This keeps the sample's singular vectors — the
directions the generator chose — and gives each matrix (kernels flattened to [out, in × k]) the singular values
of the same seed's random init of that tensor: ``flat`` at random init's scale, ``flat-scaled`` rescaled to the
sample's own Frobenius norm. Vectors (biases, norms) stay the sample's. Each start is fine-tuned and scored as in
``benchmarks/layer_probe.py``. The default pairs, one or two per family, are in no suite, on corpus tasks.

    .venv/bin/python benchmarks/spectrum_reshape_probe.py --run runs/xsp-k100-s3-lr1e-4 --steps 1000 --seeds 0
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import finetune_scores, print_summary  # noqa: E402

from weightgen.data import input_shape  # noqa: E402
from weightgen.generate import Generator  # noqa: E402
from weightgen.models import build_model  # noqa: E402

PAIRS = [("mlp:hidden=80x80", "mnist1d"), ("mlp:hidden=40x40", "digits:rot90=1"),
         ("cnn1d:channels=24x24", "mnist1d:template_seed=1"), ("cnn2d:channels=10x20", "digits:rot90=3"),
         ("transformer:dim=20,heads=4,patch=8", "digits")]


def with_spectrum(sample: torch.Tensor, reference: torch.Tensor, keep_norm: bool) -> torch.Tensor:
    """``sample``'s singular vectors with ``reference``'s singular values (at ``sample``'s norm when ``keep_norm``)."""
    if sample.dim() < 2 or min(sample.shape[0], sample[0].numel()) < 2:
        return sample
    u, _, vh = torch.linalg.svd(sample.reshape(sample.shape[0], -1).double(), full_matrices=False)
    values = torch.linalg.svdvals(reference.reshape(reference.shape[0], -1).double())
    out = u @ torch.diag(values) @ vh
    if keep_norm:
        out = out * sample.double().norm() / out.norm().clamp(min=1e-12)
    return out.reshape(sample.shape).to(sample.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="generator run folder (as `weightgen bench --run`)")
    parser.add_argument("--pairs", default="", help="';'-separated arch@task pairs (default: one or two per family)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = [tuple(p.split("@")) for p in args.pairs.split(";") if p] or PAIRS
    generator = Generator.from_run(args.run)
    rows = []
    for (arch, task), seed in itertools.product(pairs, [int(s) for s in args.seeds.split(",")]):
        sample = {k: v.float() for k, v in generator.sample(arch, task, seed=seed).state_dicts[0].items()}
        init = build_model(arch, input_shape(task), seed=seed).state_dict()
        starts = {"generated": sample, "random": init,
                  "flat": {k: with_spectrum(v, init[k], False) for k, v in sample.items()},
                  "flat-scaled": {k: with_spectrum(v, init[k], True) for k, v in sample.items()}}
        scored = finetune_scores(arch, task, seed, starts, args.steps)
        rows += scored
        print(pd.DataFrame(scored).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    print_summary(rows)
    table = pd.DataFrame(rows).assign(family=lambda t: t["arch"].str.split(":").str[0])
    print("\nsaved per family (median over pairs and seeds; not reached = -1):")
    print(table.assign(saved=table["saved"].fillna(-1.0)).pivot_table(index="start", columns="family", values="saved",
                                                                       aggfunc="median").to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
