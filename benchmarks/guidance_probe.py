"""Does classifier-free guidance help a generated start? The sampler's guidance scale, on pairs in no suite.

Every DiT here is trained with the task condition dropped one time in ten (``DiTConfig.cond_dropout``), the
distilled students and tunes included, so the sampler can mix the conditional output with the unconditional
one: out = uncond + g × (cond − uncond). g = 1 is how the bench samples (``guidance: 1.0`` in every suite);
g = 0 is the unconditional network (the family is still given), g > 1 pushes further in the task's direction.
Guidance was never varied before this probe (docs/results.md, item 70). A start at g ≠ 1 costs two DiT passes.

For pairs in no suite and in no corpus — architectures the corpus lacks on corpus tasks, and corpus
architectures on tasks the corpus lacks, one or two per family — each guidance's sample and the seed's random
init are fine-tuned with the suites' recipe and scored as the bench scores a start (``layer_probe.py``).

    .venv/bin/python benchmarks/guidance_probe.py --run runs/sp-xsp-k100-s3-lr1e-4-ts --guidance 0,0.5,1,1.5,2
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import finetune_scores, parse_pairs  # noqa: E402

# In no suite (suites/*.yaml) and no corpus grid (configs/grids/*.yaml): new widths on corpus tasks, and corpus
# architectures on a label order, template seed and digits transform that no suite or grid names.
PAIRS = [("mlp:hidden=72x72", "mnist1d"), ("mlp:hidden=48x96", "digits"), ("cnn1d:channels=20x20", "mnist1d"),
         ("cnn2d:channels=10x20", "digits"), ("transformer:dim=20,heads=4,patch=8", "digits"),
         ("transformer:dim=20,depth=2,heads=2,patch=8", "digits"),
         ("mlp:hidden=64x64", "digits:label_perm=7"), ("cnn1d:channels=32x32", "mnist1d:template_seed=7"),
         ("cnn2d:channels=8x16", "digits:flip=true,rot90=3"), ("transformer:patch=8", "digits:label_perm=8")]


def main() -> None:
    from weightgen.generate import Generator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="generator run folder (as `weightgen bench --run`)")
    parser.add_argument("--guidance", default="0,0.5,1,1.5,2", type=lambda t: [float(g) for g in t.split(",") if g])
    parser.add_argument("--pairs", default="", help="';'-separated arch@task pairs (default: ten in no suite or corpus)")
    parser.add_argument("--seeds", default="0,1", type=lambda t: [int(s) for s in t.split(",")])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--out", default="runs/probe/guidance")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from weightgen.data import input_shape
    from weightgen.models import build_model

    generator = Generator.from_run(args.run)
    rows = []
    for (arch, task), seed in itertools.product(parse_pairs(args.pairs, PAIRS), args.seeds):
        starts = {"random": build_model(arch, input_shape(task), seed=seed).state_dict()}
        for g in args.guidance:
            generator.guidance = g
            starts[f"g={g:g}"] = {k: v.float() for k, v in generator.sample(arch, task, seed=seed).state_dicts[0].items()}
        scored = finetune_scores(arch, task, seed, starts, args.steps, args.eval_every)
        rows += scored
        print(pd.DataFrame(scored).drop(columns=["arch", "task"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
              f"\n^ {arch} @ {task}, seed {seed}", flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "guidance.csv", index=False)
    # a task with options (a ':') is one of the unseen tasks; a plain dataset goes with an unseen architecture
    table = table.assign(saved=table["saved"].fillna(-1.0),
                         kind=["unseen task" if ":" in t else "unseen arch" for t in table["task"]])
    print("\nmedian over pairs and seeds (saved: not reached counts as -1):")
    print(table.groupby("start")[["val@0", "val@50", "final", "saved"]].median().to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nmedian saved by kind of pair:")
    print(table.pivot_table(index="start", columns="kind", values="saved", aggfunc="median").to_string(
        float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {out / 'guidance.csv'}")


if __name__ == "__main__":
    main()
