"""Where does a distilled student lose its targets' accuracy? Its error split into vectors and matrices.

A student distilled with ``--target-steps K`` learns, per corpus pair, the teacher's one-step network
moved by K fine-tune steps. This rebuilds those targets (the same seeded batches as the distillation,
``weightgen.pairs.target_generator``), samples the student, and scores on the pair's validation
split:

``teacher``               the teacher's one-step network
``target``                where K fine-tune steps take it (what the student learns)
``student``               the student's one-step sample
``target+student_vectors``    the target with the student's 1-D tensors (biases, norm gains and shifts)
``target+student_matrices``   the target with the student's matrices and kernels
``target+noise``          the target plus Gaussian noise as large as the student's error, tensor by tensor

and the student's relative error ‖student − target‖ / ‖target‖ over the matrices and over the vectors.
It prints the median per family. The targets' fine-tunes take a second or so per pair on one core:

    .venv/bin/python benchmarks/student_gap.py --teacher runs/v-S-wide-la50 --student runs/xsp-k100 \\
        --corpus corpus/wide --target-steps 100 --family transformer --family mlp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from weightgen.corpus import Corpus
from weightgen.dit_distill import teacher_network, teacher_sampler
from weightgen.dit_train import load_dit
from weightgen.encoder import PatchAutoencoder
from weightgen.generate import Generator
from weightgen.pairs import corpus_pairs, family_recipe, family_recipes, target_generator
from weightgen.specs import parse_arch
from weightgen.tune_target import TuneTarget


def relative_error(student: dict, target: dict, names: list[str]) -> float:
    error = sum(float((student[k] - target[k]).pow(2).sum()) for k in names)
    return (error / max(sum(float(target[k].pow(2).sum()) for k in names), 1e-12)) ** 0.5


def student_gap(teacher_dir: Path, student_dir: Path, corpus_dir: Path, target_steps: int, families: set[str],
                seed: int = 0) -> pd.DataFrame:
    """One row per corpus pair of ``families``: the accuracies and errors of the module docstring."""
    keep = teacher_sampler(teacher_dir)["keep_noise"]
    encoder = PatchAutoencoder.load(teacher_dir / "encoder").eval()
    teacher = load_dit(teacher_dir / "dit").eval()
    student = Generator.from_run(student_dir)
    corpus = Corpus(corpus_dir)
    recipes, rows = family_recipes(corpus), []
    noise = torch.Generator().manual_seed(0)
    # index: the pair's place among the corpus pairs, as the distillation numbered its targets
    for index, (arch, task) in enumerate(tqdm(corpus_pairs(corpus), desc="pairs", leave=False)):
        family = parse_arch(arch).family
        if family not in families:
            continue
        lr, batch_size = family_recipe(recipes, arch)
        p = TuneTarget(arch, task, encoder.config.patch_size, teacher.cfg.latent_dim, "coords", lr)
        start = teacher_network(p, teacher, encoder, keep)
        with torch.enable_grad():
            target = p.lookahead(start, target_steps, batch_size, target_generator(seed, index))
        target = {k: v.detach() for k, v in target.items()}
        sample = {k: v.to(target[k].dtype) for k, v in student.sample(arch, task, seed=0).state_dicts[0].items()}
        vectors = [k for k in target if target[k].dim() == 1]
        matrices = [k for k in target if target[k].dim() > 1]
        noisy = {k: v + torch.randn(v.shape, generator=noise) * float((sample[k] - v).norm()) / v.numel() ** 0.5
                 for k, v in target.items()}
        rows.append({"family": family, "arch": arch, "task": task, "teacher": p.val_acc(start), "target": p.val_acc(target),
                     "student": p.val_acc(sample),
                     "target+student_vectors": p.val_acc({**target, **{k: sample[k] for k in vectors}}),
                     "target+student_matrices": p.val_acc({**target, **{k: sample[k] for k in matrices}}),
                     "target+noise": p.val_acc(noisy),
                     "matrix_error": relative_error(sample, target, matrices),
                     "vector_error": relative_error(sample, target, vectors)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="the tuned run the student was distilled from")
    parser.add_argument("--student", type=Path, required=True, help="a student distilled with --target-steps")
    parser.add_argument("--corpus", type=Path, default=Path("corpus/default"))
    parser.add_argument("--target-steps", type=int, default=None, help="default: the student's own (dit/distill.json)")
    parser.add_argument("--family", action="append", default=[], help="a family to score (repeatable; default: all)")
    parser.add_argument("--csv", type=Path, default=None, help="also write every pair's row here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recorded = json.loads((args.student / "dit" / "distill.json").read_text())
    steps = recorded["target_steps"] if args.target_steps is None else args.target_steps
    families = set(args.family) or {"mlp", "cnn1d", "cnn2d", "transformer"}
    table = student_gap(args.teacher, args.student, args.corpus, steps, families, seed=int(recorded.get("seed", 0)))
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"{args.student} against its K = {steps} targets: medians per family over the corpus pairs\n"
          + table.groupby("family").median(numeric_only=True).round(3).to_string())


if __name__ == "__main__":
    main()
