"""Experiment: a DiT that generates a target's weights *given a reference network*; prints tables.

In a corpus whose members share a frame (``configs/grids/shared-parent.yaml``), the average of
members is a working network (``benchmarks/member_soup.py``), but a small DiT cannot store every
architecture's weights: its samples from noise alone stay at chance. Here the DiT is given what the
``retrieval`` baseline would start from — the nearest corpus checkpoint fitted to the target's shapes
by weight selection — as extra input channels, and denoises the *residual* target − reference
(scaled to unit variance). Learning nothing gives back the reference; anything it learns about how
an architecture or task differs from its neighbour is added on top.

Training pairs are leave-out retrievals, so the DiT sees the references it will get for unseen cases:
for every latent sequence of the run, three references are retrieved from the corpus without the
sequence's own task (``task``), without its architecture (``arch``), or without either (``both``).

Scored without fine-tuning: test accuracy of samples (1 and ``--ddim-steps`` DDIM steps) beside the
accuracy of the reference itself, (a) for one member of every corpus architecture (training targets,
each leave-out mode) and (b) with ``--suite``, for the suite's cases at their first seed with the
reference the bench's ``retrieval`` method gives (the whole corpus).

    .venv/bin/python benchmarks/reference_conditioned.py --run runs/shared-parent --corpus corpus/shared-parent \\
        --out runs/v-ref --suite suites/default.yaml
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import pandas as pd
import torch
from init_conditioned import conditioned_dit, conditioned_step  # benchmarks/ is on sys.path when run as a script
from safetensors.torch import save_file

from weightgen import diffusion
from weightgen.baselines import CorpusIndex, make_init
from weightgen.encoder import PatchAutoencoder
from weightgen.flops import counting_flops
from weightgen.sampling import evaluate_state_dict
from weightgen.sequences import SequenceSet, denormalize, family_id, normalize, task_features
from weightgen.specs import parse_arch
from weightgen.suite import load_suite
from weightgen.tokens import tokenize

LEAVE_OUT = ("task", "arch", "both")  # what a training reference may not share with its target


def without(index: CorpusIndex, arch: str, task: str, leave_out: str) -> CorpusIndex:
    """A view of ``index`` whose candidates share neither the target's task nor architecture, per ``leave_out``."""
    finals = index.finals
    same = {"task": finals["task"] == task, "arch": finals["arch"] == arch,
            "both": (finals["task"] == task) | (finals["arch"] == arch), "none": finals["task"] != finals["task"]}
    view = copy.copy(index)  # shares the loaded state_dicts
    view.finals = finals[~same[leave_out]]
    return view


def reference(encoder: PatchAutoencoder, index: CorpusIndex, arch: str, task: str, seed: int):
    """(tokens, standardised latents, retrieval Init) of the retrieval init of ``arch`` on ``task``."""
    init = make_init("retrieval", arch, task, seed, index)
    tokens = tokenize(init.state_dict, encoder.config.patch_size)
    with torch.no_grad():
        return tokens, encoder.standardize(encoder.encode(normalize(tokens), tokens.coords)), init


class ResidualSampler:
    """Samples target latents = reference latents + scale · DDIM(residual | reference, arch, task)."""

    def __init__(self, dit, encoder: PatchAutoencoder, scale: float):
        self.dit, self.encoder, self.scale = dit, encoder, scale

    @torch.no_grad()
    def __call__(self, tokens, z_ref, arch: str, task: str, steps: int) -> tuple[dict, int]:
        n = len(tokens)
        coords, depth, cond = tokens.coords[None], tokens.depth[None], z_ref[None]
        family = torch.tensor([family_id(parse_arch(arch).family)])
        features = task_features(task)[None]

        def model_fn(x, t, mask, drop_task=None, **_):
            return self.dit(torch.cat([x, cond], -1), t, coords, depth, mask, family, features, drop_task=drop_task)

        with counting_flops() as counter:  # the DiT's attention included (weightgen.flops)
            r = diffusion.sample(model_fn, (1, n, z_ref.shape[-1]), steps=steps, generator=torch.Generator().manual_seed(0))
            z = z_ref + self.scale * r[0]
            values = self.encoder.decode(self.encoder.unstandardize(z), tokens.coords)
        return denormalize(tokens, values), int(counter.get_total_flops())


