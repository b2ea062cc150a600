"""One-step samples of a tuned teacher and its distilled students, scored per family on the corpus's pairs.

A bench's split medians say how much a generator saves, not which family's samples fail. This
samples every (architecture, task) pair of a corpus once from each run (seed 0, coordinate noise, as
`weightgen bench` samples them), scores the network on the pair's validation split, and prints the
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
from weightgen.dit_distill import teacher_sampler
from weightgen.dit_train import load_dit
from weightgen.encoder import PatchAutoencoder
from weightgen.sampling import kept_start
from weightgen.specs import parse_arch
from weightgen.tune_target import TuneTarget


def family_accuracy(teacher_dir: Path, corpus_dir: Path, student_dirs: list[Path]) -> pd.DataFrame:
    """One row per corpus pair: its family, and each run's one-step sample's validation accuracy."""
    encoder = PatchAutoencoder.load(teacher_dir / "encoder").eval()
    teacher = load_dit(teacher_dir / "dit").eval()
    keep = teacher_sampler(teacher_dir)["keep_noise"]
    students = {path.name: load_dit(path / "dit").eval() for path in student_dirs}
    if bad := [name for name, dit in students.items() if dit.cfg.out_dim is None]:
        raise SystemExit(f"{bad}: not patch-writing students (`weightgen dit distill --output patches`)")
    frame = Corpus(corpus_dir).require_nonempty()
    frame = frame[frame["family"] != "external"]  # imported checkpoints: no pair of ours to sample
    rows = []
    with torch.no_grad():
        for arch, task in sorted(set(zip(frame["arch"], frame["task"]))):
            pair = TuneTarget(arch, task, encoder.config.patch_size, teacher.cfg.latent_dim, "coords")
            x0 = pair.one_step_x0(teacher, pair.start) + kept_start(pair.start, pair.coords, keep)
            row = {"family": parse_arch(arch).family, "arch": arch, "task": task,
                   teacher_dir.name: pair.val_acc(pair.state_from_latents(encoder, x0))}
            for name, student in students.items():
                row[name] = pair.val_acc(pair.state_from_patches(pair.one_step_patches(student, pair.start)))
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="a tuned run folder (`weightgen dit tune`)")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/default"))
    parser.add_argument("--student", type=Path, action="append", default=[], help="a patch-writing student (repeatable)")
    parser.add_argument("--show", default=None, help="a family whose pairs to print one by one")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = family_accuracy(args.teacher, args.corpus, args.student)
    runs = [c for c in table.columns if c not in ("family", "arch", "task")]
    print("median one-step validation accuracy per family\n" + table.groupby("family")[runs].median().round(3).to_string())
    if args.show:
        print(f"\n{args.show}\n" + table[table["family"] == args.show].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
