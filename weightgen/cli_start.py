"""The commands that write a network's start as a loadable folder: ``weightgen generate`` (a DiT sample) and
``weightgen init`` (a corpus method's start, the bench's baselines). Registered on the app in :mod:`weightgen.cli`."""

from __future__ import annotations

from pathlib import Path

import typer

from weightgen.terminal import DEFAULT_CORPUS, DEFAULT_RUN, console
from weightgen.terminal import fail as _fail
from weightgen.terminal import print_summary as _print_summary


def generate(
    arch: str = typer.Option(..., help="architecture: a spec string (mlp:hidden=96x96) or a YAML/JSON file"),
    task: str = typer.Option(..., help="task: a spec string (mnist1d:template_seed=2) or a YAML/JSON file"),
    out: Path = typer.Option(..., help="folder to write model.safetensors + config.json into"),
    samples: int = typer.Option(1, min=1, max=64, help="k > 1: draw k samples, keep the best by loss on one training batch"),
    run: Path = typer.Option(DEFAULT_RUN, help="run folder holding the trained encoder/ and dit/"),
    seed: int = typer.Option(0, help="sampling seed"),
    ddim_steps: int = typer.Option(50, min=1, help="DDIM steps"),
    guidance: float = typer.Option(1.0, min=0.0, help="classifier-free guidance scale"),
    batch_size: int = typer.Option(100, min=1, help="size of the training batch that scores best-of-k samples"),
    relabel: bool = typer.Option(True, help="a task with label_perm: sample its base task and relabel the output layer "
                                            "(exact; it lifts the samples' fine-tune, docs/results.md item 61)"),
    fit_head: bool = typer.Option(False, help="refit the classifier head to the task's training examples (weightgen.head_fit)"),
    head_examples: int = typer.Option(1000, min=2, help="with --fit-head: how many training examples to fit it on"),
) -> None:
    """Generate weights for an architecture and task; load them with weightgen.checkpoint.load_model(OUT)."""
    from weightgen.generate import Generator, GeneratorError, save_generated
    from weightgen.head_fit import HeadFitError, with_fitted_head
    from weightgen.sampling import evaluate_state_dict
    from weightgen.specs import SpecError, parse_arch, parse_task

    try:
        arch_spec, task_spec = parse_arch(arch), parse_task(task)
        generator = Generator.from_run(run, steps=ddim_steps, guidance=guidance, relabel=relabel)
        if samples == 1:
            generation = generator.sample(arch_spec, task_spec, 1, seed)
        else:
            generation = generator.best_of(arch_spec, task_spec, samples, seed, batch_size)
    except (SpecError, GeneratorError) as exc:
        _fail(str(exc))
    state = generation.state_dicts[generation.chosen]
    details = {"seed": seed, "samples": samples, "flops": generation.flops, "wall_time": generation.wall_time}
    if generation.scores is not None:
        details.update(scores=generation.scores, chosen=generation.chosen)
    if fit_head:
        try:
            fit = with_fitted_head(arch_spec, task_spec, state, seed, head_examples)
        except HeadFitError as exc:
            _fail(str(exc))
        state = fit.state_dict
        details.update(flops=generation.flops + fit.flops, wall_time=generation.wall_time + fit.wall_time,
                       head_fit=_head_fit_record(fit))
    folder = save_generated(out, state, arch_spec, task_spec, generator, **details)
    _print_summary(f"generated {arch_spec} for {task_spec}", {
        "folder": str(folder), "samples": samples, "FLOPs": float(details["flops"]),
        "seconds": details["wall_time"], "test accuracy (no fine-tuning)": evaluate_state_dict(state, arch_spec, task_spec),
    })
    console.print(f"load it with: [bold]weightgen.checkpoint.load_model({str(folder)!r})[/]")


def _head_fit_record(fit) -> dict:
    """What a written folder's config.json says of its fitted head (``generate --fit-head``, ``init`` with +head)."""
    return {"head": fit.head, "examples": fit.examples, "flops": fit.flops, "train_acc_before": fit.train_acc_before,
            "train_acc_after": fit.train_acc_after}


def init(
    arch: str = typer.Option(..., help="architecture: a spec string (mlp:hidden=96x96) or a YAML/JSON file"),
    task: str = typer.Option(..., help="task: a spec string (mnist1d:template_seed=2) or a YAML/JSON file"),
    out: Path = typer.Option(..., help="folder to write model.safetensors + config.json into"),
    method: str = typer.Option("retrieval+head", help="a corpus init method: random, moment, noisy-nearest, retrieval or "
                                                      "weight-selection, any with +head (generated inits: `weightgen generate`)"),
    corpus: Path = typer.Option(DEFAULT_CORPUS, help="corpus folder whose final checkpoints the method reads"),
    seed: int = typer.Option(0, help="the target's init seed (random, moment, the noise of noisy-nearest, the head fit)"),
    label_map: bool = typer.Option(True, help="members of any label order count, their output rows moved to the task's "
                                              "(weightgen.relabel; the member in the task's own order still wins a tie)"),
    head_examples: int = typer.Option(1000, min=2, help="with +head: how many training examples to fit it on"),
) -> None:
    """Start a network from the corpus (the bench's baselines); load it with weightgen.checkpoint.load_model(OUT).

    The default, `retrieval+head`, is the strongest start the bench has measured (docs/results.md): the nearest
    corpus member fitted to the architecture by weight selection, with its classifier head refitted.
    """
    from weightgen.baselines import BASELINE_METHODS, CorpusIndex, make_init
    from weightgen.corpus import CorpusError
    from weightgen.generate import save_generated
    from weightgen.head_fit import HEAD_FIT_SUFFIX, HeadFitError, with_fitted_head
    from weightgen.sampling import evaluate_state_dict
    from weightgen.specs import SpecError, parse_arch, parse_task

    base = method.removesuffix(HEAD_FIT_SUFFIX)
    if base not in BASELINE_METHODS:
        valid = ", ".join(f"{m}[{HEAD_FIT_SUFFIX}]" for m in BASELINE_METHODS)
        _fail(f"unknown init method {method!r}; valid: {valid} (generated inits come from `weightgen generate`)")
    try:
        arch_spec, task_spec = parse_arch(arch), parse_task(task)
        start = make_init(base, arch_spec, task_spec, seed, CorpusIndex(corpus), label_map=label_map)
        if start.state_dict is None:
            _fail(f"{base} gives no init for {arch_spec} on {task_spec}: {start.note}")
        state, flops, wall_time, details = start.state_dict, start.flops, start.wall_time, {}
        if method.endswith(HEAD_FIT_SUFFIX):
            fit = with_fitted_head(arch_spec, task_spec, state, seed, head_examples)
            state, flops, wall_time = fit.state_dict, flops + fit.flops, wall_time + fit.wall_time
            details["head_fit"] = _head_fit_record(fit)
    except (SpecError, CorpusError, HeadFitError) as exc:
        _fail(str(exc))
    folder = save_generated(out, state, arch_spec, task_spec, None, method=method, seed=seed, corpus=str(corpus),
                            source=start.source, note=start.note, label_map=label_map, flops=flops, wall_time=wall_time,
                            **details)
    _print_summary(f"{method} start of {arch_spec} for {task_spec}", {
        "folder": str(folder), "from": start.source or "-", "note": start.note or "-", "FLOPs": float(flops),
        "seconds": wall_time, "test accuracy (no fine-tuning)": evaluate_state_dict(state, arch_spec, task_spec),
    })
    console.print(f"load it with: [bold]weightgen.checkpoint.load_model({str(folder)!r})[/]")
