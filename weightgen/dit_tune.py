"""Tune a trained DiT by the task: its one-step sample, built into a network, is scored by cross-entropy.

The diffusion loss scores weights by their distance to corpus members, and its samples stay at chance
(docs/results.md, "Levers tried"). Here the DiT's one-step prediction (DDIM with one step: x0 from v
at t = T, plus the start itself on the tokens ``keep_noise`` names) is decoded into weights and built, and the
cross-entropy on a batch of the pair's *training* data is backpropagated through the frozen decoder
into the DiT — a hypernetwork objective over the corpus's seen (architecture, task) pairs. Unseen
tasks' data is never used.

``inner_steps`` adds a lookahead: the sample is also moved by that many AdamW steps at the member's
fine-tune LR, and the loss where it lands is added (first-order, :meth:`TuneTarget.lookahead`), so a
sample is scored by where fine-tuning takes it — what the bench's compute saved measures.

``distill`` adds a teacher: the KL divergence from the pair's own trained corpus member (its final
checkpoint, lowest seed) to the sample, on the same training batch — soft targets, denser than the
labels, from networks that are already part of the generator's training data. ``anchor`` adds the sample's
squared distance to that member in weight space, relative to the member's norm: the bench's fine-tunes save
most from starts within about a third of a member's norm of it (``benchmarks/error_budget.py``), and the task
loss alone leaves the samples orthogonal to their pairs' members (docs/results.md, item 70).

``neighbours`` adds that many width-scaled architectures per corpus pair, on the pair's task (as the
distillation draws them, :func:`weightgen.pairs.neighbour_pairs`): the tune then scores samples
across each family's widths, not at the dozen the corpus trained, and ``exclude_archs`` keeps named
architectures (a suite's unseen ones) out of them. ``task_neighbours`` adds that many pairs per corpus pair
of its architecture on a task one knob away (another label order, template set, orientation or noise level:
:func:`weightgen.pairs.task_neighbour_pairs`), which the tune scores by their data alone, and
``exclude_tasks`` keeps a suite's unseen tasks, and their label orders and template sets, out of them.
Neighbours of either kind are trained on and never scored, and the distill term skips them (they have no
corpus member). ``init_weight`` weighs the sample's own loss; 0 with a lookahead scores a sample only by where
fine-tuning takes it. ``families`` trains on those
families' pairs (and their neighbours) alone, while every pair is still scored, so an evaluation shows
what the others pay for it.

``init_spectrum`` scores each sample after the sampler's spectrum reshape (:mod:`weightgen.spectrum`): the
gradient passes through the SVDs, and the tuned run samples with the reshape. A step whose gradient is not
finite (an SVD's, where two singular values meet) is skipped and listed in the summary's ``skipped_steps``.

The base may be a distilled student that writes patches itself (``weightgen dit distill --output
patches``): it is tuned as it samples, with no decoder, and the tuned run keeps its sampler and counts
its whole cost, the teacher and the distillation included.

The start of each sample matters. A fresh Gaussian draw per step collapses to uniform predictions; a
fixed draw per pair is memorised and says nothing about a new architecture; a start seeded by each
token's position (:func:`weightgen.sampling.coordinate_noise`, ``noise="coords"``) lets an unseen
width of a family reuse what the trained widths learnt. The tuned run's ``dit/config.json`` names
that sampler, so :meth:`weightgen.generate.Generator.from_run` samples it the way it was trained, and
``dit/functional_finetune.json`` keeps the counted FLOPs for the amortisation.

The tune runs under HF Accelerate, like the DiT's training: on a GPU when there is one, and on N
processes with ``accelerate launch`` (:func:`launch_tune`; ``weightgen dit tune --processes N``).
Every random draw of a step (which pairs, their batches, the lookahead's batches, a fresh start) comes
from generators seeded by (seed, step), each process takes every N-th of the step's pairs, and
their gradients are summed across processes before the one optimizer step: N processes make the same
update as one, up to float summation order.

    python -m weightgen.dit_tune --run-dir RUN --corpus-dir CORPUS --out-dir OUT --config '{"steps": 500, "inner_steps": 50}'
    accelerate launch --multi_gpu --num_processes 2 -m weightgen.dit_tune --run-dir ... --corpus-dir ... --out-dir ... --config ...
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from weightgen.flops import RepeatedFlops
from weightgen.io import file_digest
from weightgen.rebalance import check_mode
from weightgen.scale_prior import corpus_scale_prior, match_scales
from weightgen.specs import FAMILIES, parse_arch, parse_task
from weightgen.spectrum import init_singular_values, with_init_spectrum
from weightgen.tune_target import TuneTarget

TUNE_FILE = "functional_finetune.json"
START_KINDS = ("coords", "fixed", "fresh")


@dataclass
class TuneConfig:
    steps: int = 2000
    pairs_per_step: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    eval_every: int = 250
    noise: str = "coords"  # coords | fixed (each pair's seed-0 Gaussian draw) | fresh (a new draw every step)
    keep_noise: str = "matrices"  # sample = DiT's x0 + the start on these tokens (sampling.KEEP_KINDS): a random init in latent space
    holdout_archs: list[str] = field(default_factory=list)  # corpus architectures never trained on, scored apart
    seed: int = 0
    bias_penalty: float = 0.0  # + this × mean square of the sample's biases (tuned DiTs emit them 10-30x too wide)
    inner_steps: int = 0  # > 0: + the loss after this many AdamW steps from the sample (see lookahead)
    rebalance: str = "none"  # the sampler's weightgen.rebalance mode, applied before every loss as at sampling
    distill: float = 0.0  # > 0: + this × KL(pair's trained corpus member ‖ sample) on the batch
    anchor: float = 0.0  # > 0: + this × the sample's squared relative distance to the pair's trained member (weights)
    neighbours: int = 0  # + this many width-scaled architectures per corpus pair, on its task (trained on, not scored)
    exclude_archs: list[str] = field(default_factory=list)  # never among the neighbours (a suite's unseen architectures)
    task_neighbours: int = 0  # + this many pairs per corpus pair: its architecture on a task one knob away (trained on, not scored)
    exclude_tasks: list[str] = field(default_factory=list)  # never among the task neighbours, nor their label orders (a suite's unseen tasks)
    init_weight: float = 1.0  # × the sample's own loss; 0 with inner_steps: scored only where the lookahead lands
    families: list[str] = field(default_factory=list)  # trained on only these families' pairs (all pairs are still scored)
    match_scales: bool = False  # the samples' matrices at the corpus's trained scale per layer role (weightgen.scale_prior), as sampled
    fit_head: bool = False  # score each sample with its head refitted to its body (TuneTarget.with_fitted_head): a body for `generated+head`
    init_spectrum: bool = False  # score each sample after the sampler's spectrum reshape (weightgen.spectrum), through its SVDs
    canvas: dict[str, str] = field(default_factory=dict)  # family -> the architecture written for all of it, cut to each pair (weightgen.via_arch)

    def __post_init__(self):
        from weightgen.sampling import keep_kind

        if self.noise not in START_KINDS:
            raise ValueError(f"unknown noise {self.noise!r}; valid: {', '.join(START_KINDS)}")
        self.keep_noise = keep_kind(self.keep_noise)
        if min(self.steps, self.pairs_per_step, self.batch_size, self.eval_every) < 1 or self.lr <= 0:
            raise ValueError("steps, pairs_per_step, batch_size and eval_every must be >= 1 and lr > 0")
        if self.bias_penalty < 0:
            raise ValueError(f"bias_penalty must be >= 0, got {self.bias_penalty}")
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if self.distill < 0 or self.anchor < 0:
            raise ValueError(f"distill and anchor must be >= 0, got {self.distill} and {self.anchor}")
        if self.neighbours < 0 or self.task_neighbours < 0:
            raise ValueError(f"neighbours and task_neighbours must be >= 0, got {self.neighbours} and {self.task_neighbours}")
        self.exclude_tasks = sorted({parse_task(t).to_string() for t in self.exclude_tasks})  # a bad spec: SpecError
        if self.init_weight < 0 or (self.init_weight == 0 and not self.inner_steps):
            raise ValueError(f"init_weight must be >= 0, and > 0 without a lookahead (inner_steps), got {self.init_weight}")
        check_mode(self.rebalance)
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
        for family, arch in self.canvas.items():  # a bad spec: SpecError
            if parse_arch(arch).family != family:
                raise ValueError(f"canvas: {arch!r} is not a {family} architecture")
        self.canvas = {family: parse_arch(arch).to_string() for family, arch in self.canvas.items()}
        if self.canvas and self.rebalance != "none":
            raise ValueError("a canvas is written as one architecture and cut to each pair: rebalance must be none")


def step_draws(seed: int, step: int, num_pairs: int, pairs_per_step: int) -> list[tuple[int, torch.Generator]]:
    """The pairs a step trains on, each with a generator of its own: one sequence for any number of processes."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    chosen = torch.randperm(num_pairs, generator=g)[:pairs_per_step].tolist()
    return [(i, torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=g)))) for i in chosen]


