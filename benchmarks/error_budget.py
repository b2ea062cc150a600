"""How far from a trained network can a start be and still save 90 %? The error budget of a generated start.

A generated start saves what it saves for two reasons at once: how far its weights are from a trained
network of the pair (fidelity), and in which directions that error lies. This separates them. For corpus
(architecture, task) pairs in no suite, each with two trained members (the corpus seeds), it fine-tunes with
the suites' recipe (as ``layer_probe.py``, AdamW, LR 0.01 for CNN1d and 0.003 otherwise, batch 100):

- ``random``: the fine-tune seed's random init, the reference the bench measures against;
- ``member``: the pair's first trained member, as it was stored (no error);
- ``twin``: the pair's other member, trained from the other seed in the same frame (a natural error);
- ``noise=r``: the member plus Gaussian noise of ``r`` times each tensor's root mean square (error ``r``);
- with ``--corpus-starts``: ``retrieval`` and ``weight-selection`` as the bench builds them from the corpus
  without the pair's architecture, and without its task (the corpus starts of an unseen architecture or task);
- with ``--run``: ``sample``, the generator's sample for the pair at the fine-tune seed (as the bench samples
  it), and ``toward=a``, the member moved ``a`` of the way to the sample (the sample's own error, scaled).

Each start's distance is its relative error to the member, sqrt(Σ‖start − member‖² ÷ Σ‖member‖²) over the
parameters (BatchNorm's running statistics are neither noised nor counted), beside its norm over the member's and
their cosine (what makes the distance: a start of the member's norm at cosine c is sqrt(2 − 2c) away); a fit is scored as the bench scores a start (the first evaluation at 99 % of random init's
final validation accuracy; saved = 1 − its steps ÷ random's; not reached counts as −1 in the medians). The
``noise`` curve says what error a start of that kind can carry and still save 90 %; ``toward`` says whether the
generator's error costs more than noise of the same size (its directions) or the same (its size). The sample's
price (its FLOPs) is not counted here: the bench counts it.

    .venv/bin/python benchmarks/error_budget.py --corpus corpus/default --out runs/probe/error-budget
    .venv/bin/python benchmarks/error_budget.py --corpus corpus/wide-sp --run runs/sp-xsp-k100-s3-lr1e-4-ts ...

``--geometry-only`` skips the fine-tunes and prints where the starts sit (distance, norm ratio, cosine), the check
a generator's samples get before a bench (``--noise '' --toward ''`` leaves the sample beside the members).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
import torch

from weightgen.baselines import RETRIEVAL_KEYS, CorpusIndex, _Case, _retrieval_candidates, make_init
from weightgen.data import input_shape
from weightgen.models import build_model
from weightgen.specs import parse_arch, parse_task
from weightgen.suite import load_suite
from weightgen.weight_selection import fit_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import finetune_scores  # noqa: E402

SUITES = ["suites/default.yaml", "suites/smoke.yaml", "suites/holdout.yaml", "suites/holdout2.yaml"]


def relative_error(state: dict[str, torch.Tensor], member: dict[str, torch.Tensor], names: set[str]) -> float:
    """sqrt(Σ‖state − member‖² ÷ Σ‖member‖²) over the tensors ``names`` (the network's parameters)."""
    diff = sum(float((state[k].float() - member[k].float()).pow(2).sum()) for k in names)
    norm = sum(float(member[k].float().pow(2).sum()) for k in names)
    return (diff / norm) ** 0.5


def geometry(state: dict[str, torch.Tensor], member: dict[str, torch.Tensor], names: set[str]) -> dict[str, float]:
    """The start's norm over the member's (‖start‖ ÷ ‖member‖) and their cosine, over the tensors ``names``."""
    a = torch.cat([state[k].float().reshape(-1) for k in sorted(names)])
    b = torch.cat([member[k].float().reshape(-1) for k in sorted(names)])
    return {"norm_ratio": float(a.norm() / b.norm()), "cosine": float(a @ b / (a.norm() * b.norm()).clamp(min=1e-12))}


def with_noise(member: dict[str, torch.Tensor], r: float, seed: int, names: set[str]) -> dict[str, torch.Tensor]:
    """The member with N(0, (r × the tensor's root mean square)²) added to each tensor of ``names`` (the
    parameters; BatchNorm's running statistics stay as stored, as ``noisy-nearest`` leaves them, since a noised
    variance can go negative)."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(member)
    for k in sorted(names):
        v = member[k].float()
        out[k] = v + torch.randn(v.shape, generator=gen) * (r * v.pow(2).mean().sqrt())
    return out


def toward(member: dict[str, torch.Tensor], sample: dict[str, torch.Tensor], a: float) -> dict[str, torch.Tensor]:
    """member + a × (sample − member) on the floating tensors."""
    return {k: v.float() + a * (sample[k].float() - v.float()) if v.is_floating_point() else v for k, v in member.items()}


def suite_pairs(paths: list[str]) -> set[tuple]:
    """Every (architecture, task) spec pair any of these suites names, to keep them out of the probe."""
    pairs = set()
    for path in paths:
        if Path(path).is_file():
            pairs |= {(str(parse_arch(c.arch)), str(parse_task(c.task))) for c in load_suite(path).cases}
    return pairs


def choose_pairs(final: pd.DataFrame, per_family: int, exclude: set[tuple]) -> list[tuple[str, str, list[str]]]:
    """``per_family`` (architecture, task) pairs per family with two or more members among ``final`` (the members'
    final checkpoints, ``CorpusIndex.finals``), spread evenly over the family's pairs sorted by name; each with its
    members' ids in corpus-seed order."""
    chosen = []
    for _, family in final.groupby("family", sort=True):
        pairs = []
        for (arch, task), rows in family.groupby(["arch", "task"], sort=True):
            if len(rows) >= 2 and (str(parse_arch(arch)), str(parse_task(task))) not in exclude:
                pairs.append((arch, task, list(rows.sort_values("seed")["member"])))
        if pairs:
            step = max(len(pairs) / per_family, 1.0)
            chosen += [pairs[int(i * step)] for i in range(min(per_family, len(pairs)))]
    return chosen


def soup(case: _Case, size: int) -> dict[str, torch.Tensor]:
    """The plain average of every member (all corpus seeds) of the ``size`` (architecture, task) pairs retrieval
    ranks nearest, each fitted to the target (weight selection) and put in the target's label order first. In a
    shared frame the average of members is itself a working network (docs/results.md items 5, 64): it keeps what
    the members share and drops what one training seed added. No draw among equally near members: all are in it."""
    ranked = _retrieval_candidates(case).sort_values(RETRIEVAL_KEYS + ["member"])
    chosen = ranked.drop_duplicates(["arch", "task"]).head(size)[["arch", "task"]]
    rows = ranked.merge(chosen, on=["arch", "task"])
    target = case.model.state_dict()
    fitted = [case.in_label_order(fit_state_dict(case.index.state_dict(m), target)[0], t)
              for m, t in zip(rows["member"], rows["task"])]
    return {k: (sum(f[k].double() for f in fitted) / len(fitted)).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in target.items()}


def held_out_starts(index: CorpusIndex, arch: str, task: str, seed: int,
                    soups: tuple[int, ...] = ()) -> dict[str, dict[str, torch.Tensor]]:
    """``retrieval`` and ``weight-selection`` as the bench builds them, from the corpus without the pair's
    architecture (as for an unseen architecture) and without the pair's task (an unseen task): the corpus starts
    placed on the same budget; with ``soups``, the average of the members of that many nearest pairs by retrieval's
    ranking (``soup=k``) too. ``index``'s member table is restored."""
    finals, out = index.finals, {}
    try:
        for held, column, value in (("arch", "arch", arch), ("task", "task", task)):
            index.finals = finals[finals[column] != value].reset_index(drop=True)
            for method in ("retrieval", "weight-selection"):
                init = make_init(method, arch, task, seed, index)
                if init.state_dict is not None:
                    out[f"{method}, {held} held out"] = as_float(init.state_dict)
            if soups:
                case = _Case(parse_arch(arch), parse_task(task), seed,
                             build_model(arch, input_shape(task), seed=seed), index, 0.0)
            for size in soups:
                out[f"soup={size}, {held} held out"] = as_float(soup(case, size))
    finally:
        index.finals = finals
    return out


def as_float(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A new dict with the floating tensors as float32 (the others as they are), so a cached state is never changed."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_member(index: CorpusIndex, member: str) -> dict[str, torch.Tensor]:
    """The member's final checkpoint (read once by the index), as float32 (:func:`as_float`)."""
    return as_float(index.state_dict(member))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--run", default="", help="generator run folder: adds the sample and the toward=a starts")
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--families", default="", help="comma-separated: only these families")
    parser.add_argument("--noise", default="0.1,0.2,0.35,0.5,0.75,1.0", type=lambda t: [float(x) for x in t.split(",") if x])
    parser.add_argument("--toward", default="0.25,0.5,0.75", type=lambda t: [float(x) for x in t.split(",") if x])
    parser.add_argument("--seeds", default="0,1", type=lambda t: [int(s) for s in t.split(",")])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--corpus-starts", action="store_true",
                        help="add retrieval and weight-selection from the corpus without the pair's architecture, "
                             "and without its task")
    parser.add_argument("--soups", default="", type=lambda t: tuple(int(x) for x in t.split(",") if x),
                        help="with --corpus-starts: also the average of the members of the k nearest pairs, each k")
    parser.add_argument("--geometry-only", action="store_true",
                        help="no fine-tuning: each start's distance, norm ratio and cosine to the member, medians")
    parser.add_argument("--out", default="runs/probe/error-budget")
    args = parser.parse_args()
    torch.set_num_threads(1)

    index = CorpusIndex(args.corpus)  # the members' final checkpoints, each read once
    pairs = choose_pairs(index.finals, args.per_family, suite_pairs(SUITES))
    if args.families:
        keep = set(args.families.split(","))
        pairs = [p for p in pairs if parse_arch(p[0]).family in keep]
    if not pairs:
        parser.error(f"{args.corpus} has no (architecture, task) pair in no suite with two trained members"
                     + (f" among the families {args.families}" if args.families else ""))
    generator = None
    if args.run:
        from weightgen.generate import Generator
        generator = Generator.from_run(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for (arch, task, members), seed in itertools.product(pairs, args.seeds):
        member, twin = load_member(index, members[0]), load_member(index, members[1])
        model = build_model(arch, input_shape(task), seed=seed)
        names = {name for name, _ in model.named_parameters()}
        starts = {"random": model.state_dict(), "member": member, "twin": twin}
        starts |= {f"noise={r:g}": with_noise(member, r, seed, names) for r in args.noise}
        if args.corpus_starts:
            starts |= held_out_starts(index, arch, task, seed, args.soups)
        if generator is not None:
            sample = as_float(generator.sample(arch, task, seed=seed).state_dicts[0])
            starts["sample"] = sample
            starts |= {f"toward={a:g}": toward(member, sample, a) for a in args.toward}
        if args.geometry_only:  # where the starts sit, without the fine-tunes that price them (seconds, not minutes)
            scored = [{"arch": arch, "task": task, "seed": seed, "start": name} for name in starts]
        else:
            scored = finetune_scores(arch, task, seed, starts, args.steps, args.eval_every)
        for row in scored:
            row["family"] = parse_arch(arch).family
            row["distance"] = relative_error(starts[row["start"]], member, names)
            row.update(geometry(starts[row["start"]], member, names))
        rows += scored
        print(pd.DataFrame(scored).drop(columns=["arch", "task"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
              f"\n^ {arch} @ {task}, seed {seed}", flush=True)
    table = pd.DataFrame(rows)
    if args.geometry_only:
        table.to_csv(out / "geometry.csv", index=False)
        print("\nmedian over pairs and seeds:")
        print(table.groupby("start")[["distance", "norm_ratio", "cosine"]].median().sort_values("distance")
              .to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"\nwrote {out / 'geometry.csv'}")
        return
    table.to_csv(out / "error_budget.csv", index=False)
    summarize(table, out)


def summarize(table: pd.DataFrame, out: Path) -> None:
    """Median distance and saved per start, over all pairs and per family; the saved-vs-distance plot."""
    table = table.assign(saved=table["saved"].fillna(-1.0))
    overall = table.groupby("start")[["distance", "norm_ratio", "cosine", "val@0", "final", "saved"]].median().sort_values(
        "distance")
    print("\nmedian over pairs and seeds (saved: not reached counts as -1):")
    print(overall.to_string(float_format=lambda v: f"{v:.3f}"))
    by_family = table.pivot_table(index="start", columns="family", values="saved", aggfunc="median")
    print("\nmedian saved by family:")
    print(by_family.loc[overall.index].to_string(float_format=lambda v: f"{v:.2f}"))
    plot(table, out / "error_budget.png")
    print(f"\nwrote {out / 'error_budget.csv'} and {out / 'error_budget.png'}")


MARKERS = {"twin": "s", "sample": "*", "retrieval, arch held out": "^", "retrieval, task held out": "v",
           "weight-selection, arch held out": "D", "weight-selection, task held out": "d"}


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for i, (family, rows) in enumerate(table.groupby("family")):
        color = f"C{i}"
        curve = rows[rows["start"].str.startswith("noise=") | (rows["start"] == "member")]
        med = curve.groupby("start")[["distance", "saved"]].median().sort_values("distance")
        ax.plot(med["distance"], med["saved"], "-o", color=color, label=f"{family}: member + noise (median)")
        path_rows = rows[rows["start"].str.startswith("toward=") | (rows["start"] == "member")]
        if (rows["start"] == "sample").any():
            med = path_rows.groupby("start")[["distance", "saved"]].median().sort_values("distance")
            ax.plot(med["distance"], med["saved"], ":", color=color, label=f"{family}: member moved toward the sample")
        for start, marker in MARKERS.items():
            points = rows[rows["start"] == start]
            if len(points):
                ax.scatter(points["distance"], points["saved"], marker=marker, s=90 if marker == "*" else 40,
                           color=color, edgecolor="k")
    for start, marker in MARKERS.items():  # the markers' key, in black: the colour is the family's
        if (table["start"] == start).any():
            ax.scatter([], [], marker=marker, color="k", label=f"{start} (each run)")
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.text(ax.get_xlim()[1], 0.92, "goal 0.9", ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("relative error to the trained member, ‖start − member‖ / ‖member‖")
    ax.set_ylabel("compute saved (not reached = −1)")
    ax.set_title("Error budget: what a start's distance from a trained network costs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