def train(data: SequenceSet, refs: list[list[torch.Tensor]], args) -> tuple[torch.nn.Module, float]:
    """The reference-conditioned DiT, trained on (sequence, leave-out reference) pairs; returns it and the residual scale."""
    residuals = torch.cat([data.sequence(i)[0] - ref for i, per_mode in enumerate(refs) for ref in per_mode])
    scale = float(residuals.std())
    dit = conditioned_dit(data.values.shape[1], args.preset)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(0)
    started, running = time.perf_counter(), 0.0
    dit.train()
    for step in range(1, args.steps + 1):
        index = torch.randint(0, len(data), (args.batch_size,), generator=g).tolist()
        modes = torch.randint(0, len(LEAVE_OUT), (args.batch_size,), generator=g).tolist()
        items, conds = [], []
        for i, m in zip(index, modes):
            v, c, d = data.sequence(i)
            start = int(torch.randint(0, max(len(v) - args.max_len, 0) + 1, (1,), generator=g))
            window = slice(start, start + args.max_len)
            ref = refs[i][m][window]
            items.append(((v[window] - ref) / scale, c[window], d[window]))
            conds.append((ref, c[window], d[window]))
        running += conditioned_step(dit, optimizer, items, conds, data.family[index], data.task[index], g)
        if step % 250 == 0:
            print(f"step {step:5d}  loss {running / 250:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
            running = 0.0
    dit.eval()
    return dit, scale


def score(sampler: ResidualSampler, encoder, index: CorpusIndex, cases: list[dict], ddim_steps: int) -> pd.DataFrame:
    rows = []
    for case in cases:
        view = without(index, case["arch"], case["task"], case["leave_out"])
        tokens, z_ref, init = reference(encoder, view, case["arch"], case["task"], case["seed"])
        row = {**case, "reference": init.source.split("/")[0], "ref_acc": evaluate_state_dict(init.state_dict, case["arch"], case["task"])}
        for steps in (1, ddim_steps):
            state, flops = sampler(tokens, z_ref, case["arch"], case["task"], steps)
            row[f"acc_{steps}step"] = evaluate_state_dict(state, case["arch"], case["task"])
            row[f"flops_{steps}step"] = flops
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/shared-parent"), help="run with encoder/ and latents.safetensors")
    parser.add_argument("--corpus", default="corpus/shared-parent")
    parser.add_argument("--out", type=Path, default=Path("runs/v-ref"))
    parser.add_argument("--suite", default=None, help="also score this suite's cases (at init, no fine-tuning)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--ddim-steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    encoder = PatchAutoencoder.load(args.run / "encoder")
    data = SequenceSet.load(args.run / "latents.safetensors")
    index = CorpusIndex(args.corpus)
    seeds = index.finals.set_index("member")["seed"]
    started = time.perf_counter()
    refs, cache = [], {}
    for meta in data.meta:
        for leave_out in LEAVE_OUT:
            key = (meta["member"], leave_out)
            if key not in cache:
                view = without(index, meta["arch"], meta["task"], leave_out)
                cache[key] = reference(encoder, view, meta["arch"], meta["task"], int(seeds[meta["member"]]))[1]
        refs.append([cache[meta["member"], m] for m in LEAVE_OUT])
        if len(refs[-1][0]) != len(data.sequence(len(refs) - 1)[0]):
            raise ValueError(f"{meta['member']}: the reference's token layout differs from the stored latents")
    print(f"{len(data)} sequences × {len(LEAVE_OUT)} leave-out references ({time.perf_counter() - started:.0f} s)")

    dit, scale = train(data, refs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(dit.state_dict(), str(args.out / "reference_conditioned_dit.safetensors"))
    sampler = ResidualSampler(dit, encoder, scale)

    finals = index.finals
    members = finals.sort_values(["arch", "task", "member"]).groupby("arch").head(1)
    corpus_cases = [{"arch": r.arch, "task": r.task, "seed": int(r.seed), "leave_out": m}
                    for r in members.itertuples() for m in LEAVE_OUT]
    table = score(sampler, encoder, index, corpus_cases, args.ddim_steps)
    table.to_csv(args.out / "corpus_cases.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.drop(columns=["seed"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(table.groupby("leave_out")[["ref_acc", "acc_1step", f"acc_{args.ddim_steps}step"]].median().to_string(float_format="%.3f"))
        if args.suite:
            suite = load_suite(args.suite)
            cases = [{"arch": c.arch, "task": c.task, "split": c.split, "seed": suite.seeds_for(c)[0], "leave_out": "none"}
                     for c in suite.cases]
            table = score(sampler, encoder, index, cases, args.ddim_steps)
            table.to_csv(args.out / "suite_cases.csv", index=False)
            print(f"\nsuite {suite.name}, at init (reference = the bench's retrieval init):")
            print(table.drop(columns=["seed", "leave_out"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            print(table.groupby("split")[["ref_acc", "acc_1step", f"acc_{args.ddim_steps}step"]].median().to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
