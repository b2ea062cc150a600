"""Train a generator variant (encoder + DiT) and score its samples of seen architectures; prints a table.

One lever at a time, each into its own run folder, so the effect of each is measured apart:

    .venv/bin/python benchmarks/generator_variants.py --out runs/v-canonical --canonical --steps 4000
    .venv/bin/python benchmarks/generator_variants.py --out runs/default --report-only      # score an existing run

The score is the test accuracy of sampled networks with no fine-tuning, for every corpus architecture
on its first task (in sorted order) — beside the members' own final accuracy and chance (0.1).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch


def seen_pairs(corpus_root) -> list[tuple[str, str]]:
    from weightgen.corpus import Corpus

    frame = Corpus(corpus_root).require_nonempty()
    frame = frame[frame["family"] != "external"].sort_values(["arch", "task"])
    return [(arch, group["task"].iloc[0]) for arch, group in frame.groupby("arch")]


def report(run: Path, corpus_root, samples: int, ddim_steps: int) -> pd.DataFrame:
    from weightgen.corpus import Corpus, final_checkpoints
    from weightgen.generate import Generator
    from weightgen.sampling import evaluate_state_dict

    generator = Generator.from_run(run, steps=ddim_steps)
    manifest = Corpus(corpus_root).manifest()
    rows = []
    for arch, task in seen_pairs(corpus_root):
        generation = generator.sample(arch, task, samples, seed=0)
        final = final_checkpoints(manifest[(manifest["arch"] == arch) & (manifest["task"] == task)])
        accs = [evaluate_state_dict(s, arch, task) for s in generation.state_dicts]
        rows.append({"arch": arch, "task": task, "sample_acc_mean": sum(accs) / len(accs), "sample_acc_max": max(accs),
                     "members_acc": float(final["test_acc"].mean()), "flops_per_sample": generation.flops / samples})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder for the variant")
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--canonical", action="store_true", help="sort hidden units canonically before tokenizing")
    parser.add_argument("--encoder-steps", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=4000, help="DiT training steps")
    parser.add_argument("--max-len", type=int, default=256, help="DiT training window (tokens)")
    parser.add_argument("--preset", default="S")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--ddim-steps", type=int, default=25)
    parser.add_argument("--report-only", action="store_true", help="score the run folder as it is")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if not args.report_only:
        from weightgen.dit_stage import train_dit
        from weightgen.encoder import EncoderConfig
        from weightgen.encoder_eval import run_encoder_stage

        started = time.perf_counter()
        stage = run_encoder_stage(args.corpus, args.out, EncoderConfig(patch_size=32, latent_dim=32, steps=args.encoder_steps),
                                  min_step=1000, canonical=args.canonical)
        print(f"encoder: {stage.summary} ({time.perf_counter() - started:.0f} s)")
        started = time.perf_counter()
        train_dit(args.out / "latents.safetensors", args.out / "dit", args.processes, steps=args.steps,
                  max_len=args.max_len, preset=args.preset, checkpoint_every=500, resume=True, log_every=250)
        print(f"DiT: {args.steps} steps in {time.perf_counter() - started:.0f} s")
    table = report(args.out, args.corpus, args.samples, args.ddim_steps)
    table.to_csv(args.out / "seen_samples_report.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"median sample accuracy {table['sample_acc_mean'].median():.3f} (members {table['members_acc'].median():.3f}, "
          f"chance 0.100); median FLOPs per sample {table['flops_per_sample'].median():.3g}")


if __name__ == "__main__":
    main()