def of_families(pairs: list, families: list[str]) -> list:
    """The pairs (anything with an ``arch`` string) of the named families, in order; all of them when none is named."""
    if not families:
        return list(pairs)
    chosen = [p for p in pairs if parse_arch(p.arch).family in families]
    if not chosen:
        raise ValueError(f"the corpus has no pair of the families {', '.join(families)} to tune on")
    return chosen


def tune(run_dir: str | os.PathLike, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
         cfg: TuneConfig | None = None, log=print) -> dict:
    """Tune ``run_dir``'s DiT on the corpus's seen pairs; write a run folder to ``out_dir``; return the summary.

    One process runs it in place (on the GPU when there is one); under ``accelerate launch`` each
    process takes its share of every step's pairs and of every evaluation, and the main one writes.
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from weightgen.corpus import Corpus
    from weightgen.dit_train import load_dit
    from weightgen.encoder import PatchAutoencoder
    from weightgen.pairs import family_recipe, family_recipes, neighbour_pairs, task_neighbour_pairs
    from weightgen.tune_runs import student_sampler, tuned_base_flops, write_tuned_run

    cfg = cfg or TuneConfig()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if run_dir.resolve() == out_dir.resolve():
        raise ValueError(f"{out_dir}: tune into a new run folder; the base run {run_dir} stays as it is")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    log = log if accelerator.is_main_process else (lambda *_: None)
    torch.manual_seed(cfg.seed)
    encoder = PatchAutoencoder.load(run_dir / "encoder").eval().to(device)
    encoder.requires_grad_(False)
    dit = load_dit(run_dir / "dit").train().to(device)
    student = student_sampler(run_dir, dit, cfg)  # a patch-writing student's sampler: refused unless tuned as it samples
    corpus = Corpus(corpus_dir)
    frame = corpus.require_nonempty()
    frame = frame[frame["family"] != "external"]
    holdout = {parse_arch(a).to_string() for a in cfg.holdout_archs}
    lrs = {(r["arch_string"], r["task_string"]): float(r["recipe"]["lr"]) for r in corpus.members() if "recipe" in r}

    def canvas_of(arch: str) -> str | None:  # the architecture the DiT writes for ``arch`` (None: its own)
        return cfg.canvas.get(parse_arch(arch).family)

    every = [TuneTarget(a, t, encoder.config.patch_size, dit.cfg.latent_dim, cfg.noise, lrs.get((a, t), 3e-3),
                        canvas_of(a)).to(device)
             for a, t in sorted(set(zip(frame["arch"], frame["task"])))]
    pairs, held = [p for p in every if p.arch not in holdout], [p for p in every if p.arch in holdout]
    if not pairs:
        raise ValueError(f"no corpus pair left to tune on once {sorted(holdout)} are held out")
    scored = list(pairs)  # the corpus's own training pairs: what an evaluation reports
    pairs = of_families(pairs, cfg.families)  # every pair is still scored, so what the others pay shows
    trained = list(pairs)  # the neighbours join ``pairs`` below
    teachers = _teachers(corpus, frame, trained, device) if cfg.distill or cfg.anchor else {}
    given, exclude = [(p.arch, p.task) for p in trained], {parse_arch(a).to_string() for a in cfg.exclude_archs} | holdout
    widths = neighbour_pairs(given, cfg.neighbours, exclude | {p.arch for p in every}, cfg.seed) if cfg.neighbours else []
    tasks = task_neighbour_pairs(given, cfg.task_neighbours, cfg.exclude_tasks, cfg.seed) if cfg.task_neighbours else []
    recipes = family_recipes(corpus)  # a neighbour fine-tunes (in the lookahead) at its family's LR
    pairs += [TuneTarget(a, t, encoder.config.patch_size, dit.cfg.latent_dim, cfg.noise, family_recipe(recipes, a)[0],
                         canvas_of(a)).to(device)
              for a, t in tqdm(widths + tasks, desc="neighbours", leave=False, disable=not accelerator.is_main_process)]
    log(f"{len(trained)} training (architecture, task) pairs"
        + (f" of {', '.join(cfg.families)} ({len(scored)} scored)" if cfg.families else "")
        + f", {len(widths) + len(tasks)} neighbours" + (f" ({len(tasks)} on other tasks)" if cfg.task_neighbours else "")
        + f", {len(held)} held out"
        + (f"; {world} processes ({accelerator.distributed_type.value})" if world > 1 else f" on {device}"))
    optimizer = torch.optim.AdamW(dit.parameters(), lr=cfg.lr)
    prior = corpus_scale_prior(corpus_dir) if cfg.match_scales else None

    init_values = {}  # each pair's seed-0 init's singular values: the same at every step, so taken (and charged) once

    def reference_values(p: TuneTarget) -> dict[str, torch.Tensor]:
        if id(p) not in init_values:
            init_values[id(p)], flops = init_singular_values(p.written_init)
            counted.total += flops  # no gradient flows to them: charged once, forward only
        return init_values[id(p)]

    def sampled(p: TuneTarget, start: torch.Tensor, generator: torch.Generator,
                drop_task: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], int]:
        """The pair's one-step network as the tuned run will sample it (its scales matched, its spectrum reshaped
        when asked), with its head refitted on training examples drawn from ``generator`` when the tune is for a
        fitted head; and the reshape's SVD FLOPs, which the FLOP counter does not see."""
        state = p.weights(dit, encoder, start, cfg.keep_noise, cfg.rebalance, drop_task)
        state = match_scales(state, p.source or p.arch, prior) if prior is not None else state
        svd_flops = 0
        if cfg.init_spectrum:  # against the written network's seed-0 init, as Generator.sample(seed=0) reshapes it
            state, svd_flops = with_init_spectrum(state, p.written_init, reference_values(p))
        state = p.to_target(state)  # with a canvas: cut to the pair's shapes, after the reshape as the sampler does
        return (p.with_fitted_head(state, generator) if cfg.fit_head else state), svd_flops

    def evaluate(step: int) -> dict:
        """Every pair's one-step sample (and where its lookahead lands), each process scoring its share."""
        dit.eval()
        scores = {}
        for i in range(rank, len(every), world):
            p = every[i]
            with torch.no_grad():
                state, svd_flops = sampled(p, p.start, torch.Generator().manual_seed(0))
            if step:  # as the counter around an evaluation, which step 0 runs without
                counted.total += svd_flops
            scores[i] = (p.val_acc(state), p.val_acc(p.lookahead(state, cfg.inner_steps, cfg.batch_size,
                                                                 torch.Generator().manual_seed(0)))
                         if cfg.inner_steps and p.arch not in holdout else None)
        dit.train()
        scores = dict(pair for part in gather_object([scores]) for pair in part.items())
        accs = {id(every[i]): acc for i, (acc, _) in scores.items()}
        row = {"step": step, "val_acc_median": float(pd.Series([accs[id(p)] for p in scored]).median()),
               "val_acc_min": min(accs[id(p)] for p in scored)}
        if cfg.inner_steps:  # where the lookahead lands, on the same batches at every evaluation
            row["lookahead_val_acc_median"] = float(pd.Series([landed for _, landed in scores.values()
                                                               if landed is not None]).median())
        if held:
            row["heldout_val_acc_median"] = float(pd.Series([accs[id(p)] for p in held]).median())
            row.update({f"heldout/{p.arch}@{p.task}": accs[id(p)] for p in held})
        log(f"step {step:5d}  one-step sample{' (head fitted)' if cfg.fit_head else ''} val acc: training pairs median {row['val_acc_median']:.3f} "
            f"min {row['val_acc_min']:.3f}" + (f"; held out median {row['heldout_val_acc_median']:.3f}" if held else "")
            + (f"; after {cfg.inner_steps} steps {row['lookahead_val_acc_median']:.3f}" if cfg.inner_steps else ""))
        return row

    counted = RepeatedFlops()  # a pair's step (and an evaluation) has the same shapes each time: counted once, then added
    history, running, started, skipped = [evaluate(0)], 0.0, time.perf_counter(), []
    params = [q for q in dit.parameters() if q.requires_grad]
    for step in tqdm(range(1, cfg.steps + 1), desc="tune", leave=False, disable=not accelerator.is_main_process):
        optimizer.zero_grad(set_to_none=True)
        draws = step_draws(cfg.seed, step, len(pairs), cfg.pairs_per_step)
        for i, generator in draws[rank::world]:  # this process's share of the step's pairs
            p = pairs[i]
            with counted.count(("step", i)):
                start = p.start if cfg.noise != "fresh" else torch.randn(p.start.shape, generator=generator).to(device)
                drop_task = (torch.rand(1, generator=generator) < dit.cfg.cond_dropout).to(device)  # the DiT's CFG dropout
                batch = p.batch(cfg.batch_size, generator)
                state, svd_flops = sampled(p, start, generator, drop_task)
                loss = cfg.init_weight * p.loss(state, batch)
                if cfg.distill and id(p) in teachers:  # a neighbour has no corpus member to distil
                    loss = loss + cfg.distill * p.distill_loss(state, teachers[id(p)], batch)
                if cfg.anchor and id(p) in teachers:  # nor one to be near
                    loss = loss + cfg.anchor * p.anchor_loss(state, teachers[id(p)])
                if cfg.inner_steps:
                    landed = p.lookahead(state, cfg.inner_steps, cfg.batch_size, generator)
                    loss = loss + p.loss(landed, p.batch(cfg.batch_size, generator))
                if cfg.bias_penalty:
                    biases = [v for k, v in state.items() if k.endswith("bias") and v.is_floating_point()]
                    loss = loss + cfg.bias_penalty * torch.stack([b.pow(2).mean() for b in biases]).mean()
                loss = loss / len(draws)
                loss.backward()
            counted.total += 3 * svd_flops  # the SVDs forward and backward (less than twice forward): an upper bound
            running += loss.item()
        if world > 1:
            _sum_gradients(accelerator, params)
        if all(torch.isfinite(q.grad).all() for q in params if q.grad is not None):
            torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
            optimizer.step()
        else:  # an SVD's gradient diverges where two singular values meet; one such step would poison the DiT
            skipped.append(step)
            log(f"step {step:5d}  non-finite gradient: step skipped ({len(skipped)} so far)")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            total = float(accelerator.reduce(torch.tensor(running, device=device), "sum"))
            window = step - history[-1]["step"]  # the steps since the last evaluation (the last window may be short)
            log(f"step {step:5d}  task loss {total / window:.4f}  ({time.perf_counter() - started:.0f} s)")
            running = 0.0
            with counted.count("evaluate"):
                history.append(evaluate(step))
    # Evaluation passes included: an upper bound on the tune's cost; summed over the processes.
    flops = int(accelerator.reduce(torch.tensor(counted.total, dtype=torch.float64, device=device), "sum"))
    base_flops, whole = tuned_base_flops(run_dir)
    dit.eval()
    summary = {"base_run": str(run_dir), "base_dit_sha256": file_digest(run_dir / "dit" / "model.safetensors"),
               "corpus": str(corpus_dir), **asdict(cfg), "flops": flops + base_flops,
               "own_flops": flops, "base_tune_flops": base_flops, "includes_base_generator": whole, "processes": world,
               "skipped_steps": skipped, "wall_time_s": time.perf_counter() - started, "log": history}
    if accelerator.is_main_process:
        summary = write_tuned_run(dit.cpu(), run_dir, out_dir, cfg, summary, student, prior)
        log(f"wrote {out_dir} ({flops:.3e} FLOPs, {base_flops:.3e} more in the tuned base; {summary['wall_time_s']:.0f} s)")
    accelerator.wait_for_everyone()
    return summary


