"""Does sorting hidden units canonically bring corpus members closer together? Prints a table.

For every MLP/CNN architecture of the corpus: the mean relative distance (fan-in-normalised,
``weightgen.sampling.relative_distance``, averaged over both directions) between final members on the
same task from different seeds, on different tasks of the same dataset from the same seed (= the same
init), and on different tasks from different seeds — before and after
``weightgen.canonical.canonicalize``. √2 ≈ 1.41 is the distance between uncorrelated networks.

    .venv/bin/python benchmarks/canonical_distance.py [--corpus corpus/default]
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from weightgen.canonical import canonicalize
from weightgen.corpus import Corpus, final_checkpoints
from weightgen.sampling import relative_distance


def distance(a, b) -> float:
    """Symmetric: relative_distance divides by the second network's norm, and members' norms differ."""
    return (relative_distance(a, b) + relative_distance(b, a)) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="corpus/default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = Corpus(args.corpus)
    frame = corpus.require_nonempty()
    frame = frame[frame["family"].isin(["mlp", "cnn1d", "cnn2d"])]
    final = final_checkpoints(frame)
    rows = []
    for arch, group in final.groupby("arch"):
        raw = {r.member: corpus.load(r.member, int(r.step))[0] for r in group.itertuples()}
        canonical = {m: canonicalize(s, arch) for m, s in raw.items()}
        where = {r.member: (r.task, r.dataset, r.seed) for r in group.itertuples()}
        pairs = {"same task, other seed": [], "other task, same seed": [], "other task, other seed": []}
        for a, b in itertools.combinations(raw, 2):
            (task_a, data_a, seed_a), (task_b, data_b, seed_b) = where[a], where[b]
            if data_a != data_b:
                continue  # another input shape
            if task_a == task_b:
                pairs["same task, other seed"].append((a, b))
            else:
                pairs["other task, same seed" if seed_a == seed_b else "other task, other seed"].append((a, b))
        row = {"arch": arch}
        for label, chosen in pairs.items():
            row[f"{label}: raw"] = sum(distance(raw[a], raw[b]) for a, b in chosen) / len(chosen)
            row[f"{label}: canonical"] = sum(distance(canonical[a], canonical[b]) for a, b in chosen) / len(chosen)
        rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 10):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
