"""What do a generated start's weight matrices look like next to the baselines' and the trained members'? A diagnostic.

On unseen architectures a generated start as accurate as retrieval's fine-tunes far slower (`mlp:hidden=96x96`:
retrieval's 0.47 start reaches the target in 20-25 steps, the tuned student's 0.49 in 190-210; docs/results.md,
item 47). This asks whether the matrices differ in kind: for each init method on each of a suite's cases (built as
the bench builds them, `weightgen.bench.make_init`), and for the trained corpus members of each family, every
weight tensor with two or more axes and two or more rows and columns (a kernel flattened to [out, in × k]) is
scored by

- effective rank / full rank: exp(entropy of the normalised singular values), 1 for a flat spectrum;
- stable rank / full rank: ||W||_F² / ||W||_2², how many directions carry the energy;
- scale: the values' RMS × sqrt(fan-in), about 1 / sqrt(3) for PyTorch's default init;
- row spread: the coefficient of variation of the output units' norms (dead or dominant units raise it).

It prints the medians per family and method, and each case's validation accuracy at init. It reads the suite's
cases for diagnosis only; nothing here is tuned on them.

    .venv/bin/python benchmarks/spectrum_probe.py --suite suites/default.yaml --corpus corpus/wide \
        --run runs/xsp-k100-s3-lr1e-4 --splits unseen-arch,unseen-task
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch

from weightgen.baselines import CorpusIndex
from weightgen.bench import make_init
from weightgen.sampling import evaluate_state_dict
from weightgen.specs import parse_arch
from weightgen.suite import load_suite


def matrix_scores(state: dict[str, torch.Tensor]) -> list[dict]:
    """One row per weight tensor with two or more axes: its spectrum, scale and unit spread (module docstring)."""
    rows = []
    matrices = [(k, v) for k, v in state.items() if v.is_floating_point() and v.ndim >= 2]
    for position, (name, value) in enumerate(matrices):
        w = value.detach().double().reshape(value.shape[0], -1)
        if min(w.shape) < 2:  # a single row (a class token, a position table of one) has no spectrum to compare
            continue
        s = torch.linalg.svdvals(w)
        full = min(w.shape)
        p = s / s.sum().clamp(min=1e-30)
        entropy = float(-(p * p.clamp(min=1e-30).log()).sum())
        units = w.norm(dim=1)
        rows.append({"tensor": name, "position": position, "shape": "x".join(map(str, w.shape)),
                     "erank": math.exp(entropy) / full,
                     "stable_rank": float((s**2).sum() / s[0].clamp(min=1e-30) ** 2) / full,
                     "scale": float(w.pow(2).mean().sqrt()) * w.shape[1] ** 0.5,
                     "row_spread": float(units.std() / units.mean().clamp(min=1e-30))})
    return rows


def probe(suite_path: Path, run: Path | None, corpus: Path, splits: list[str], methods: list[str], seed: int,
          members_per_family: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per case × method × matrix, plus the trained members as method 'trained'; one row per case × method)."""
    suite = load_suite(suite_path).with_sources(corpus, run)  # run None keeps the suite's generator
    cases = [c for c in suite.cases if c.split in splits]
    matrices, accuracy = [], []
    for case in cases:
        family = parse_arch(case.arch).family
        for method in methods:
            init = make_init(suite, method, case.arch, case.task, seed)
            if init.state_dict is None:
                continue
            accuracy.append({"split": case.split, "case": case.case_id, "method": method,
                             "val_acc": evaluate_state_dict(init.state_dict, case.arch, case.task, "val")})
            matrices += [{"family": family, "case": case.case_id, "method": method, **row}
                         for row in matrix_scores(init.state_dict)]
    index = CorpusIndex(corpus)
    for family in sorted({parse_arch(c.arch).family for c in cases}):
        members = index.family(family)["member"].tolist()
        stride = max(1, len(members) // members_per_family)  # spread over the family's widths and tasks
        for member in members[::stride][:members_per_family]:
            matrices += [{"family": family, "case": member, "method": "trained", **row}
                         for row in matrix_scores(index.state_dict(member))]
    return pd.DataFrame(matrices), pd.DataFrame(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=Path("suites/default.yaml"))
    parser.add_argument("--run", type=Path, default=None, help="a generator run folder (needed for 'generated')")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/wide"))
    parser.add_argument("--splits", default="unseen-arch,unseen-task", help="comma-separated split tags")
    parser.add_argument("--methods", default="random,retrieval,weight-selection,generated")
    parser.add_argument("--seed", type=int, default=100, help="the init seed (the suite's first fine-tune seed)")
    parser.add_argument("--members-per-family", type=int, default=12, help="trained corpus members scored per family")
    parser.add_argument("--out", type=Path, default=None, help="also write the per-matrix table here (CSV)")
    args = parser.parse_args()
    if args.run is None and "generated" in args.methods.split(","):
        parser.error("--run is needed to score 'generated'")
    torch.set_num_threads(1)
    matrices, accuracy = probe(args.suite, args.run, args.corpus, args.splits.split(","), args.methods.split(","),
                               args.seed, args.members_per_family)
    if args.out:
        matrices.to_csv(args.out, index=False)
    scores = ["erank", "stable_rank", "scale", "row_spread"]
    print("median over weight matrices, per family and method (ranks as a share of full rank)\n"
          + matrices.groupby(["family", "method"])[scores].median().round(3).to_string())
    print("\nfirst and last weight matrix of each network, medians\n" + matrices.assign(
        layer=lambda m: m.groupby(["case", "method"])["position"].transform(
            lambda p: p.map({p.min(): "first", p.max(): "last"}).fillna("middle")))
        .groupby(["family", "layer", "method"])[scores].median().round(3).to_string())
    print("\nvalidation accuracy at init\n" + accuracy.pivot_table(index=["split", "case"], columns="method",
                                                                  values="val_acc").round(3).to_string())


if __name__ == "__main__":
    main()
