"""Generate weights for a named architecture and task: the user-facing side of the DiT.

A :class:`Generator` is a trained run folder (``encoder/`` + ``dit/``). ``sample`` returns
state_dicts with the FLOPs and seconds it took to make them (counted with
``weightgen.flops.counting_flops``: the DiT's forward passes over every DDIM step, both CFG branches, and
the decoder), because a benchmark must charge an init for what it cost. ``best_of`` draws k samples
and keeps the one with the lowest loss on one training batch, the k forward passes counted too.
:func:`save_generated` writes a hub-style folder that :func:`weightgen.checkpoint.load_model` loads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from weightgen.checkpoint import CheckpointError, non_finite, save_checkpoint
from weightgen.flops import counting_flops
from weightgen.specs import parse_arch, parse_task

GENERATED_FORMAT = "weightgen-generated/1"


class GeneratorError(ValueError):
    """A run folder that holds no usable generator, or a sample that is not a valid network."""


@dataclass
class Generation:
    state_dicts: list[dict[str, torch.Tensor]]
    flops: int  # to produce all of them (and, for best-of-k, to score them)
    wall_time: float  # seconds
    scores: list[float] | None = None  # best-of-k: each sample's loss on the scoring batch
    chosen: int = 0  # best-of-k: index of the kept sample
    via: str = ""  # the architecture sampled and cut to the target's shapes, when not the target's own


class Generator:
    """A trained encoder + DiT pair, sampled with deterministic DDIM and classifier-free guidance.

    ``noise`` and ``keep_noise`` choose the start of sampling (see :func:`weightgen.sampling.sample_state_dicts`);
    ``rebalance`` (:data:`weightgen.rebalance.MODES`) sets each sampled layer to the scale of the target's
    own random init without changing the function (ReLU chains only; :mod:`weightgen.rebalance`).
    ``scale_prior`` (:mod:`weightgen.scale_prior`) sets each sampled matrix to the scale trained networks of
    its family give its layer role; None leaves the sampled scales. ``init_spectrum`` gives each sampled matrix the
    singular values of the target's random init at the sample's seed, at the matrix's own norm (:mod:`weightgen.spectrum`).
    ``output`` ``patches``: the DiT writes the weights' patches itself in one step (a distilled student
    of :mod:`weightgen.dit_distill`), and the encoder's decoder is never run. With ``relabel`` a task that
    permutes another's labels is sampled as that base task and its output layer relabelled, which is exact
    (:mod:`weightgen.relabel`); without it the DiT reads the permutation from the task features. It is off by
    default: the bench's corpus baselines do not use the symmetry yet, and given it they gain more than the
    generator does (docs/results.md, item 44), so turning it on for the generator alone would not be a fair bench.
    ``via_archs`` (the architectures of the generator's corpus): an architecture not among them is sampled as the
    nearest of them and cut to its shapes by weight selection (:mod:`weightgen.via_arch`); None samples every
    architecture as itself. ``canvas`` (family → architecture): every architecture of such a family is sampled as
    that one and cut to its shapes (a DiT tuned through the cut, ``weightgen dit tune --canvas``).
    """

    def __init__(self, dit, encoder, steps: int = 50, guidance: float = 1.0, source: str = "",
                 noise: str = "gaussian", keep_noise: str | bool = "none", rebalance: str = "none",
                 output: str = "latents", relabel: bool = False, scale_prior: dict | None = None,
                 init_spectrum: bool = False, via_archs: list[str] | None = None, canvas: dict[str, str] | None = None):
        from weightgen.rebalance import check_mode
        from weightgen.sampling import OUTPUT_KINDS, keep_kind

        # a bad value fails before anything loads
        self.noise, self.keep_noise, self.rebalance = noise, keep_kind(keep_noise), check_mode(rebalance)
        if output not in OUTPUT_KINDS:
            raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUT_KINDS)}")
        written = dit.cfg.out_dim or dit.cfg.latent_dim
        wanted = encoder.config.patch_size if output == "patches" else dit.cfg.latent_dim
        if written != wanted:
            raise ValueError(f"the DiT gives {written} numbers per token; output {output!r} needs {wanted}")
        self.output = output
        self.dit, self.encoder = dit.eval(), encoder.eval()
        self.steps, self.guidance, self.source, self.relabel = steps, guidance, source, relabel
        self.scale_prior, self.init_spectrum, self.via_archs, self.canvas = scale_prior, init_spectrum, via_archs, canvas

    @property
    def sampler(self) -> dict:
        """How samples are drawn, for logs: steps, guidance, noise, keep_noise, rebalance, output, relabel,
        match_scales, init_spectrum, via_archs (how many architectures unseen ones are sampled through; 0: none),
        canvas (family → the architecture sampled for all of the family's)."""
        return {"steps": self.steps, "guidance": self.guidance, "noise": self.noise, "keep_noise": self.keep_noise,
                "rebalance": self.rebalance, "output": self.output, "relabel": self.relabel,
                "match_scales": self.scale_prior is not None, "init_spectrum": self.init_spectrum,
                "via_archs": len(self.via_archs or []), "canvas": dict(self.canvas or {})}

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, steps: int = 50, guidance: float = 1.0, relabel: bool = False) -> "Generator":
        """Load ``run_dir/encoder`` and ``run_dir/dit``; a clear error when either is missing or corrupt.

        A DiT trained for one way of sampling (``weightgen dit tune``: one step from coordinate noise,
        the start kept) says so in ``dit/config.json`` under ``sampler``; that wins over
        ``steps``, since any other way gives that DiT's untrained behaviour. ``match_scales`` there reads the
        scale prior saved beside the DiT (``weightgen dit match-scales``); ``relabel`` there (a run copied with
        ``copy_run_with_sampler(run, out, {"relabel": True})``) relabels as the argument does.
        """
        import json

        from weightgen.dit_train import load_dit
        from weightgen.encoder import PatchAutoencoder
        from weightgen.sampling import NOISE_KINDS
        from weightgen.scale_prior import load_prior

        run_dir = Path(run_dir)
        missing = [p for p in ("encoder", "dit") if not (run_dir / p / "model.safetensors").is_file()]
        if missing:
            raise GeneratorError(f"{run_dir}: no trained {' or '.join(missing)} (model.safetensors) here; "
                                 "train one with `weightgen encoder train` and `weightgen dit train`")
        try:
            sampler = json.loads((run_dir / "dit" / "config.json").read_text()).get("sampler", {})
            steps = int(sampler.get("steps", steps))
            noise, keep_noise = sampler.get("noise", "gaussian"), sampler.get("keep_noise", "none")
            if noise not in NOISE_KINDS or steps < 1:
                raise ValueError(f"dit/config.json: bad sampler {sampler} (noise: {', '.join(NOISE_KINDS)}; steps >= 1)")
            prior = load_prior(run_dir / "dit") if sampler.get("match_scales", False) else None
            return cls(load_dit(run_dir / "dit"), PatchAutoencoder.load(run_dir / "encoder"), steps, guidance,
                       source=str(run_dir), noise=noise, keep_noise=keep_noise,
                       rebalance=sampler.get("rebalance", "none"), output=sampler.get("output", "latents"),
                       relabel=relabel or bool(sampler.get("relabel", False)),
                       scale_prior=prior, init_spectrum=bool(sampler.get("init_spectrum", False)),
                       via_archs=sampler.get("via_archs"), canvas=sampler.get("canvas"))
        except (CheckpointError, KeyError, TypeError, ValueError, OSError) as exc:
            raise GeneratorError(f"{run_dir}: cannot load the generator: {exc}") from None

    def sample(self, arch, task, samples: int = 1, seed: int = 0) -> Generation:
        """``samples`` state_dicts for ``arch`` on ``task`` (spec strings or specs); seeded, so repeatable."""
        from weightgen.data import input_shape
        from weightgen.models import build_model
        from weightgen.rebalance import rebalance
        from weightgen.relabel import base_task, label_permutation, output_layer, relabel_classes
        from weightgen.sampling import sample_state_dicts
        from weightgen.scale_prior import match_scales
        from weightgen.via_arch import source_arch
        from weightgen.weight_selection import fit_state_dict

        arch, task = parse_arch(arch), parse_task(task)
        perm = label_permutation(task) if self.relabel else None
        # the architecture the DiT writes: the target's own, its family's canvas, or the nearest one it was trained on
        source = parse_arch(source_arch(arch, task, self.via_archs, self.canvas))
        started = time.perf_counter()
        with counting_flops() as counter:
            states = sample_state_dicts(self.dit, self.encoder, source, base_task(task) if perm is not None else task,
                                        samples, self.steps, self.guidance, seed, self.noise, self.keep_noise, self.output)
            if self.rebalance != "none":  # to the scale of the sampled architecture's own init at this seed
                reference = build_model(source, input_shape(task), seed=seed).state_dict()
                states = [rebalance(s, source, reference, self.rebalance) for s in states]
            if self.scale_prior is not None:
                states = [match_scales(s, source, self.scale_prior) for s in states]
        extra_flops = 0  # what the FLOP counter does not see: the SVDs, counted by weightgen.spectrum
        if self.init_spectrum:
            from weightgen.spectrum import init_singular_values, with_init_spectrum

            reference = build_model(source, input_shape(task), seed=seed).state_dict()
            values, extra_flops = init_singular_values(reference)  # once for the k samples of this seed
            reshaped = [with_init_spectrum(s, reference, values) for s in states]
            states, extra_flops = [s for s, _ in reshaped], extra_flops + sum(f for _, f in reshaped)
        if source != arch:  # cut to the target's shapes as the frame made its members; copies only, no FLOPs
            target = build_model(arch, input_shape(task), seed=seed).state_dict()
            states = [fit_state_dict(s, target)[0] for s in states]
        if perm is not None:  # the base task's networks with their classes renamed: exact, and no FLOPs
            layer = output_layer(arch, input_shape(task))
            states = [relabel_classes(s, layer, perm) for s in states]
        for i, state in enumerate(states):
            bad = non_finite(state)
            if bad:
                raise GeneratorError(f"sample {i} for {arch} on {task} has non-finite weights in {', '.join(bad[:3])}")
        return Generation(states, int(counter.get_total_flops()) + extra_flops, time.perf_counter() - started,
                          via=source.to_string() if source != arch else "")

    def best_of(self, arch, task, k: int, seed: int = 0, batch_size: int = 100) -> Generation:
        """k samples; keep the one with the lowest cross-entropy on the first ``batch_size`` training examples."""
        from weightgen.checkpoint import model_for_weights
        from weightgen.data import load_task

        if k < 1:
            raise ValueError(f"best-of-k needs k >= 1, got {k}")
        generation = self.sample(arch, task, k, seed)
        started = time.perf_counter()
        train = load_task(task).train
        x, y = train.x[:batch_size], train.y[:batch_size]
        scores = []
        with counting_flops() as counter, torch.no_grad():
            for state in generation.state_dicts:
                model = model_for_weights(state, arch, task, where="generated sample").eval()
                scores.append(float(F.cross_entropy(model(x), y)))
        chosen = min(range(k), key=scores.__getitem__)
        return Generation(generation.state_dicts, generation.flops + int(counter.get_total_flops()),
                          generation.wall_time + time.perf_counter() - started, scores, chosen, generation.via)


def copy_run_with_sampler(run_dir: str | os.PathLike, out_dir: str | os.PathLike, options: dict,
                          write_dit=None) -> Path:
    """A copy of ``run_dir`` whose ``dit/config.json`` sampler also has ``options`` (what ``Generator.from_run`` reads).

    The run is left as it is, and ``out_dir`` must not exist, so nothing stored is overwritten. The copy is staged
    beside it (``write_dit``, if given, adds files to the staged ``dit/`` folder) and renamed into place, so a
    failure leaves no half-made run.
    """
    import json
    import shutil

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config_file = run_dir / "dit" / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{run_dir}: no dit/config.json here; give a trained run folder")
    if out_dir.exists():
        raise ValueError(f"{out_dir}: already exists; choose a new folder for the copy")
    config = json.loads(config_file.read_text())
    config["sampler"] = {**config.get("sampler", {}), **options}
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_dir, staging)
    if write_dit is not None:
        write_dit(staging / "dit")
    (staging / "dit" / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    staging.rename(out_dir)
    return out_dir


def save_generated(folder: str | os.PathLike, state_dict: dict[str, torch.Tensor], arch, task,
                   generator: Generator | None = None, **details) -> Path:
    """A hub-style folder (model.safetensors + config.json) that ``weightgen.checkpoint.load_model`` loads."""
    arch, task = parse_arch(arch), parse_task(task)
    config = {
        "format": GENERATED_FORMAT, "arch": arch.model_dump(), "task": task.model_dump(),
        "arch_string": arch.to_string(), "task_string": task.to_string(),
        "generator": {"run": generator.source, "ddim_steps": generator.steps, "guidance": generator.guidance,
                      "relabel": generator.relabel}
        if generator else None,
        **details,
    }
    return save_checkpoint(folder, state_dict, config)
