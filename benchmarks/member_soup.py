"""Do a corpus's members of one architecture share a frame? Distance and weight averages, as a table.

For every architecture × dataset with ≥ 2 final members: the median symmetric relative distance
between two members (``weightgen.sampling.relative_distance``; √2 ≈ 1.41 = uncorrelated), and the test
accuracy of the plain average of each task's members (a "soup" of its seeds) beside the members' own.
A generator that learns a blurred average of its training networks gives working samples only where
that average is a working network — which is what the soup column measures.

    .venv/bin/python benchmarks/member_soup.py --corpus corpus/default
    .venv/bin/python benchmarks/member_soup.py --corpus corpus/wide-sp
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from weightgen.corpus import Corpus, final_checkpoints
from weightgen.sampling import evaluate_state_dict, relative_distance


def distance(a, b) -> float:
    """Symmetric: relative_distance divides by the second network's norm."""
    return (relative_distance(a, b) + relative_distance(b, a)) / 2


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The plain average of state_dicts with the same keys and shapes (summed in float64, kept in each dtype)."""
    return {k: sum(s[k].double() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}


def soup_rows(corpus: Corpus) -> pd.DataFrame:
    final = final_checkpoints(corpus.require_nonempty())
    final = final[final["family"] != "external"]
    rows = []
    for (arch, dataset), group in final.groupby(["arch", "dataset"]):
        if len(group) < 2:  # a lone parent has nobody to be near
            continue
        states = {r.member: corpus.load(r.member, int(r.step))[0] for r in group.itertuples()}
        pairs = [distance(states[a], states[b]) for a, b in itertools.combinations(states, 2)]
        soups = []
        for task, members in group.groupby("task"):
            soups.append(evaluate_state_dict(mean_state([states[m] for m in members["member"]]), arch, task))
        rows.append({"arch": arch, "dataset": dataset, "members": len(group),
                     "member_distance": float(pd.Series(pairs).median()),
                     "soup_acc": float(pd.Series(soups).median()), "member_acc": float(group["test_acc"].median())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="corpus/default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = soup_rows(Corpus(args.corpus))
    print(f"corpus {args.corpus}: median over pairs / tasks (soup = average of a task's members, no training)")
    print(table.to_string(index=False, float_format="%.3f"))
    print(f"\nmedian member distance {table['member_distance'].median():.3f}; "
          f"median soup accuracy {table['soup_acc'].median():.3f} vs members {table['member_acc'].median():.3f}")


if __name__ == "__main__":
    main()