def launch_tune(run_dir: str | os.PathLike, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: TuneConfig,
                processes: int = 1, log=print) -> dict:
    """:func:`tune` in this process (``processes`` 1), or under ``accelerate launch`` on ``processes`` processes.

    The launched tune writes the same run folder; its summary is read back from it. Its output lines
    go to ``log`` as they come.
    """
    if processes <= 1:
        return tune(run_dir, corpus_dir, out_dir, cfg, log=log)
    from weightgen.dit_stage import launch_command, run_streaming

    summary_file = Path(out_dir) / "dit" / TUNE_FILE
    summary_file.unlink(missing_ok=True)  # what is read back must be this launch's
    args = ["--run-dir", str(run_dir), "--corpus-dir", str(corpus_dir), "--out-dir", str(out_dir),
            "--config", json.dumps(asdict(cfg))]
    command, env = launch_command(processes, args, module="weightgen.dit_tune")
    run_streaming(command, env, log, what="the DiT tune")
    return json.loads(summary_file.read_text())


def _sum_gradients(accelerator, params: list[torch.nn.Parameter]) -> None:
    """Each parameter's gradient summed over the processes, in one all-reduce.

    A parameter no process's pairs reached keeps no gradient (None), so AdamW leaves it alone, as in
    one process; one that some process did not reach counts zero there.
    """
    reached = torch.tensor([q.grad is not None for q in params], dtype=torch.float32, device=params[0].device)
    flat = torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in params])
    reached, flat = accelerator.reduce(reached, "sum"), accelerator.reduce(flat, "sum")
    offset = 0
    for q, hit in zip(params, reached.tolist()):
        q.grad = flat[offset : offset + q.numel()].view_as(q).clone() if hit else None
        offset += q.numel()


