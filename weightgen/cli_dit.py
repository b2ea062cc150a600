"""``weightgen dit``: train the diffusion transformer, tune it by the task, distil it, sample from it."""

from __future__ import annotations

from pathlib import Path

import typer

from weightgen.dit_presets import DIT_PRESETS
from weightgen.terminal import DEFAULT_CORPUS, DEFAULT_RUN, console
from weightgen.terminal import fail as _fail
from weightgen.terminal import print_summary as _print_summary
from weightgen.terminal import prepare_prefect as _prepare_prefect

dit_app = typer.Typer(help="Train the diffusion transformer, tune it by the task, distil it and sample from it.", no_args_is_help=True)


@dit_app.command("train")
def dit_train(
    run: Path = typer.Option(DEFAULT_RUN, help="run folder holding encoder/ and latents.safetensors"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus the latents came from"),
    processes: int = typer.Option(1, min=1, help="training processes (accelerate launch when > 1)"),
    steps: int = typer.Option(2000, min=1),
    batch_size: int = typer.Option(16, min=1),
    preset: str = typer.Option("S", help=f"the DiT's size: {' | '.join(DIT_PRESETS)}"),
) -> None:
    """Train the DiT on the cached latents (resumes from the latest checkpoint), then score seen samples."""
    _prepare_prefect()
    from flows.dit import dit_flow

    _print_summary(f"DiT {run}", dit_flow(run_dir=str(run), corpus_dir=str(corpus), processes=processes, steps=steps,
                                          batch_size=batch_size, preset=preset))


@dit_app.command("tune")
def dit_tune(
    run: Path = typer.Option(DEFAULT_RUN, help="run folder holding encoder/ and a trained dit/"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus whose seen (architecture, task) pairs it is tuned on"),
    out: Path = typer.Option(..., help="new run folder for the tuned generator (the base run is left as it is)"),
    steps: int = typer.Option(2000, min=1),
    lr: float = typer.Option(1e-3, min=0.0),
    noise: str = typer.Option("coords", help="start of each sample: coords | fixed | fresh"),
    bias_penalty: float = typer.Option(0.0, min=0.0, help="x mean square of the samples' biases, added to the loss"),
    holdout_archs: str = typer.Option("", help="';'-separated corpus architectures kept out and scored as unseen"),
    inner_steps: int = typer.Option(0, min=0, help="also score each sample after this many AdamW fine-tune steps"),
    rebalance: str = typer.Option("none", help="rescale samples to the target's init scale: none | logits | predictions"),
    distill: float = typer.Option(0.0, min=0.0, help="x KL from each pair's trained corpus member to the sample, added to the loss"),
    anchor: float = typer.Option(0.0, min=0.0, help="x the sample's squared distance to its pair's trained member over the member's squared norm, added to the loss"),
    neighbours: int = typer.Option(0, min=0, help="+ width-scaled architectures per corpus pair, on its task (trained on, not scored)"),
    exclude_archs: str = typer.Option("", help="';'-separated architectures never drawn as neighbours"),
    task_neighbours: int = typer.Option(0, min=0, help="+ pairs per corpus pair of its architecture on a task one knob away (trained on, not scored)"),
    exclude_tasks: str = typer.Option("", help="';'-separated tasks never drawn as task neighbours, nor their label orders and template sets"),
    exclude_suite: list[Path] = typer.Option([], help="a suite whose unseen architectures and tasks are never drawn as neighbours (repeatable)"),
    init_weight: float = typer.Option(1.0, min=0.0, help="x the sample's own loss; 0 with --inner-steps: scored only where the lookahead lands"),
    eval_every: int = typer.Option(250, min=1, help="score the corpus pairs (one-step, and after the lookahead) every this many steps"),
    families: str = typer.Option("", help="','-separated families whose pairs alone are trained on (all are still scored)"),
    processes: int = typer.Option(1, min=1, help="tune processes (accelerate launch when > 1): each takes a share of every step's pairs"),
    match_scales: bool = typer.Option(False, help="tune and sample with each matrix at the corpus's trained scale for its layer role"),
    fit_head: bool = typer.Option(False, help="score each sample with its head refitted to its body's features: a body for generated+head"),
    init_spectrum: bool = typer.Option(False, help="score (and sample) each sample after the init-spectrum reshape, tuned through its SVDs"),
    canvas: Path = typer.Option(None, help="a corpus grid whose parents are written for all of their family and cut to each pair (weightgen/via_arch.py)"),
) -> None:
    """Tune the DiT by the task: its one-step samples are built and scored by cross-entropy (weightgen/dit_tune.py).

    The run may be a patch-writing student (`weightgen dit distill --output patches`): it is tuned as it samples."""
    from weightgen.dit_tune import TuneConfig
    from weightgen.suite import SuiteError

    try:
        cfg = TuneConfig(steps=steps, lr=lr, noise=noise, bias_penalty=bias_penalty, inner_steps=inner_steps,
                         rebalance=rebalance, distill=distill, anchor=anchor, holdout_archs=[a for a in holdout_archs.split(";") if a],
                         neighbours=neighbours, exclude_archs=excluded(exclude_archs, exclude_suite, "archs"),
                         task_neighbours=task_neighbours, exclude_tasks=excluded(exclude_tasks, exclude_suite, "tasks"),
                         init_weight=init_weight, eval_every=eval_every,
                         families=[f for f in families.split(",") if f], match_scales=match_scales, fit_head=fit_head,
                         init_spectrum=init_spectrum, canvas=_canvas(canvas) if canvas else {})
    except (SuiteError, ValueError, OSError) as exc:
        _fail(str(exc))
    tune_through_flow(run, corpus, out, cfg, processes)


def _canvas(grid: Path) -> dict[str, str]:
    """The grid's parents (family -> architecture); a grid without any is refused, since nothing would change."""
    from weightgen.zoo import load_grid

    parents = load_grid(grid).parents
    if not parents:
        raise ValueError(f"{grid}: the grid names no parents, so there is no canvas to write")
    return parents


def _run_flow(title: str, flow_fn, **parameters) -> None:
    """``flow_fn(**parameters)``, a Prefect flow logged to MLflow, its summary printed under ``title``; a bad
    corpus, setting or file ends the command with the flow's error."""
    from weightgen.corpus import CorpusError

    try:
        summary = flow_fn(**parameters)
    except (CorpusError, ValueError, OSError, RuntimeError) as exc:
        _fail(str(exc))
    _print_summary(title, summary)


def excluded(names: str, suites: list[Path], unseen: str) -> list[str]:
    """What is never drawn as a neighbour: the ';'-separated ``names`` and every suite's unseen ones (``unseen``:
    ``"archs"`` or ``"tasks"``, read by ``Suite.unseen_archs`` / ``Suite.unseen_tasks``), sorted once each. A suite
    that does not load raises its SuiteError or OSError."""
    from weightgen.suite import load_suite

    return sorted({n for n in names.split(";") if n}
                  | {n for path in suites for n in getattr(load_suite(path), f"unseen_{unseen}")()})


def tune_through_flow(run: Path, corpus: Path, out: Path, cfg, processes: int = 1) -> None:
    """One tune through the Prefect flow (flows/tune.py, logged to MLflow), its summary printed; errors end the command."""
    _prepare_prefect()
    from flows.tune import flow_parameters, tune_flow

    _run_flow(f"tuned DiT {out}", tune_flow, run_dir=str(run), corpus_dir=str(corpus), out_dir=str(out),
              **flow_parameters(cfg), processes=processes)


@dit_app.command("distill")
def dit_distill(
    teacher: Path = typer.Option(..., help="a tuned run folder (`weightgen dit tune`): the teacher"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus whose seen (architecture, task) pairs the student learns on"),
    out: Path = typer.Option(..., help="new run folder for the student (the teacher is left as it is)"),
    preset: str = typer.Option("XS", help=f"the student DiT's size: {' | '.join(DIT_PRESETS)}"),
    steps: int = typer.Option(3000, min=1),
    lr: float = typer.Option(1e-3, min=0.0),
    function_weight: float = typer.Option(0.0, min=0.0, help="x KL from the teacher's network to the student's, added to the output error"),
    holdout_archs: str = typer.Option("", help="';'-separated corpus architectures kept out and scored as unseen"),
    neighbours: int = typer.Option(4, min=0, help="width-scaled architectures per corpus pair, labelled by the teacher"),
    exclude_archs: str = typer.Option("", help="';'-separated architectures never drawn as neighbours"),
    exclude_suite: list[Path] = typer.Option([], help="a suite whose unseen architectures are never drawn as neighbours (repeatable)"),
    output: str = typer.Option("latents", help="latents | patches: the student writes the weights itself, and its samples skip the decoder"),
    target_steps: int = typer.Option(0, min=0, help="> 0: learn the teacher's network after this many fine-tune steps on the pair's task"),
    target_start: str = typer.Option("teacher", help="teacher | retrieval: the targets' fine-tune steps start from the retrieval baseline's init of each pair"),
    loss_weighting: str = typer.Option("elements", help="elements: mean square over every value | tensors: each tensor's relative error counts the same | elements+vectors: the mean square plus the 1-D tensors' relative errors"),
    seed: int = typer.Option(0, min=0, help="the student's init, its pairs' order and batches, the neighbours and the targets' fine-tune batches"),
    targets_from: Path | None = typer.Option(None, help="a distilled run whose stored targets (same teacher, corpus, target settings and seed) are reused instead of fine-tuned again"),
) -> None:
    """Teach a smaller DiT the tuned DiT's one-step samples: the same inits for fewer FLOPs (weightgen/dit_distill.py)."""
    from weightgen.dit_distill import DistillConfig
    from weightgen.suite import SuiteError

    try:
        archs = excluded(exclude_archs, exclude_suite, "archs")
        DistillConfig(preset=preset, steps=steps, lr=lr, function_weight=function_weight, neighbours=neighbours,
                      exclude_archs=archs, output=output, target_steps=target_steps, target_start=target_start,
                      loss_weighting=loss_weighting, seed=seed, targets_from=str(targets_from or ""))
    except (SuiteError, ValueError, OSError) as exc:
        _fail(str(exc))
    _prepare_prefect()
    from flows.distill import distill_flow

    _run_flow(f"distilled DiT {out}", distill_flow, teacher_dir=str(teacher), corpus_dir=str(corpus), out_dir=str(out),
              preset=preset, steps=steps, lr=lr, function_weight=function_weight, holdout_archs=holdout_archs,
              neighbours=neighbours, exclude_archs=";".join(archs), output=output, target_steps=target_steps,
              target_start=target_start, loss_weighting=loss_weighting, seed=seed, targets_from=str(targets_from or ""))


@dit_app.command("match-scales")
def dit_match_scales(
    run: Path = typer.Option(..., help="a trained run folder (encoder/ and dit/); left as it is"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus whose trained members give each family's layer scales"),
    out: Path = typer.Option(..., help="new run folder: a copy of the run that samples with matched scales"),
    families: str = typer.Option("", help="comma-separated families to match (default: every family in the corpus); the others sample as drawn"),
) -> None:
    """Copy a run so that its samples' matrices take the corpus's per-family, per-layer-role scale (weightgen/scale_prior.py)."""
    from weightgen.corpus import CorpusError
    from weightgen.scale_prior import calibrate_run, load_prior

    try:
        out = calibrate_run(run, corpus, out, families=[f for f in families.split(",") if f] or None)
    except (CorpusError, ValueError, OSError) as exc:
        _fail(str(exc))
    prior = load_prior(out / "dit")
    console.print(f"{out}: samples at the scales of {corpus} "
                  f"({', '.join(f'{family}: {len(roles)} roles' for family, roles in prior.items())})")


@dit_app.command("init-spectrum")
def dit_init_spectrum(
    run: Path = typer.Option(..., help="a trained run folder (encoder/ and dit/); left as it is"),
    out: Path = typer.Option(..., help="new run folder: a copy of the run whose samples take a random init's spectrum"),
) -> None:
    """Copy a run so that each sampled matrix keeps its singular vectors and norm and takes the singular values of
    the target's random init (weightgen/spectrum.py)."""
    from weightgen.spectrum import init_spectrum_run

    try:
        out = init_spectrum_run(run, out)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    console.print(f"{out}: samples with the spectrum of the target's random init (a copy of {run})")


@dit_app.command("via-archs")
def dit_via_archs(
    run: Path = typer.Option(..., help="a trained run folder (encoder/ and dit/); left as it is"),
    corpus: Path = typer.Option(..., help="the corpus the generator was trained on: its architectures are the ones sampled"),
    out: Path = typer.Option(..., help="new run folder: a copy of the run that samples unseen architectures through seen ones"),
) -> None:
    """Copy a run so that an architecture outside the corpus is sampled as the nearest corpus architecture and cut
    to its shapes by weight selection, as a shared frame makes its members (weightgen/via_arch.py)."""
    import json

    from weightgen.corpus import CorpusError
    from weightgen.via_arch import via_archs_run

    try:
        out = via_archs_run(run, corpus, out)
    except (CorpusError, ValueError, OSError) as exc:
        _fail(str(exc))
    archs = json.loads((out / "dit" / "config.json").read_text())["sampler"]["via_archs"]  # as the copy records them
    console.print(f"{out}: unseen architectures sampled through the nearest of {len(archs)} in {corpus} (a copy of {run})")


@dit_app.command("sample")
def dit_sample(
    arch: str = typer.Option(..., help="architecture spec, e.g. mlp:hidden=64x64"),
    task: str = typer.Option(..., help="task spec, e.g. mnist1d"),
    run: Path = typer.Option(DEFAULT_RUN, help="run folder holding encoder/ and dit/"),
    samples: int = typer.Option(3, min=1),
    guidance: float = typer.Option(1.0, min=0.0),
    seed: int = typer.Option(0),
) -> None:
    """Sample weights for an architecture and task and print each sample's test accuracy (no fine-tuning)."""
    from weightgen.generate import Generator
    from weightgen.sampling import evaluate_state_dict
    from weightgen.specs import SpecError

    try:  # a tuned run names its own sampler (one step from coordinate noise), which from_run applies
        states = Generator.from_run(run, steps=50, guidance=guidance).sample(arch, task, samples, seed).state_dicts
    except (SpecError, ValueError, OSError) as exc:
        _fail(str(exc))
    for i, state in enumerate(states):
        console.print(f"sample {i}: test accuracy {evaluate_state_dict(state, arch, task):.3f}")
