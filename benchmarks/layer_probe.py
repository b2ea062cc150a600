"""Which layers of a generated network hold its fine-tune back? Each role's tensors swapped with random init's.

The bench's generated transformers start above chance and still end below random init's final accuracy
(docs/results.md, items 46 and 52). This asks where that comes from. For each (architecture, task) pair and
seed, the run's sample (``Generator.sample``, as the bench samples it) and the same seed's random init are
fine-tuned with the suites' recipe (AdamW, LR 0.01 for CNN1d and 0.003 otherwise, batch 100), and so are
two starts per layer role: the sample with that role's tensors taken from random init (``-role``), and random
init with that role's tensors taken from the sample (``+role``). A role whose removal lifts the sample's
curve, or whose addition pulls random init's down, is where the harm is. The fit is scored as the bench
scores a start: the first evaluation (every 10 steps) at 99 % of random init's final validation accuracy,
and the final accuracy. The default pairs are in no suite and the tasks are corpus tasks, so nothing here
is chosen on a bench case.

    .venv/bin/python benchmarks/layer_probe.py --run runs/xsp-k100-s3-lr1e-4 --steps 600 --seeds 0,1
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from weightgen.data import input_shape, load_task
from weightgen.generate import Generator
from weightgen.models import build_model
from weightgen.specs import Recipe
from weightgen.training import train

PAIRS = [("transformer:dim=20,heads=4,patch=8", "digits"), ("transformer:dim=20,heads=4,patch=8", "digits:rot90=1"),
         ("transformer:dim=16,depth=2,heads=2,patch=8", "digits"),
         ("transformer:dim=16,depth=2,heads=2,patch=8", "digits:rot90=1")]
# A tensor's role, by the first pattern its name contains (the transformer's names; other families fall to
# "matrices" / "biases", so the probe runs on any architecture).
ROLES = [("norm", "norms"), ("self_attn", "attention"), ("linear", "feedforward"), ("embed", "embedding"),
         ("head", "head")]


def role(name: str) -> str:
    for pattern, label in ROLES:
        if pattern in name:
            return label
    return "biases" if name.endswith("bias") else "matrices"


def starts(sample: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The sample, random init, and per role: the sample without it (``-role``) and random init with it (``+role``)."""
    out = {"generated": sample, "random": init}
    for r in sorted({role(k) for k in sample}):
        out[f"-{r}"] = {k: init[k] if role(k) == r else v for k, v in sample.items()}
        out[f"+{r}"] = {k: sample[k] if role(k) == r else v for k, v in init.items()}
    return out


def finetune_scores(arch: str, task: str, seed: int, states: dict[str, dict[str, torch.Tensor]], steps: int,
                    eval_every: int = 10) -> list[dict]:
    """Each start (``states``, one of them "random") fine-tuned ``steps`` steps with the suites' recipe, scored
    as the bench scores a start against random init's final validation accuracy (see the module docstring),
    evaluated every ``eval_every`` steps."""
    data = load_task(task)
    curves = {}
    for name, state in states.items():
        model = build_model(arch, input_shape(task), seed=seed)
        model.load_state_dict(state)
        lr = 0.01 if arch.startswith("cnn1d") else 0.003
        result = train(model, data, Recipe(lr=lr, batch_size=100, steps=steps, eval_every=eval_every), seed=seed)
        curves[name] = {p.step: p.val_acc for p in result.curve}
    target = 0.99 * curves["random"][steps]
    random_steps = min(s for s, a in curves["random"].items() if a >= target)
    rows = []
    for name, curve in curves.items():
        reached = min((s for s, a in curve.items() if a >= target), default=float("nan"))
        rows.append({"arch": arch, "task": task, "seed": seed, "start": name, "val@0": curve[0],
                     "val@50": curve.get(50), "val@200": curve.get(200), "final": curve[steps], "steps": reached,
                     "saved": 1 - reached / random_steps if random_steps else float("nan")})
    return rows


def probe(run: str, pairs: list[tuple[str, str]], seeds: list[int], steps: int, make_starts) -> list[dict]:
    """For each pair and seed, the run's sample and the seed's random init turned into starts by ``make_starts``
    (``make_starts(sample, init)`` → {name: state_dict}, one of them "random"), each fine-tuned and scored."""
    generator = Generator.from_run(run)
    rows = []
    for (arch, task), seed in itertools.product(pairs, seeds):
        sample = {k: v.float() for k, v in generator.sample(arch, task, seed=seed).state_dicts[0].items()}
        init = build_model(arch, input_shape(task), seed=seed).state_dict()
        scored = finetune_scores(arch, task, seed, make_starts(sample, init), steps)
        rows += scored
        print(pd.DataFrame(scored).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    return rows


def parse_pairs(text: str, default: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """';'-separated ``arch@task`` pairs, or ``default`` when none is given."""
    return [tuple(p.split("@")) for p in text.split(";") if p] or default


def probe_parser(description: str, pairs_help: str, seeds: str, steps: int) -> argparse.ArgumentParser:
    """The options every probe built on :func:`probe` takes: the run, the pairs, the seeds and the fine-tune's steps."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", required=True, help="generator run folder (as `weightgen bench --run`)")
    parser.add_argument("--pairs", default="", help=f"';'-separated arch@task pairs (default: {pairs_help})")
    parser.add_argument("--seeds", default=seeds, type=lambda text: [int(s) for s in text.split(",")])
    parser.add_argument("--steps", type=int, default=steps)
    return parser


def main() -> None:
    args = probe_parser(__doc__.splitlines()[0], "transformers in no suite", "0,1", 600).parse_args()
    torch.set_num_threads(1)
    print_summary(probe(args.run, parse_pairs(args.pairs, PAIRS), args.seeds, args.steps, starts))


def print_summary(rows: list[dict]) -> None:
    """The medians per start over every pair and seed; a start that never reaches the target counts as saving −1."""
    table = pd.DataFrame(rows)
    print("\nmedian over pairs and seeds (saved: not reached counts as -1):")
    summary = table.assign(saved=table["saved"].fillna(-1.0)).groupby("start")[
        ["val@0", "val@50", "val@200", "final", "saved"]].median()
    print(summary.sort_values("final").to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
