"""Distil a tuned DiT into a smaller one: the same one-step samples at a fraction of the price.

The bench charges every init for what it cost to make, and one sample of the preset-S DiT costs
5e8–1.5e9 FLOPs, about 100 training steps of a digits network. On those cases the sample's price,
not its quality, loses the saving (docs/results.md, items 25–30). The student is a smaller DiT that
reads the same encoder's latents and is trained to give the teacher's one-step prediction from the
same start (coordinate noise), on the corpus's seen (architecture, task) pairs:

    loss = mean square of (student's x0 − teacher's x0)          # in latent space, every token
         + ``function_weight`` × KL(teacher's network ‖ student's network) on a training batch

With ``output="patches"`` the student writes the weights themselves: its output per token is the
teacher's *decoded* patch (normalised), the mean square is taken there, and sampling it runs no
decoder — the decoder is 40–70 % of an XS or tiny student's sample (docs/results.md, item 34).

``loss_weighting`` says how the output error is summed over a network. ``"elements"`` takes the mean
square over every value, so a network's few bias and norm vectors weigh next to nothing beside its
matrices, and the XS students left them 1–5× their own size off (docs/results.md, item 43). ``"tensors"``
gives each tensor its relative squared error, ‖out − target‖² / ‖target‖², and averages over tensors.
``"elements+vectors"`` keeps the mean square and adds that average over the 1-D tensors alone, so the
vectors are learnt without taking the matrices' share of the loss.

With ``target_steps`` K > 0 the target is not the teacher's sample but where fine-tuning takes it:
the teacher's network moved by K AdamW steps at the corpus recipe's learning rate and batch size on
the pair's training data (the same first-order move as the tune's lookahead), written back as the
student's output. The bench charges a sample for the steps it still needs, and a student trained
this way gives in one pass what the teacher's sample reaches only after K of them. The log's
``teacher_*`` figures are then the moved networks' (the student's targets). Such targets are written into the
run folder (:mod:`weightgen.distill_targets`), and ``targets_from`` reuses another run's, made by the same teacher,
corpus and target settings, to try another student without making them again.

With ``target_start="retrieval"`` those K steps start instead from the ``retrieval`` baseline's init of the
pair (:mod:`weightgen.baselines`: the nearest corpus member, fitted by weight selection; on a corpus pair, the
pair's own member). The bench's retrieval starts fine-tune several times faster than generated ones of the
same accuracy (docs/results.md, items 47 and 50), so this asks whether a student taught such networks across
each family's widths gives starts like them. The corpus's final checkpoints are read for it; the suites'
cases never are, as the neighbours keep their architectures out.

Otherwise no corpus weights and no unseen data are read: the teacher's samples are the targets. The corpus has
a dozen architectures; ``neighbours`` adds that many more per corpus pair, its widths scaled by one
random factor (:func:`weightgen.pairs.neighbour_arch`), labelled by the teacher alone, so the student learns the
teacher's answer across each family's widths rather than at a dozen points (``exclude_archs`` keeps
named architectures, e.g. a suite's unseen ones, out of them). The student's
run folder samples like the teacher (``dit/config.json``'s ``sampler``), and its ``dit/distill.json``
counts the generator's whole training cost, the teacher's included, for the bench's amortisation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from weightgen.flops import RepeatedFlops, counting_flops
from weightgen.io import file_digest
from weightgen.pairs import corpus_pairs, family_recipe, family_recipes, neighbour_pairs, target_generator
from weightgen.tokens import COORD_COLUMNS

DISTILL_FILE = "distill.json"
LOSS_WEIGHTINGS = ("elements", "tensors", "elements+vectors")
TARGET_STARTS = ("teacher", "retrieval")  # where the targets' fine-tune steps start: the teacher's sample, or retrieval's init
_TENSOR, _NDIM = COORD_COLUMNS.index("tensor"), COORD_COLUMNS.index("ndim")  # a token's tensor, and that tensor's ndim


class DistillError(ValueError):
    """A teacher that cannot be distilled, or settings that make no student."""


@dataclass
class DistillConfig:
    preset: str = "XS"  # the student's size (weightgen.dit.DIT_PRESETS); XS: docs/results.md, items 34-35
    steps: int = 3000
    pairs_per_step: int = 8
    lr: float = 1e-3
    eval_every: int = 500
    function_weight: float = 0.0  # > 0: + this × KL(teacher's network ‖ student's) on a batch of the pair's training data
    batch_size: int = 128
    holdout_archs: list[str] = field(default_factory=list)  # corpus architectures never distilled on, scored apart
    neighbours: int = 4  # + this many width-scaled architectures per corpus pair, labelled by the teacher
    exclude_archs: list[str] = field(default_factory=list)  # never among the neighbours (a suite's unseen architectures)
    output: str = "latents"  # "patches": the student writes normalised patches, and sampling it skips the decoder
    target_steps: int = 0  # > 0: the target is the teacher's network after this many fine-tune steps on the pair's task
    target_start: str = "teacher"  # or "retrieval": those steps start from the retrieval baseline's init (module docstring)
    loss_weighting: str = "elements"  # or "tensors", "elements+vectors": how the output error is summed (module docstring)
    seed: int = 0
    targets_from: str = ""  # a run folder whose stored targets (the same teacher, corpus and target settings) are reused

    def __post_init__(self):
        from weightgen.dit import DIT_PRESETS
        from weightgen.sampling import OUTPUT_KINDS

        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"unknown output {self.output!r}; valid: {', '.join(OUTPUT_KINDS)}")
        if self.preset not in DIT_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(DIT_PRESETS)}")
        if min(self.steps, self.pairs_per_step, self.eval_every, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError("steps, pairs_per_step, eval_every and batch_size must be >= 1 and lr > 0")
        if self.function_weight < 0:
            raise ValueError(f"function_weight must be >= 0, got {self.function_weight}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {self.neighbours}")
        if self.target_steps < 0:
            raise ValueError(f"target_steps must be >= 0, got {self.target_steps}")
        if self.target_start not in TARGET_STARTS:
            raise ValueError(f"unknown target_start {self.target_start!r}; valid: {', '.join(TARGET_STARTS)}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss_weighting {self.loss_weighting!r}; valid: {', '.join(LOSS_WEIGHTINGS)}")
        if self.targets_from and not self.target_steps and self.target_start == "teacher":
            raise ValueError("targets_from reuses written targets: it needs target_steps > 0 or target_start 'retrieval'")


def tensor_balanced_error(out: torch.Tensor, target: torch.Tensor, tensor_index: torch.Tensor,
                          floor: float = 1e-4) -> torch.Tensor:
    """The mean over tensors of each one's ‖out − target‖² / ‖target‖², from per-token rows [N, D].

    ``tensor_index`` [N] names each token's tensor. ``floor`` × the tensor's entry count (its tokens × D) is
    added to its ‖target‖², so an all-zero target (a fresh bias) gives a mean square, not a division by zero.
    """
    tensors, index = torch.unique(tensor_index, return_inverse=True)
    index = index.to(out.device)
    error = torch.zeros(len(tensors), device=out.device).index_add(0, index, (out - target).pow(2).sum(-1))
    size = torch.zeros(len(tensors), device=out.device).index_add(0, index, target.pow(2).sum(-1))
    count = torch.bincount(index, minlength=len(tensors)) * target.shape[-1]
    return (error / (size + floor * count)).mean()


def output_error(out: torch.Tensor, target: torch.Tensor, coords: torch.Tensor, weighting: str) -> torch.Tensor:
    """A student's error on one pair, summed over the network as ``weighting`` says (module docstring).

    ``out`` and ``target``: one row per token (a leading batch axis of 1 is dropped); ``coords``: the tokens'
    coordinates (``weightgen.tokens.COORD_COLUMNS``), which name each token's tensor and its ndim.
    """
    out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1, target.shape[-1])
    if weighting == "tensors":
        return tensor_balanced_error(out, target, coords[:, _TENSOR])
    error = (out - target).pow(2).mean()
    vector = coords[:, _NDIM] == 1
    if weighting == "elements+vectors" and vector.any():
        error = error + tensor_balanced_error(out[vector], target[vector], coords[vector, _TENSOR])
    return error


def teacher_sampler(run_dir: Path) -> dict:
    """The teacher's one-step sampler from its ``dit/config.json``; a clear error for any other DiT."""
    config_file = run_dir / "dit" / "config.json"
    if not config_file.is_file():
        raise DistillError(f"{run_dir}: no dit/config.json; the teacher must be a tuned run (`weightgen dit tune`)")
    sampler = json.loads(config_file.read_text()).get("sampler", {})
    if sampler.get("output", "latents") != "latents":
        raise DistillError(f"{run_dir}: its DiT writes patches itself (a distilled student); distil its teacher instead")
    if sampler.get("match_scales", False):  # the student would copy the option but learn the unmatched samples
        raise DistillError(f"{run_dir}: its samples' scales are matched to a corpus (`weightgen dit match-scales`); "
                           "distil the run it was made from")
    if sampler.get("init_spectrum", False):  # likewise: the student would learn the samples before the reshape
        raise DistillError(f"{run_dir}: its samples' spectra are reshaped (`weightgen dit init-spectrum`); "
                           "distil the run it was made from")
    if sampler.get("canvas") or sampler.get("via_archs"):  # the student would write each pair's own shapes
        raise DistillError(f"{run_dir}: it samples architectures through others (`dit tune --canvas`, `dit via-archs`); "
                           "distil the run it was made from")
    if sampler.get("steps") != 1 or sampler.get("noise") != "coords":
        raise DistillError(f"{run_dir}: the teacher samples with {sampler or 'DDIM from Gaussian noise'}; only a "
                           "one-step DiT from coordinate noise (a `weightgen dit tune` run) can be distilled")
    return sampler


