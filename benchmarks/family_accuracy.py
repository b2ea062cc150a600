"""One-step samples of a tuned teacher and its distilled students, scored per family on the corpus's pairs.

A bench's split medians say how much a generator saves, not which family's samples fail. This
samples every (architecture, task) pair of a corpus once from each run with `Generator.sample` (seed 0,
as `weightgen bench` samples them), scores the network on the pair's validation split, and prints the
median per family, then every pair of one family. No training; a few minutes on one core:

    .venv/bin/python benchmarks/family_accuracy.py --teacher runs/v-S-wide-la50 --corpus corpus/wide \
        --student runs/xsp-k100 --student runs/xsp-k100-s3000 --show transformer

`--targets RUN` scores a distillation's stored targets too (`targets.safetensors`, what the student was taught:
the teacher's sample moved by K fine-tune steps), so a family the student fails can be told from one whose
targets are poor. Their median over the pairs is the distillation log's step-0 `teacher_val_acc_median`.
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


def targets_accuracy(run_dir: Path, corpus_dir: Path) -> dict[tuple[str, str], float]:
    """Each corpus pair's stored distillation target, scored on the pair's validation split."""
    from weightgen.checkpoint import CheckpointError, read_weights
    from weightgen.distill_targets import TARGETS_FILE, pair_key
    from weightgen.dit_train import load_dit
    from weightgen.encoder import PatchAutoencoder
    from weightgen.tune_target import TuneTarget

    path = run_dir / TARGETS_FILE
    if not path.is_file():
        raise SystemExit(f"{path}: no stored targets (a distillation with --target-steps writes them)")
    try:
        stored = read_weights(path)  # the project's safetensors reader: a truncated or corrupt file is named
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    patch_size = PatchAutoencoder.load(run_dir / "encoder").config.patch_size
    latent_dim = load_dit(run_dir / "dit").cfg.latent_dim
    scores = {}
    with torch.no_grad():
        for index, (arch, task) in enumerate(corpus_pairs(Corpus(corpus_dir))):  # the distillation's order
            key = pair_key(index, arch, task)
            if key not in stored:
                raise SystemExit(f"{path}: no target {key!r}: made from another corpus than {corpus_dir}?")
            pair = TuneTarget(arch, task, patch_size, latent_dim, "coords")
            scores[arch, task] = pair.val_acc(pair.state_from_patches(stored[key]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="a tuned run folder (`weightgen dit tune`)")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/default"))
    parser.add_argument("--student", type=Path, action="append", default=[], help="a distilled student (repeatable)")
    parser.add_argument("--targets", type=Path, action="append", default=[],
                        help="a distillation whose stored targets to score (repeatable)")
    parser.add_argument("--show", default=None, help="a family whose pairs to print one by one")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = family_accuracy([args.teacher, *args.student], args.corpus)
    for run_dir in args.targets:
        scores = targets_accuracy(run_dir, args.corpus)
        table[f"{run_dir.name} targets"] = [scores[arch, task] for arch, task in zip(table["arch"], table["task"])]
    runs = [c for c in table.columns if c not in ("family", "arch", "task")]
    print("median one-step validation accuracy per family\n" + table.groupby("family")[runs].median().round(3).to_string())
    if args.show:
        print(f"\n{args.show}\n" + table[table["family"] == args.show].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
