"""Where does a unit of one width sit in another width's network? Same index or same proportion, in a corpus.

A shared-frame corpus (configs/grids/default.yaml, "parents") builds every member from its family's parent by
weight selection (:mod:`weightgen.weight_selection`): a layer of n units keeps the parent's units at
``linspace(0, P − 1, n)``, the same proportion of the way along. The generator's tokens name a weight by its absolute
row and chunk (:mod:`weightgen.tokens`, ``weightgen.dit.CoordEmbedder``; the coordinate noise is seeded by them too),
so the token at row i of a 64-wide and of a 128-wide layer is one position to the DiT. This measures which
correspondence the corpus's trained members keep: for every two members of a family on the same task and seed whose
architectures differ, each weight tensor of the narrower one whose shape differs from its paired tensor in the
wider one (layers paired as weight selection pairs them) is compared with the wider one's tensor read at the same
indices (the leading block) and at weight selection's proportional indices, by cosine; a third reading at randomly
chosen indices is the floor. Medians per family and layer position.

    .venv/bin/python benchmarks/frame_alignment.py --corpus corpus/default
"""

from __future__ import annotations

import argparse
import functools
import itertools

import pandas as pd
import torch

from weightgen.baselines import CorpusIndex
from weightgen.weight_selection import layers, pair_layers, select


def leading_block(source: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first ``shape[d]`` positions of ``source`` along every dimension (the same indices)."""
    return source[tuple(slice(0, n) for n in shape)]


def random_block(source: torch.Tensor, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """``shape[d]`` random positions of ``source`` along every dimension (no correspondence at all)."""
    picked = source
    for dim, n in enumerate(shape):
        picked = picked.index_select(dim, torch.randperm(source.shape[dim], generator=generator)[:n].sort().values)
    return picked


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def compare(narrow: dict[str, torch.Tensor], wide: dict[str, torch.Tensor], seed: int = 0) -> list[dict]:
    """One row per weight tensor of ``narrow`` whose paired tensor in ``wide`` has another shape (every dim ≥ it)."""
    generator = torch.Generator().manual_seed(seed)
    narrow_layers, wide_layers = layers(narrow), layers(wide)
    rows = []
    pairs = pair_layers(wide, narrow)  # narrow layer -> wide layer
    order = list(narrow_layers)
    for position, (prefix, entries) in enumerate(narrow_layers.items()):
        if prefix not in pairs:
            continue
        for name, key in entries.items():
            source_key = wide_layers[pairs[prefix]].get(name)
            if source_key is None:
                continue
            a, b = narrow[key].float(), wide[source_key].float()
            if a.ndim < 2 or a.ndim != b.ndim or a.shape == b.shape or any(x > y for x, y in zip(a.shape, b.shape)):
                continue
            where = "first" if position == 0 else "last" if position == len(order) - 1 else "middle"
            rows.append({"tensor": key, "layer": where, "same_index": cosine(a, leading_block(b, a.shape)),
                         "proportional": cosine(a, select(b, torch.empty_like(a))),
                         "random_index": cosine(a, random_block(b, a.shape, generator))})
    return rows


def alignment(index: CorpusIndex, generator=None) -> pd.DataFrame:
    """Over every two members of a family on one task and seed; with ``generator``, over the generator's samples of
    the same (architecture, task) pairs at sample seed ``seed`` instead of the members (its own coordinates)."""
    rows = []
    finals = index.finals
    rows_of = finals.set_index("member")

    @functools.cache  # a member is in a pair with every other architecture of its group: sample it once
    def sample_of(member: str) -> dict[str, torch.Tensor]:
        row = rows_of.loc[member]
        return generator.sample(row["arch"], row["task"], seed=int(row["seed"])).state_dicts[0]

    state = index.state_dict if generator is None else sample_of  # the index reads each member once too
    for (family, task, seed), group in finals.groupby(["family", "task", "seed"]):
        members = list(zip(group["arch"], group["member"], group["num_params"]))
        for (arch_a, a, pa), (arch_b, b, pb) in itertools.combinations(members, 2):
            if arch_a == arch_b:
                continue
            (narrow_arch, narrow, _), (wide_arch, wide, _) = sorted([(arch_a, a, pa), (arch_b, b, pb)], key=lambda m: m[2])
            try:
                found = compare(state(narrow), state(wide), seed=int(seed))
            except ValueError:  # layers weight selection cannot pair (another layout): no correspondence to test
                continue
            rows += [{"family": family, "task": task, "seed": seed, "narrow": narrow_arch, "wide": wide_arch, **r}
                     for r in found]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--run", default="", help="a generator run: compare its samples of the corpus pairs instead")
    parser.add_argument("--out", default="", help="write the per-tensor table here as CSV")
    args = parser.parse_args()
    generator = None
    if args.run:
        from weightgen.generate import Generator
        generator = Generator.from_run(args.run)
    table = alignment(CorpusIndex(args.corpus), generator)
    if table.empty:
        parser.error(f"{args.corpus}: no two members of one family, task and seed with tensors of different shapes")
    if args.out:
        table.to_csv(args.out, index=False)
    columns = ["same_index", "proportional", "random_index"]
    by_family = table.groupby("family")[columns].median().assign(tensors=table.groupby("family").size())
    by_layer = table.groupby(["family", "layer"])[columns].median()
    what = f"{args.run}'s sample" if args.run else "member"
    print(f"median cosine between a narrower {what}'s tensor and the wider {what}'s, read three ways\n")
    print(by_family.to_string(float_format=lambda v: f"{v:.3f}"), "\n")
    print(by_layer.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
