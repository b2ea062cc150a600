"""Sample weights for an architecture and task: DiT latents → encoder decoder → a state_dict.

The architecture enters only through token coordinates, so the template is the tokenization of a
freshly built (random-init) network: its layout says which tokens to generate and where each goes;
its values are never used. The sample's quality is judged the way every init is: accuracy of the
loaded network, and its distance to the nearest corpus checkpoint of the same architecture (a
memorisation check, next to the distance between two independently trained members).
"""

from __future__ import annotations

import torch

from weightgen import diffusion
from weightgen.data import input_shape, load_task
from weightgen.models import build_model
from weightgen.sequences import denormalize, family_id, normalize, task_features
from weightgen.specs import parse_arch, parse_task
from weightgen.tokens import Tokens, tokenize


NOISE_KINDS = ("gaussian", "coords")
KEEP_KINDS = ("none", "all", "matrices")  # which tokens get the start added back to the sample
OUTPUT_KINDS = ("latents", "patches")  # what the DiT gives: latents for the decoder, or the patches themselves


def keep_kind(value) -> str:
    """A sampler's ``keep_noise``: one of KEEP_KINDS (True/False, as older runs wrote it, mean all/none)."""
    kind = {True: "all", False: "none"}.get(value, value) if isinstance(value, bool) else value
    if kind not in KEEP_KINDS:
        raise ValueError(f"unknown keep_noise {value!r}; valid: {', '.join(KEEP_KINDS)}")
    return kind


def kept_start(start: torch.Tensor, coords: torch.Tensor, keep: str) -> torch.Tensor:
    """The part of ``start`` [.., N, D] added back to a sample: all of it, none, or only matrix/kernel tokens.

    ``matrices`` leaves vectors (biases, norm scales) to the generator alone, so a vector never
    carries a unit-variance latent draw of its own into the network.
    """
    if keep == "none":
        return torch.zeros_like(start)
    if keep == "matrices":
        return start * (coords[..., 7] > 1).unsqueeze(-1).to(start.dtype)  # coords column 7: the tensor's ndim
    return start


def coordinate_noise(coords: torch.Tensor, latent_dim: int, salt: int = 0) -> torch.Tensor:
    """[N, latent_dim] start noise in which a token's draw depends only on its (layer, kind, row, chunk) and ``salt``.

    Two architectures that share a position (row 5, chunk 0 of layer 1's weight matrix in a 64- and a
    96-wide MLP) start from the same draw there, so a generator trained from these starts (one step,
    ``weightgen dit tune``) sees an unseen width as an extension of the
    widths it knows. ``salt`` 0 is the draw such a generator was trained on.
    """
    rows = []
    for layer, kind, row, chunk in coords[:, [1, 2, 3, 4]].tolist():
        seed = ((layer * 101 + kind) * 100_003 + row) * 1_009 + chunk + salt * 1_000_000_007
        rows.append(torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows) if rows else torch.zeros(0, latent_dim)


def template(arch, task, patch_size: int) -> Tokens:
    """Tokens laying out ``arch`` on ``task``'s inputs (values from a seed-0 init, unused by sampling)."""
    return tokenize(build_model(arch, input_shape(task), seed=0).state_dict(), patch_size)


