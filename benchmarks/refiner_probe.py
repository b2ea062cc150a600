"""Can a generator that reads retrieval's start write a better one? A probe before any product code.

The generators from noise end at or near chance on unseen cases, while the corpus starts (``retrieval``,
``weight-selection``) begin at 0.3-0.9 accuracy. Levers 6 and 8 of docs/results.md gave a tiny latent DiT the
retrieval init and found every correction harmful; this probe asks again with a patch-writing DiT, the corpus
members as targets, function-matching losses and any corpus (item 66): trained to turn retrieval's init into the
member of that (architecture, task), does it write starts that fine-tune faster than its input?

The DiT's output is added to its input, and adaLN-Zero makes that output exactly zero at step 0, so an
untrained refiner *is* retrieval; training moves it only where the loss says. Its training inputs mimic the
bench's two target splits without ever showing the held-out cases:
- ``arch`` view: retrieval with every member of the pair's architecture removed from the corpus (as the
  bench's retrieval sees an unseen architecture);
- ``task`` view: retrieval with every member of the pair's task removed (an unseen task).
Held-out architectures and tasks (``--holdout-arch``, ``--holdout-task``) are removed from every index the
training reads, targets and inputs alike; they are scored with the same views afterwards.

Loss per (pair, seed, view): ``--member-weight`` × the mean square to the member's normalised patches +
``--task-weight`` × the refined network's cross-entropy on a training batch of the pair's task + ``--kl-weight`` ×
the KL divergence from the member's predictions to the refined network's on that batch.

    .venv/bin/python benchmarks/refiner_probe.py --corpus corpus/arch-rich --steps 2000 --lookahead 10 \
        --member-weight 0 --task-weight 1 --out runs/rp-ar-XS-task
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from weightgen import diffusion
from weightgen.baselines import CorpusIndex, make_init
from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
from weightgen.dit_distill import output_error
from weightgen.encoder import valid_mask
from weightgen.pairs import corpus_pairs, family_recipe, family_recipes
from weightgen.specs import parse_arch, parse_task
from weightgen.tune_target import TuneTarget, patches_from_state
from weightgen.weight_selection import fit_state_dict

PATCH = 32
VIEWS = ("arch", "task")


def without(index: CorpusIndex, drop) -> CorpusIndex:
    """A view of ``index`` whose finals lack the rows ``drop(finals)`` marks (caches shared)."""
    view = copy.copy(index)
    view.finals = index.finals[~drop(index.finals)].reset_index(drop=True)
    return view


def new_refiner(preset: str) -> DiT:
    """A patch-reading, patch-writing DiT whose output (a correction) is exactly zero until it is trained."""
    cfg = DiTConfig(latent_dim=PATCH, out_dim=PATCH, **DIT_PRESETS[preset])
    cfg.cond_dropout = 0.0  # the task condition is always given; nothing is sampled without it
    return DiT(cfg)


def refined_patches(refiner: DiT, p: TuneTarget, x: torch.Tensor) -> torch.Tensor:
    """The start's normalised patches ``x`` [N, P] plus the refiner's correction, padding left at zero."""
    t_last = torch.full((1,), diffusion.NUM_TRAIN_STEPS - 1, dtype=torch.long)
    delta = refiner(x[None], t_last, p.coords, p.depth, p.mask, p.family, p.features)[0]
    return x + torch.where(valid_mask(p.coords[0], PATCH), delta, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="corpus/default")
    ap.add_argument("--preset", default="XS")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--pairs-per-step", type=int, default=8)
    ap.add_argument("--member-weight", type=float, default=1.0, help="x the mean square to the member's patches")
    ap.add_argument("--task-weight", type=float, default=0.1)
    ap.add_argument("--kl-weight", type=float, default=0.0, help="x KL(member's predictions || refined network's)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--lookahead", type=int, default=20, help="fine-tune steps of the scored starts")
    ap.add_argument("--holdout-arch", action="append", default=None)
    ap.add_argument("--holdout-task", action="append", default=None)
    ap.add_argument("--sources", type=int, default=0,
                    help="+ this many more arch-view inputs per training target: other architectures' members on its task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    holdout_archs = {parse_arch(a).to_string() for a in (args.holdout_arch or
                     ["mlp:hidden=64x64", "cnn1d:channels=32x32", "cnn2d:channels=16x16x16",
                      "transformer:dim=16,depth=1,heads=2,patch=8"])}
    holdout_tasks = {parse_task(t).to_string() for t in (args.holdout_task or
                     ["mnist1d:template_seed=1", "digits:rot90=1"])}
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    index = CorpusIndex(args.corpus)
    recipes = family_recipes(index.corpus)
    finals = index.finals
    # what training may read: no member of a held-out architecture or task, as input or as target
    train_index = without(index, lambda f: f["arch"].isin(holdout_archs) | f["task"].isin(holdout_tasks))

    def view_index(base: CorpusIndex, arch: str, task: str, view: str) -> CorpusIndex:
        return without(base, (lambda f: f["arch"] == arch) if view == "arch" else (lambda f: f["task"] == task))

    examples = []  # one dict per (target pair, member, view[, extra source]): its input and target patches
    started = time.perf_counter()
    targets: dict[tuple[str, str], TuneTarget] = {}
    for arch, task in corpus_pairs(index.corpus):
        held = arch in holdout_archs or task in holdout_tasks
        # a held-out pair is scored only on the view it is held out for
        views = ([v for v in VIEWS if (v == "arch" and arch in holdout_archs) or (v == "task" and task in holdout_tasks)]
                 if held else VIEWS)
        lr, _ = family_recipe(recipes, arch)
        p = targets.setdefault((arch, task), TuneTarget(arch, task, PATCH, PATCH, "gaussian", lr))
        for _, row in finals[(finals["arch"] == arch) & (finals["task"] == task)].iterrows():
            y = patches_from_state(p.tokens, index.state_dict(row["member"]))  # the target, whichever view reads it
            for view in views:
                base = index if held else train_index
                init = make_init("retrieval", arch, task, int(row["seed"]), view_index(base, arch, task, view))
                if init.state_dict is None:
                    continue
                examples.append({"p": p, "view": view, "held": held, "member": row["member"], "source": init.source,
                                 "x": patches_from_state(p.tokens, init.state_dict), "y": y, "seed": int(row["seed"]),
                                 "extra": False})
                if held or view != "arch" or not args.sources:
                    continue
                # more inputs for the same target: other architectures' members on the task, weight-selected to it
                others = train_index.finals[(train_index.finals["task"] == task) & (train_index.finals["arch"] != arch)
                                            & (train_index.finals["family"] == row["family"])]
                pick = torch.randperm(len(others), generator=torch.Generator().manual_seed(len(examples)))[: args.sources]
                for _, other in others.iloc[pick.tolist()].iterrows():
                    fitted, _ = fit_state_dict(index.state_dict(other["member"]), p.model.state_dict())
                    examples.append({"p": p, "view": view, "held": False, "member": row["member"],
                                     "source": other["member"], "x": patches_from_state(p.tokens, fitted), "y": y,
                                     "seed": int(row["seed"]), "extra": True})
    train = [e for e in examples if not e["held"]]
    held = [e for e in examples if e["held"]]
    scored_train = [e for e in train if not e["extra"]]
    scored_train = scored_train[:: max(1, len(scored_train) // 40)]  # about 40 training rows, retrieval's inputs only
    print(f"{len(train)} training examples, {len(held)} held out ({time.perf_counter() - started:.0f} s)", flush=True)

    refiner = new_refiner(args.preset).train()
    print(f"refiner {args.preset}: {sum(q.numel() for q in refiner.parameters()):,} parameters", flush=True)

    def refine(e) -> torch.Tensor:
        return refined_patches(refiner, e["p"], e["x"])

    def start_scores(e, values: torch.Tensor, name: str) -> dict:
        """Patch error to the member, accuracy, and (held out) accuracy after the lookahead, of one start."""
        p = e["p"]
        state = p.state_from_patches(values)
        row = {f"error_{name}": float((values - e["y"]).norm() / e["y"].norm()), f"acc_{name}": p.val_acc(state)}
        if args.lookahead and e["held"]:
            _, batch_size = family_recipe(recipes, p.arch)
            with torch.enable_grad():
                moved = p.lookahead(state, args.lookahead, batch_size, torch.Generator().manual_seed(e["seed"]))
            row[f"acc_{name}_k"] = p.val_acc(moved)
        return row

    input_scores: dict[int, dict] = {}  # the inputs never change: each is scored once, at the first evaluation

    def score(step: int) -> pd.DataFrame:
        refiner.eval()
        rows = []
        with torch.no_grad():
            for e in held + scored_train:
                p = e["p"]
                if id(e) not in input_scores:
                    input_scores[id(e)] = start_scores(e, e["x"], "in")
                rows.append({"step": step, "arch": p.arch, "task": p.task, "view": e["view"], "held": e["held"],
                             "seed": e["seed"], **input_scores[id(e)], **start_scores(e, refine(e), "out")})
        refiner.train()
        frame = pd.DataFrame(rows)
        for (is_held, view), part in frame.groupby(["held", "view"]):
            cols = ["error_in", "error_out", "acc_in", "acc_out"] + (["acc_in_k", "acc_out_k"] if is_held and args.lookahead else [])
            med = part[cols].median()
            print(f"step {step:5d} {'held ' if is_held else 'train'} {view}: n={len(part)} "
                  + " ".join(f"{c} {med[c]:.3f}" for c in cols)
                  + f"  out>in acc {float((part['acc_out'] > part['acc_in']).mean()):.2f}", flush=True)
        return frame

    optimizer = torch.optim.AdamW(refiner.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    frames = [score(0)]
    running, started = 0.0, time.perf_counter()
    for step in range(1, args.steps + 1):
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        chosen = torch.randperm(len(train), generator=g)[: args.pairs_per_step].tolist()
        optimizer.zero_grad(set_to_none=True)
        for i in chosen:
            e = train[i]
            p = e["p"]
            refined = refine(e)
            loss = args.member_weight * output_error(refined, e["y"], p.coords[0], "elements")
            if args.task_weight or args.kl_weight:  # the refined network, built once for the function losses
                _, batch_size = family_recipe(recipes, p.arch)
                network = p.state_from_patches(refined)
            if args.task_weight:
                loss = loss + args.task_weight * p.loss(network, p.batch(batch_size, g))
            if args.kl_weight:
                member = p.state_from_patches(e["y"])
                loss = loss + args.kl_weight * p.distill_loss(network, member, p.batch(batch_size, g))
            (loss / len(chosen)).backward()
            running += loss.item() / len(chosen)
        torch.nn.utils.clip_grad_norm_(refiner.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step:5d} loss {running / args.eval_every:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
            running = 0.0
            frames.append(score(step))
    pd.concat(frames).to_csv(out / "scores.csv", index=False)
    save_file({k: v.contiguous() for k, v in refiner.state_dict().items()}, out / "refiner.safetensors")
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
