"""What counting FLOPs costs the tune's and the distillation's loops: every op hooked, or each repeat counted once.

Until stop 18 a ``FlopCounterMode`` was open around the whole tune and distillation loop, so every op of every
step went through its Python hook. The loops now count each pair's step and each evaluation once and add that
count when it recurs (``weightgen.flops.RepeatedFlops``). This runs the same short tune and distillation twice,
bare and inside a counter around the whole call (which hooks every op again, as the old loops did), and prints
each loop's wall time (the summary's ``wall_time_s``) and counted FLOPs, which must agree. One thread:

    .venv/bin/python benchmarks/flop_counting.py --base runs/v-S-bp --teacher runs/v-S-wide-la50 --corpus corpus/wide
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from weightgen.dit_distill import DistillConfig, distill
from weightgen.dit_tune import TuneConfig, tune


def timed(name: str, run, out: Path) -> list[dict]:
    rows = []
    for hooked in (True, False):
        if hooked:
            with FlopCounterMode(display=False):
                summary = run(out / f"{name}-hooked")
        else:
            summary = run(out / f"{name}-bare")
        rows.append({"loop": name, "every op hooked": hooked, "wall s": round(summary["wall_time_s"], 1),
                     "counted FLOPs": summary["own_flops"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a tuned run to tune further (e.g. runs/v-S-bp)")
    parser.add_argument("--teacher", type=Path, required=True, help="a tuned run to distil (e.g. runs/v-S-wide-la50)")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--tune-steps", type=int, default=10)
    parser.add_argument("--inner-steps", type=int, default=50)
    parser.add_argument("--distill-steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    quiet = lambda line: None  # noqa: E731
    tune_cfg = TuneConfig(steps=args.tune_steps, eval_every=10**6, bias_penalty=1.0, inner_steps=args.inner_steps)
    distill_cfg = DistillConfig(preset="XS", steps=args.distill_steps, eval_every=10**6, neighbours=4, output="patches")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = timed(f"tune, K = {args.inner_steps}, {args.tune_steps} steps",
                     lambda d: tune(args.base, args.corpus, d, tune_cfg, log=quiet), out)
        rows += timed(f"distil XS patches, {args.distill_steps} steps",
                      lambda d: distill(args.teacher, args.corpus, d, distill_cfg, log=quiet), out)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    for loop, part in table.groupby("loop", sort=False):
        hooked, bare = (part[part["every op hooked"] == flag].iloc[0] for flag in (True, False))
        same = "the same FLOPs" if hooked["counted FLOPs"] == bare["counted FLOPs"] else "DIFFERENT FLOPs"
        print(f"{loop}: {hooked['wall s'] / bare['wall s']:.2f}x faster bare, {same}")


if __name__ == "__main__":
    main()
