"""Give each sampled matrix the scale that trained networks of its family give its layer role.

Why: a generator's matrices come out at about one scale (RMS × sqrt(fan-in) 1.4-2.4) in every family and
layer, where the corpus's trained members differ by family and role, from 0.5 (a transformer's first matrix)
to 4.4 (a CNN1d's last); CNN1d samples sit at half their trained scale, CNN2d and transformer ones at 1.6-1.7×
(docs/results.md, item 48). Rescaling a ReLU chain to its *init's* scale without changing its function did
not help (item 14); this asks instead whether the trained scale, function and all, makes a start that
fine-tunes faster, and it also reaches the transformers, which that exact rescaling could not.

A :data:`ScalePrior` is, per family and layer role (parameter kind, first/middle/last layer), the std of the
fan-in-normalised values of the corpus's final checkpoints: the statistics the ``moment`` baseline draws its
random values from (:meth:`weightgen.baselines.CorpusIndex.moments`), read once when a run is calibrated and
stored beside its DiT (``dit/scale_prior.json``), so sampling never needs the corpus. :func:`match_scales`
multiplies each matrix and kernel by prior / its own, keeping its direction; vectors (biases, norm gains)
and position tables stay as sampled. It is elementwise work, ~0 FLOPs next to a sample.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from weightgen.baselines import CorpusIndex, fan_in, layer_roles
from weightgen.specs import parse_arch

ScalePrior = dict[str, dict[str, float]]  # family -> "kind@position" -> std of fan-in-normalised values
PRIOR_FILE = "scale_prior.json"


def _matrix_roles(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``kind@position`` of every matrix or kernel (two or more axes and a fan-in above one)."""
    return {key: f"{kind}@{position}" for key, (kind, position) in layer_roles(dict(state_dict)).items()
            if state_dict[key].ndim >= 2 and fan_in(kind, state_dict[key].shape) > 1}


def corpus_scale_prior(corpus_root: str | os.PathLike) -> ScalePrior:
    """The prior of every family in the corpus, from its final checkpoints."""
    index = CorpusIndex(corpus_root)
    prior: ScalePrior = {}
    for family in sorted(set(index.finals["family"])):
        matrices = set()
        for member in index.family(family)["member"]:
            matrices |= set(_matrix_roles(index.state_dict(member)).values())
        prior[family] = {f"{kind}@{position}": std for (kind, position), (_, std) in index.moments(family).items()
                         if f"{kind}@{position}" in matrices}
    return prior


def match_scales(state_dict: Mapping[str, torch.Tensor], arch, prior: ScalePrior) -> dict[str, torch.Tensor]:
    """``state_dict`` with each matrix's fan-in-normalised std set to its role's in ``prior``.

    A role the prior lacks (a family or layer kind the corpus never had) and a constant matrix keep their values.
    Differentiable in the sampled values (their own scale is a tensor), so a loss can be taken through it.
    """
    roles = prior.get(parse_arch(arch).family, {})
    out = dict(state_dict)
    for key, role in _matrix_roles(state_dict).items():
        value = state_dict[key]
        own = value.std(correction=0) * math.sqrt(fan_in(role.split("@")[0], value.shape))  # a tensor: differentiable
        if role in roles and float(own.detach()) > 0:
            out[key] = value * (roles[role] / own)
    return out


def save_prior(dit_dir: str | os.PathLike, prior: ScalePrior) -> Path:
    path = Path(dit_dir) / PRIOR_FILE
    path.write_text(json.dumps(prior, indent=1, sort_keys=True) + "\n")
    return path


def load_prior(dit_dir: str | os.PathLike) -> ScalePrior:
    """The prior saved beside a DiT; a ValueError naming the file when it is missing or malformed."""
    path = Path(dit_dir) / PRIOR_FILE
    try:
        prior = json.loads(path.read_text())
        return {str(f): {str(r): float(s) for r, s in roles.items()} for f, roles in prior.items()}
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; the sampler asks for matched scales "
                         "(write it with `weightgen dit match-scales`)") from None
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a scale prior ({{family: {{role: std}}}}): {exc}") from None


def calibrate_run(run_dir: str | os.PathLike, corpus_root: str | os.PathLike, out_dir: str | os.PathLike,
                  families: Sequence[str] | None = None) -> Path:
    """A copy of ``run_dir`` that samples with matched scales: the corpus's prior saved beside its DiT and
    ``match_scales`` set in its ``dit/config.json`` sampler. The run itself is left as it is; ``out_dir`` must
    not exist, so nothing stored is overwritten. A tune of the copy does not keep the option (the tune's loss
    never sees it), so calibrate after tuning. ``families`` keeps the prior of those families only, so the
    others' samples stay as drawn (the match costs CNN1d starts accuracy on the corpus pairs, item 49)."""
    from weightgen.generate import copy_run_with_sampler

    prior = corpus_scale_prior(corpus_root)  # before copying, so a bad corpus or family leaves no half-made folder
    if families is not None:
        if not families:
            raise ValueError(f"name at least one family to match; {corpus_root} has {', '.join(sorted(prior))}")
        unknown = sorted(set(families) - set(prior))
        if unknown:
            raise ValueError(f"{corpus_root}: no prior for famil{'y' if len(unknown) == 1 else 'ies'} "
                             f"{', '.join(unknown)}; it has {', '.join(sorted(prior))}")
        prior = {family: prior[family] for family in families}
    return copy_run_with_sampler(run_dir, out_dir, {"match_scales": True}, lambda dit_dir: save_prior(dit_dir, prior))
