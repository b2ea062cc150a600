"""One-step samples of a tuned teacher and its distilled students, scored per family on the corpus's pairs.

A bench's split medians say how much a generator saves, not which family's samples fail. This
samples every (architecture, task) pair of a corpus once from each run with `Generator.sample` (seed 0,
as `weightgen bench` samples them), scores the network on the pair's validation split, and prints the
median per family, then every pair of one family. No training; a few minutes on one core:

    .venv/bin/python benchmarks/family_accuracy.py --teacher runs/v-S-wide-la50 --corpus corpus/wide \
        --student runs/xsp-k100 --student runs/xsp-k100-s3000 --show transformer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from weightgen.corpus import Corpus
from weightgen.data import input_shape, load_task
from weightgen.generate import Generator
from weightgen.models import build_model
from weightgen.pairs import corpus_pairs
from weightgen.specs import parse_arch
from weightgen.training import evaluate


def family_accuracy(run_dirs: list[Path], corpus_dir: Path) -> pd.DataFrame:
    """One row per corpus pair: its family, and each run's seed-0 sample's validation accuracy."""
    generators = {path.name: Generator.from_run(path) for path in run_dirs}
    rows = []
    with torch.no_grad():
        for arch, task in corpus_pairs(Corpus(corpus_dir)):
            model, val = build_model(arch, input_shape(task), seed=0), load_task(task).val
            row = {"family": parse_arch(arch).family, "arch": arch, "task": task}
            for name, generator in generators.items():
                model.load_state_dict(generator.sample(arch, task, seed=0).state_dicts[0])
                row[name] = evaluate(model, val)[1]
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="a tuned run folder (`weightgen dit tune`)")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/default"))
    parser.add_argument("--student", type=Path, action="append", default=[], help="a distilled student (repeatable)")
    parser.add_argument("--show", default=None, help="a family whose pairs to print one by one")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = family_accuracy([args.teacher, *args.student], args.corpus)
    runs = [c for c in table.columns if c not in ("family", "arch", "task")]
    print("median one-step validation accuracy per family\n" + table.groupby("family")[runs].median().round(3).to_string())
    if args.show:
        print(f"\n{args.show}\n" + table[table["family"] == args.show].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