def teacher_network(p, teacher, encoder, keep: str) -> dict[str, torch.Tensor]:
    """The teacher's one-step network for the pair ``p`` (a ``TuneTarget``), its start kept as ``keep`` says."""
    from weightgen.sampling import kept_start

    with torch.no_grad():
        return p.state_from_latents(encoder, p.one_step_x0(teacher, p.start) + kept_start(p.start, p.coords, keep))


def distill(teacher_dir: str | os.PathLike, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
            cfg: DistillConfig | None = None, log=print) -> dict:
    """Train a ``cfg.preset`` student on the teacher's one-step samples of the corpus's pairs; write a run folder."""
    from tqdm.auto import tqdm

    from weightgen.baselines import CorpusIndex, make_init
    from weightgen.corpus import Corpus
    from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
    from weightgen.dit_train import load_dit, save_one_step_run
    from weightgen.distill_targets import TargetsError, load_targets, pair_key, save_targets, targets_identity
    from weightgen.encoder import PatchAutoencoder
    from weightgen.flops import generator_training_flops
    from weightgen.sampling import kept_start
    from weightgen.specs import parse_arch
    from weightgen.training import count_step_flops
    from weightgen.tune_target import TuneTarget, patches_from_state

    cfg = cfg or DistillConfig()
    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    if teacher_dir.resolve() == out_dir.resolve():
        raise DistillError(f"{out_dir}: distil into a new run folder; the teacher {teacher_dir} stays as it is")
    sampler = teacher_sampler(teacher_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    encoder = PatchAutoencoder.load(teacher_dir / "encoder").eval().to(device)
    encoder.requires_grad_(False)
    teacher = load_dit(teacher_dir / "dit").eval().to(device)
    teacher_sha = file_digest(teacher_dir / "dit" / "model.safetensors")  # names the targets and the summary's teacher
    teacher.requires_grad_(False)
    direct = cfg.output == "patches"
    out_dim = encoder.config.patch_size if direct else None
    student = DiT(DiTConfig(**{**asdict(teacher.cfg), **DIT_PRESETS[cfg.preset], "out_dim": out_dim})).train().to(device)

    corpus = Corpus(corpus_dir)
    holdout = {parse_arch(a).to_string() for a in cfg.holdout_archs}
    seen = corpus_pairs(corpus)
    recipes = family_recipes(corpus)

    def target(arch: str, task: str) -> TuneTarget:
        lr, _ = family_recipe(recipes, arch)
        return TuneTarget(arch, task, encoder.config.patch_size, teacher.cfg.latent_dim, "coords", lr).to(device)

    every = [target(a, t) for a, t in seen]
    pairs = [p for p in every if p.arch not in holdout]
    if not pairs:
        raise DistillError(f"no corpus pair left to distil on once {sorted(holdout)} are held out")
    exclude = {parse_arch(a).to_string() for a in cfg.exclude_archs} | holdout | {a for a, _ in seen}
    extra = [target(a, t) for a, t in neighbour_pairs([(p.arch, p.task) for p in pairs], cfg.neighbours, exclude, cfg.seed)]
    keep, mode = sampler["keep_noise"], sampler.get("rebalance", "none")
    written_targets = bool(cfg.target_steps) or cfg.target_start == "retrieval"  # targets that are networks, not x0s
    if written_targets and mode != "none":  # a rebalanced network has no exact patches to write back
        raise DistillError(f"{teacher_dir}: target_steps or a retrieval start needs a teacher sampled without "
                           f"rebalancing (it has {mode!r})")
    corpus_index = CorpusIndex(corpus_dir) if cfg.target_start == "retrieval" else None

    def start_network(p) -> dict[str, torch.Tensor]:
        if corpus_index is None:
            return teacher_network(p, teacher, encoder, keep)
        # the pair's seed-0 retrieval init, as the bench builds it (the seed only sets the unfilled tensors' draw)
        init = make_init("retrieval", p.arch, p.task, 0, corpus_index)
        return {k: v.to(device) for k, v in init.state_dict.items()}

    def fine_tuned(p, index: int) -> tuple[dict[str, torch.Tensor], int]:
        """The start's network after cfg.target_steps fine-tune steps, and its FLOPs.

        The steps run outside a FLOP counter, whose per-op hook tripled their wall time: they are counted as
        the corpus counts training, steps × one step's forward and backward (what the counter gives them too).
        """
        _, batch_size = family_recipe(recipes, p.arch)
        with counting_flops() as sample_counter:
            start = start_network(p)
        if not cfg.target_steps:
            return start, int(sample_counter.get_total_flops())
        with torch.enable_grad():
            moved = p.lookahead(start, cfg.target_steps, batch_size, target_generator(cfg.seed, index))
        return moved, int(sample_counter.get_total_flops()) + cfg.target_steps * count_step_flops(p.model, p.train, batch_size)

    def teacher_output(p) -> torch.Tensor:  # what the student learns to give (patches or x0)
        if written_targets:
            values = moved[id(p)]
            if direct:
                return values
            return encoder.standardize(encoder.encode(values, p.coords[0]))[None] - kept_start(p.start, p.coords, keep)
        x0 = p.one_step_x0(teacher, p.start)
        if not direct:
            return x0
        return encoder.decode(encoder.unstandardize((x0 + kept_start(p.start, p.coords, keep))[0]), p.coords[0])

    def student_output(p) -> torch.Tensor:
        return p.one_step_patches(student, p.start) if direct else p.one_step_x0(student, p.start)

    def state(p, out: torch.Tensor) -> dict[str, torch.Tensor]:  # the network an output (teacher's or student's) gives
        if direct:
            return p.state_from_patches(out, mode)
        return p.state_from_latents(encoder, out + kept_start(p.start, p.coords, keep), mode)

    log(f"{len(pairs)} training (architecture, task) pairs and {len(extra)} neighbours, {len(every) - len(pairs)} "
        f"held out; student {cfg.preset} ({sum(q.numel() for q in student.parameters()):,} parameters) on {device}")
    moved, moved_flops = {}, 0  # with written targets: the targets' networks as patches, and what making them cost
    if written_targets:
        keys = [pair_key(i, p.arch, p.task) for i, p in enumerate(every + extra)]
        identity = targets_identity(teacher_sha, corpus_dir, cfg)
        if cfg.targets_from:
            try:
                stored, moved_flops = load_targets(cfg.targets_from, identity, keys)
            except TargetsError as exc:
                raise DistillError(str(exc)) from None
            moved = {id(p): stored[key].to(device) for key, p in zip(keys, every + extra)}
            log(f"{len(moved)} targets from {cfg.targets_from} ({moved_flops:.3e} FLOPs when they were made)")
        else:
            desc = f"targets: {cfg.target_start}'s network + {cfg.target_steps} fine-tune steps"
            for i, p in enumerate(tqdm(every + extra, desc=desc, leave=False)):
                network, flops = fine_tuned(p, i)
                moved[id(p)], moved_flops = patches_from_state(p.tokens, network), moved_flops + flops
        if not cfg.targets_from or Path(cfg.targets_from).resolve() != out_dir.resolve():
            # written before the distillation, so a run stopped in it keeps them for its rerun
            out_dir.mkdir(parents=True, exist_ok=True)
            save_targets(out_dir, {key: moved[id(p)] for key, p in zip(keys, every + extra)}, identity, moved_flops)
    # Counted: the teacher's passes, the distillation and its evaluations (an upper bound on what it costs). A pair's
    # step and an evaluation have the same shapes each time, so each is counted once and then added (RepeatedFlops).
    counted = RepeatedFlops()
    with counted.count("teacher"):
        with torch.no_grad():  # the targets: the teacher's output on every pair, and the network it gives
            targets = {id(p): teacher_output(p) for p in tqdm(every + extra, desc="teacher samples", leave=False)}
            teacher_states = {id(p): state(p, targets[id(p)]) for p in every + (extra if cfg.function_weight else [])}
        teacher_acc = {id(p): p.val_acc(teacher_states[id(p)]) for p in every}
    pairs = pairs + extra  # neighbours are trained on, never scored: the teacher's answer is all there is for them

    def evaluate(step: int) -> dict:
        student.eval()
        rows = []
        with torch.no_grad():
            for p in every:
                out, target = student_output(p), targets[id(p)]
                rows.append({"held": p.arch in holdout, "acc": p.val_acc(state(p, out)), "teacher_acc": teacher_acc[id(p)],
                             "error": float((out - target).norm() / target.norm().clamp(min=1e-12))})
        student.train()
        scores = pd.DataFrame(rows)
        row = {"step": step}
        for name, part in (("", scores[~scores["held"]]), ("heldout_", scores[scores["held"]])):
            if len(part):
                row.update({f"{name}val_acc_median": float(part["acc"].median()),
                            f"{name}teacher_val_acc_median": float(part["teacher_acc"].median()),
                            f"{name}acc_gap_median": float((part["teacher_acc"] - part["acc"]).median()),
                            f"{name}target_error_median": float(part["error"].median())})
        log(f"step {step:5d}  student val acc median {row['val_acc_median']:.3f} (teacher "
            f"{row['teacher_val_acc_median']:.3f}), {'patch' if direct else 'latent'} error {row['target_error_median']:.3f}"
            + (f"; held out {row['heldout_val_acc_median']:.3f} (teacher {row['heldout_teacher_val_acc_median']:.3f})"
               if holdout else ""))
        return row

    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    with counted.count("evaluate"):
        history, running, started = [evaluate(0)], 0.0, time.perf_counter()
    for step in tqdm(range(1, cfg.steps + 1), desc="distil", leave=False):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        chosen = torch.randperm(len(pairs), generator=g)[: cfg.pairs_per_step].tolist()
        optimizer.zero_grad(set_to_none=True)
        for i in chosen:
            p = pairs[i]
            with counted.count(("step", i)):
                out = student_output(p)
                loss = output_error(out, targets[id(p)], p.coords[0], cfg.loss_weighting)
                if cfg.function_weight:
                    kl = p.distill_loss(state(p, out), teacher_states[id(p)], p.batch(cfg.batch_size, g))
                    loss = loss + cfg.function_weight * kl
                (loss / len(chosen)).backward()
            running += loss.item() / len(chosen)
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            log(f"step {step:5d}  loss {running / (step - history[-1]['step']):.4f}  ({time.perf_counter() - started:.0f} s)")
            running = 0.0
            with counted.count("evaluate"):
                history.append(evaluate(step))
    own = counted.total + moved_flops
    teacher_flops = generator_training_flops(teacher_dir)
    summary = {"teacher_run": str(teacher_dir), "teacher_dit_sha256": teacher_sha,
               "corpus": str(corpus_dir), **asdict(cfg), "flops": own + teacher_flops, "own_flops": own,
               "teacher_generator_flops": teacher_flops, "wall_time_s": time.perf_counter() - started,
               "sampler": {**sampler, "output": cfg.output}, "log": history}
    # the student samples like the teacher (with its own output kind): the teacher's encoder, the student DiT
    save_one_step_run(student.eval().cpu(), teacher_dir, out_dir, "distilled", summary["sampler"], DISTILL_FILE, summary,
                      "distill.csv")
    log(f"wrote {out_dir} ({own:.3e} FLOPs, {teacher_flops:.3e} more for the teacher; {summary['wall_time_s']:.0f} s)")
    return summary


def log_distill(summary: dict, tags: dict[str, str] | None = None) -> str:
    """One MLflow run in the ``dit`` experiment: the config as params, every evaluation as metrics."""
    from weightgen.tracking import log_summary_run

    counts = ("flops", "own_flops", "teacher_generator_flops", "wall_time_s")
    metrics = {"generator_flops": summary["flops"], **{k: summary[k] for k in counts[1:]}}
    return log_summary_run("dit", f"dit-distill-{Path(summary['teacher_run']).name}", "distill", summary, counts, metrics, tags)


__all__ = ["DISTILL_FILE", "LOSS_WEIGHTINGS", "DistillConfig", "DistillError", "distill", "log_distill", "output_error",
           "teacher_network", "teacher_sampler", "tensor_balanced_error"]
