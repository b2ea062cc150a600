"""Do a generated transformer's residual branches write too loudly? Its branch outputs scaled down before fine-tuning.

A generated transformer's attention and feedforward branches write 1.5–3× more into the residual stream, relative
to the stream, than a random init's (the branch output's RMS over the stream's at each block, measured at stop 29
on two of this probe's pairs and on `transformer:dim=24,patch=8` × digits), while its attention is about as spread
(0.82–0.97 of the largest entropy, random init 0.94–0.99). Pre-norm transformers train best when each branch starts
small beside the stream (the reasoning behind ReZero and SkipInit). This scales each block's residual-writing
matrices (``self_attn.out_proj`` and ``linear2``, with their biases) of the sample by a factor, or to random
init's Frobenius norm, and fine-tunes each start as ``benchmarks/layer_probe.py`` does. The pairs are
layer_probe's transformers in no suite, on corpus tasks, so nothing is chosen on a bench case.

    .venv/bin/python benchmarks/residual_branch_probe.py --run runs/xsp-k100-s3-lr1e-4-ts --steps 600 --seeds 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import PAIRS, parse_pairs, print_summary, probe  # noqa: E402

BRANCH_OUTPUTS = ("self_attn.out_proj.weight", "self_attn.out_proj.bias", "linear2.weight", "linear2.bias")


def writes_to_stream(name: str) -> bool:
    return name.startswith("blocks.") and name.endswith(BRANCH_OUTPUTS)


def starts(sample: dict[str, torch.Tensor], init: dict[str, torch.Tensor], factors=(0.5, 0.25, 0.0)):
    """The sample, random init, the sample with its branch outputs × each factor, and at random init's norm."""
    out = {"generated": sample, "random": init}
    for factor in factors:
        out[f"branches x{factor:g}"] = {k: v * factor if writes_to_stream(k) else v for k, v in sample.items()}
    out["branches at init norm"] = {
        k: v * init[k].norm() / v.norm().clamp(min=1e-12) if writes_to_stream(k) and k.endswith("weight") else v
        for k, v in sample.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="generator run folder (as `weightgen bench --run`)")
    parser.add_argument("--pairs", default="", help="';'-separated arch@task pairs (default: layer_probe's transformers)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_summary(probe(args.run, parse_pairs(args.pairs, PAIRS), [int(s) for s in args.seeds.split(",")], args.steps,
                        starts))


if __name__ == "__main__":
    main()