@torch.no_grad()
def sample_state_dicts(dit, encoder, arch, task, samples: int = 1, steps: int = 50, guidance: float = 1.0,
                       seed: int = 0, noise: str = "gaussian", keep_noise: str | bool = "none",
                       output: str = "latents") -> list[dict[str, torch.Tensor]]:
    """``samples`` state_dicts for ``arch`` on ``task``, from DDIM with classifier-free guidance ``guidance``.

    ``noise``: ``gaussian`` starts from a ``seed``-ed draw; ``coords`` from :func:`coordinate_noise`
    (sample i with salt i, whatever ``seed``: one architecture and task always gives the same first
    sample). ``keep_noise`` (:data:`KEEP_KINDS`) adds the start back to the result, on all tokens or on
    matrix/kernel tokens only: the generator's output is then a correction to a random point of latent
    space (how tuned generators are trained, :mod:`weightgen.dit_tune`). ``output`` ``patches``: the DiT
    writes normalised patches in one pass (a student of :mod:`weightgen.dit_distill`); no DDIM, no
    decoder, and ``keep_noise`` does not apply (the start lives in latent space). The encoder then only
    gives the patch size.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; valid: {', '.join(NOISE_KINDS)}")
    if output not in OUTPUT_KINDS:
        raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUT_KINDS)}")
    if output == "patches" and steps != 1:
        raise ValueError(f"a DiT that writes patches samples in one step, not {steps}")
    arch, task = parse_arch(arch), parse_task(task)
    tokens = template(arch, task, encoder.config.patch_size)
    n = len(tokens)
    shape = (samples, n, dit.cfg.latent_dim)
    if noise == "coords":
        start = torch.stack([coordinate_noise(tokens.coords, dit.cfg.latent_dim, salt=i) for i in range(samples)])
    else:
        start = torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # what diffusion.sample would draw
    coords = tokens.coords.unsqueeze(0).expand(samples, n, -1)  # [S, N, 8]
    depth = tokens.depth.unsqueeze(0).expand(samples, n)  # [S, N]
    family = torch.full((samples,), family_id(arch.family), dtype=torch.long)
    features = task_features(task).unsqueeze(0).expand(samples, -1)  # [S, F]
    dit.eval()
    encoder.eval()

    def model_fn(x, t, mask, drop_task=None, **_):
        return dit(x, t, coords, depth, mask, family, features, drop_task=drop_task)

    if output == "patches":
        values = direct_patches(model_fn, start, coords.reshape(samples * n, -1), encoder.config.patch_size, guidance)
    else:
        z = diffusion.sample(model_fn, shape, steps=steps, guidance_scale=guidance, noise=start)  # [S, N, latent]
        z = z + kept_start(start, coords, keep_kind(keep_noise))
        values = encoder.decode(encoder.unstandardize(z.reshape(samples * n, -1)), coords.reshape(samples * n, -1))
    return [denormalize(tokens, v) for v in values.reshape(samples, n, -1)]


def direct_patches(model_fn, start: torch.Tensor, flat_coords: torch.Tensor, patch_size: int,
                   guidance: float = 1.0) -> torch.Tensor:
    """[S·N, P] normalised patches from a patch-writing DiT's one pass at t = T (guided like a DDIM step).

    Padding positions come out exactly 0, as the decoder gives them.
    """
    from weightgen.encoder import valid_mask

    (S, N, _), device = start.shape, start.device
    t = torch.full((S,), diffusion.NUM_TRAIN_STEPS - 1, dtype=torch.long, device=device)
    mask = torch.ones(S, N, dtype=torch.bool, device=device)
    out = model_fn(start, t, mask, drop_task=torch.zeros(S, dtype=torch.bool, device=device))
    if guidance != 1.0:
        uncond = model_fn(start, t, mask, drop_task=torch.ones(S, dtype=torch.bool, device=device))
        out = uncond + guidance * (out - uncond)
    out = out.reshape(S * N, -1)
    return torch.where(valid_mask(flat_coords, patch_size), out, 0.0)


def evaluate_state_dict(state_dict: dict[str, torch.Tensor], arch, task, split: str = "test") -> float:
    """Accuracy of ``arch`` loaded with ``state_dict`` on ``task``'s split, with no training."""
    from weightgen.checkpoint import model_for_weights
    from weightgen.training import evaluate

    model = model_for_weights(state_dict, parse_arch(arch), parse_task(task), where="sample")
    return evaluate(model, getattr(load_task(task), split))[1]


def relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], patch_size: int = 32) -> float:
    """‖a − b‖ / ‖b‖ over fan-in-normalised weights (same architecture; keys are matched by name)."""
    if set(a) != set(b):
        raise ValueError(f"different architectures: keys {sorted(set(a) ^ set(b))[:4]} are in only one")
    b = {k: b[k] for k in a}  # the same token layout for both
    x, y = normalize(tokenize(a, patch_size)), normalize(tokenize(b, patch_size))
    return float((x - y).norm() / y.norm().clamp(min=1e-12))


def default_pairs(corpus_root) -> str:
    """One seen 'ARCH@TASK' per family (its first arch on its first task, in sorted order), ';'-joined."""
    from weightgen.corpus import Corpus

    frame = Corpus(corpus_root).require_nonempty()
    frame = frame[frame["family"] != "external"].sort_values(["family", "arch", "task"])
    return ";".join(f"{g['arch'].iloc[0]}@{g['task'].iloc[0]}" for _, g in frame.groupby("family"))


def seen_report(dit, encoder, corpus_root, pairs: list[tuple[str, str]], samples: int = 2, guidance: float = 1.0,
                steps: int = 50, seed: int = 0):
    """One row per sample of each seen (arch, task): its accuracy with no fine-tuning beside the members'
    final accuracy, and its distance to the nearest final member of that arch (any task of the same dataset)
    beside the mean distance between that pair's own members."""
    import itertools

    import pandas as pd

    from weightgen.corpus import Corpus, final_checkpoints

    corpus = Corpus(corpus_root)
    manifest = corpus.require_nonempty()
    rows = []
    for arch, task in pairs:
        arch_s, task_s = parse_arch(arch).to_string(), parse_task(task).to_string()
        # Same architecture on the same dataset: the same shapes (an MLP's first layer follows the input size).
        mine = manifest[(manifest["arch"] == arch_s) & (manifest["dataset"] == parse_task(task).dataset)]
        final = final_checkpoints(mine)
        pair_final = final[final["task"] == task_s]
        if pair_final.empty:
            raise ValueError(f"{arch_s} on {task_s} is not in the corpus: not a seen pair")
        members = {m: corpus.load(m, int(s))[0] for m, s in zip(final["member"], final["step"])}
        between = [relative_distance(members[a], members[b], encoder.config.patch_size)
                   for a, b in itertools.combinations(pair_final["member"], 2)]
        for i, state in enumerate(sample_state_dicts(dit, encoder, arch_s, task_s, samples, steps, guidance, seed)):
            distances = {m: relative_distance(state, w, encoder.config.patch_size) for m, w in members.items()}
            nearest = min(distances, key=distances.get)
            rows.append({
                "arch": arch_s, "task": task_s, "sample": i,
                "acc_sample": evaluate_state_dict(state, arch_s, task_s),
                "acc_members": float(pair_final["test_acc"].mean()),
                "nearest_member": nearest, "nearest_same_task": nearest in set(pair_final["member"]),
                "dist_nearest": distances[nearest],
                "dist_between_members": float(sum(between) / len(between)) if between else float("nan"),
            })
    return pd.DataFrame(rows)
