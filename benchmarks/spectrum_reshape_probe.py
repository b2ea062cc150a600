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

import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import parse_pairs, print_summary, probe, probe_parser  # noqa: E402

from weightgen.spectrum import reshaped  # noqa: E402

PAIRS = [("mlp:hidden=80x80", "mnist1d"), ("mlp:hidden=40x40", "digits:rot90=1"),
         ("cnn1d:channels=24x24", "mnist1d:template_seed=1"), ("cnn2d:channels=10x20", "digits:rot90=3"),
         ("transformer:dim=20,heads=4,patch=8", "digits")]


def at_init_scale(sample: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``weightgen.spectrum.reshaped`` at ``reference``'s norm instead of the sample's (``flat``); vectors as sampled."""
    out, spent = reshaped(sample, reference)
    return out * reference.norm() / out.norm().clamp(min=1e-12) if spent else out


def starts(sample: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The sample, random init, and the sample with random init's spectrum at either scale (``flat-scaled`` is the
    sampler option ``init_spectrum``)."""
    return {"generated": sample, "random": init,
            "flat": {k: at_init_scale(v, init[k]) for k, v in sample.items()},
            "flat-scaled": {k: reshaped(v, init[k])[0] for k, v in sample.items()}}


def main() -> None:
    args = probe_parser(__doc__.splitlines()[0], "one or two per family", "0", 1000).parse_args()
    torch.set_num_threads(1)
    rows = probe(args.run, parse_pairs(args.pairs, PAIRS), args.seeds, args.steps, starts)
    print_summary(rows)
    table = pd.DataFrame(rows).assign(family=lambda t: t["arch"].str.split(":").str[0])
    print("\nsaved per family (median over pairs and seeds; not reached = -1):")
    print(table.assign(saved=table["saved"].fillna(-1.0)).pivot_table(index="start", columns="family", values="saved",
                                                                       aggfunc="median").to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