def _teachers(corpus, frame: pd.DataFrame, pairs: list[TuneTarget], device="cpu") -> dict[int, dict[str, torch.Tensor]]:
    """Each pair's teacher: the final checkpoint of its lowest-seed corpus member (safetensors)."""
    from weightgen.corpus import final_checkpoints

    finals = final_checkpoints(frame).sort_values(["seed", "member"])
    out = {}
    for p in pairs:
        row = finals[(finals["arch"] == p.arch) & (finals["task"] == p.task)].iloc[0]
        state, _ = corpus.load(row["member"], int(row["step"]))
        out[id(p)] = {k: v.float().to(device) for k, v in state.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    """The tune as a script, for ``accelerate launch -m weightgen.dit_tune`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Tune a trained DiT by the task loss (weightgen.dit_tune).")
    # --run-dir, not --run: torchrun would take --run for an abbreviation of its own --run-path
    parser.add_argument("--run-dir", required=True, help="run folder with encoder/ and a trained dit/")
    parser.add_argument("--corpus-dir", required=True, help="corpus whose seen (architecture, task) pairs it is tuned on")
    parser.add_argument("--out-dir", required=True, help="new run folder for the tuned generator")
    parser.add_argument("--config", default="{}", help="TuneConfig fields as JSON, e.g. '{\"steps\": 500}'")
    args = parser.parse_args(argv)
    try:
        cfg = TuneConfig(**json.loads(args.config))
    except (TypeError, ValueError) as exc:  # an unknown field, bad JSON or a refused value
        parser.error(f"--config: {exc}")
    return tune(args.run_dir, args.corpus_dir, args.out_dir, cfg, log=lambda line: print(line, flush=True))


__all__ = ["START_KINDS", "TUNE_FILE", "TuneConfig", "launch_tune", "step_draws", "tune"]


if __name__ == "__main__":
    main()
