"""At which noise level does the trained DiT lose the network? One-step clean predictions, scored by accuracy.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/denoise_levels.py --run runs/default-v0-sorted --corpus corpus/default
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/denoise_levels.py --run runs/v-tiny --levels 0,100,300,500 --members 4

For a few corpus members (the final checkpoint of each, spread over families), the weights are
tokenized, normalised and encoded to standardised latents z0 exactly as the DiT's training data was
(checked against the run's own ``latents.safetensors``: module or name-sorted key order, raw or
canonical unit order, whichever reproduces the stored latents; the gap is printed). For each noise
level t the latents are noised with the training schedule (x_t = sqrt(ᾱ_t)·z0 + sqrt(1−ᾱ_t)·eps, one
fixed eps per member), the DiT runs ONE forward pass with the member's own family and task, and its
clean prediction z0_hat = sqrt(ᾱ)·x_t − sqrt(1−ᾱ)·v (v-prediction, as :mod:`weightgen.diffusion`) is
decoded, loaded into the member's architecture and scored on the member's test split, with no
training. Beside it:

* ``acc_naive``: the noisy input rescaled, x_t / sqrt(ᾱ_t), decoded the same way: what one gets with
  no denoiser at all. The DiT is useful at a level only where it beats this.
* ``gain``: median over members of acc_x0 − acc_naive; ``dit_beats_naive``: members where acc_x0 > acc_naive.
* ``err_x0`` / ``err_naive``: ‖ẑ − z0‖ / ‖z0‖ in (standardised) latent space.
* ``acc_clean``: the member's clean latents decoded (the encoder's ceiling); ``acc_member``: its own weights.

Levels are diffusion timesteps t in [0, 999] (``--levels 0,50,100``); a value written with a decimal
point is an ᾱ_t (signal fraction) and is mapped to the nearest timestep (``--levels 0.99,0.5,0.1``).
The DiT sees the whole sequence at once as the sampler does (``--window 256`` instead cuts it into
consecutive windows of at most that many tokens, as in training). Prints one row per level (medians
over members), the same per family, and, for one level (``--layers-at``, default the middle one), the
latent error by layer position (first / middle / last module of the network) and the worst layers.
Writes every (member, level) row to ``--out`` and the per-layer rows beside it (``*_layers.csv``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
import torch

from weightgen import diffusion
from weightgen.canonical import canonicalize
from weightgen.corpus import Corpus, final_checkpoints
from weightgen.generate import Generator
from weightgen.sampling import evaluate_state_dict
from weightgen.sequences import SequenceSet, denormalize, family_id, normalize, task_features
from weightgen.tokens import tokenize

DEFAULT_LEVELS = "0,50,100,200,300,500,700,999"


def parse_levels(text: str) -> list[int]:
    """'0,50,0.5' → timesteps; a value with a decimal point is an ᾱ_t, mapped to the nearest timestep."""
    levels = []
    for item in text.replace(",", " ").split():
        if "." in item:
            levels.append(int((diffusion.ALPHAS_CUMPROD - float(item)).abs().argmin()))
        else:
            t = int(item)
            if not 0 <= t < diffusion.NUM_TRAIN_STEPS:
                raise SystemExit(f"--levels: timestep {t} is outside [0, {diffusion.NUM_TRAIN_STEPS - 1}]")
            levels.append(t)
    return sorted(set(levels))


def pick_members(corpus_root, n: int) -> pd.DataFrame:
    """``n`` final checkpoints, round-robin over families, evenly spaced over each family's sorted (arch, task, member)."""
    frame = Corpus(corpus_root).require_nonempty()
    final = final_checkpoints(frame[frame["family"] != "external"]).sort_values(["family", "arch", "task", "member"])
    families = sorted(final["family"].unique())
    quota = {f: n // len(families) + (i < n % len(families)) for i, f in enumerate(families)}
    picks = []
    for family in families:
        rows = final[final["family"] == family]
        k = min(quota[family], len(rows))
        picks += [rows.iloc[int((j + 0.5) * len(rows) / k)] for j in range(k)]
    return pd.DataFrame(picks).reset_index(drop=True)


@torch.no_grad()
def encode_member(encoder, state: dict, arch: str, stored: torch.Tensor | None):
    """(tokens, z0 standardised latents [N, D], layout name, max |z0 − stored|): as the DiT's data was made.

    Layouts tried, first match wins: module order (today's corpus loader), canonical unit order, and the
    keys sorted by name (how safetensors hands them back: the token layout before TOKEN_LAYOUT_VERSION 2).
    """
    by_name = {k: state[k] for k in sorted(state)}
    candidates = [("module", state), ("canonical", canonicalize(state, arch)), ("sorted-keys", by_name),
                  ("sorted-keys+canonical", canonicalize(by_name, arch))]
    best = None
    for name, weights in candidates:
        tokens = tokenize(weights, encoder.config.patch_size)
        z0 = encoder.standardize(encoder.encode(normalize(tokens), tokens.coords))
        gap = float((z0 - stored).abs().max()) if stored is not None and stored.shape == z0.shape else math.inf
        if best is None or gap < best[3]:
            best = (tokens, z0, name, gap)
        if stored is None or gap < 1e-4:
            break
    return best


@torch.no_grad()
def decode(encoder, tokens, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Standardised latents [N, D] → a state_dict laid out like ``tokens`` (as :mod:`weightgen.sampling`)."""
    return denormalize(tokens, encoder.decode(encoder.unstandardize(z), tokens.coords))


@torch.no_grad()
def predict_v(dit, xt, t: int, tokens, family: int, features, window: int, guidance: float) -> torch.Tensor:
    """The DiT's v for one sequence [N, D] at timestep ``t``, whole or in consecutive windows."""
    n = len(xt)
    step = window if window > 0 else n
    parts = []
    for a in range(0, n, step):
        x = xt[a : a + step][None]
        L = x.shape[1]
        args = (torch.full((1,), t), tokens.coords[a : a + step][None], tokens.depth[a : a + step][None],
                torch.ones(1, L, dtype=torch.bool), torch.full((1,), family), features[None])
        v = dit(x, *args, drop_task=torch.zeros(1, dtype=torch.bool))
        if guidance != 1.0:
            v_uncond = dit(x, *args, drop_task=torch.ones(1, dtype=torch.bool))
            v = v_uncond + guidance * (v - v_uncond)
        parts.append(v[0])
    return torch.cat(parts)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def layer_rows(tokens, module_order: list[str], z0, z_x0, z_naive, w0, w_x0) -> list[dict]:
    """Per layer (module prefix): latent and normalised-weight relative errors, and where the layer sits
    in the *network* (``module_order``, first appearance in the built model), whatever the token layout."""
    prefix = {lay.layer: lay.name.rpartition(".")[0] for lay in tokens.layout}
    index = {p: i for i, p in enumerate(module_order)}
    last = len(module_order) - 1
    rows = []
    for layer in tokens.coords[:, 1].unique().tolist():
        sel = tokens.coords[:, 1] == layer
        i = index[prefix[layer]]
        rows.append({"layer": i, "module": prefix[layer] or "(top level)",
                     "position": "first" if i == 0 else "last" if i == last else "middle",
                     "tokens": int(sel.sum()), "err_x0": rel(z_x0[sel], z0[sel]), "err_naive": rel(z_naive[sel], z0[sel]),
                     "weight_err_x0": rel(w_x0[sel], w0[sel])})
    return sorted(rows, key=lambda r: r["layer"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default-v0-sorted"), help="run folder with encoder/ and dit/")
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--members", type=int, default=8, help="final checkpoints to probe, spread over families")
    parser.add_argument("--levels", default=DEFAULT_LEVELS, help="timesteps (ints) or ᾱ values (with a decimal point)")
    parser.add_argument("--layers-at", type=int, default=None, help="timestep of the per-layer breakdown (default: middle level)")
    parser.add_argument("--window", type=int, default=0, help="DiT forward in windows of this many tokens (0: whole sequence)")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale of the one step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="CSV (default: RUN/denoise_levels.csv)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()

    levels = parse_levels(args.levels)
    layers_at = args.layers_at if args.layers_at is not None else levels[len(levels) // 2]
    if layers_at not in levels:
        levels = sorted(levels + [layers_at])
    generator = Generator.from_run(args.run)
    dit, encoder = generator.dit, generator.encoder
    stored = {}
    if (args.run / "latents.safetensors").is_file():
        data = SequenceSet.load(args.run / "latents.safetensors")
        stored = {(m["member"], m["step"]): data.sequence(i)[0] for i, m in enumerate(data.meta)}
    corpus = Corpus(args.corpus)
    members = pick_members(args.corpus, args.members)

    rows, per_layer = [], []
    for i, member in members.iterrows():
        state, _ = corpus.load(member["member"], int(member["step"]))  # keys in module order
        module_order = list(dict.fromkeys(k.rpartition(".")[0] for k in state))
        arch, task = member["arch"], member["task"]
        tokens, z0, layout, gap = encode_member(encoder, state, arch, stored.get((member["member"], int(member["step"]))))
        family, features = family_id(member["family"]), task_features(task)
        w0 = normalize(tokens)
        base = {"member": member["member"], "family": member["family"], "arch": arch, "task": task, "tokens": len(tokens),
                "layout": layout, "stored_gap": gap, "acc_member": evaluate_state_dict(state, arch, task),
                "acc_clean": evaluate_state_dict(decode(encoder, tokens, z0), arch, task)}
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + i))
        for t in levels:
            a = diffusion.ALPHAS_CUMPROD[t].float()
            xt = a.sqrt() * z0 + (1 - a).sqrt() * noise  # diffusion.q_sample, for one unbatched sequence
            v = predict_v(dit, xt, t, tokens, family, features, args.window, args.guidance)
            z_x0 = a.sqrt() * xt - (1 - a).sqrt() * v  # as diffusion.sample reads x0 off v
            z_naive = xt / a.sqrt()
            x0_state = decode(encoder, tokens, z_x0)
            rows.append({**base, "t": t, "alpha_bar": float(a),
                         "acc_x0": evaluate_state_dict(x0_state, arch, task),
                         "acc_naive": evaluate_state_dict(decode(encoder, tokens, z_naive), arch, task),
                         "err_x0": rel(z_x0, z0), "err_naive": rel(z_naive, z0)})
            if t == layers_at:
                with torch.no_grad():
                    w_x0 = encoder.decode(encoder.unstandardize(z_x0), tokens.coords)
                per_layer += [{"member": member["member"], "family": member["family"], "arch": arch, "t": t, **r}
                              for r in layer_rows(tokens, module_order, z0, z_x0, z_naive, w0, w_x0)]
        print(f"{member['family']:12s} {arch:44s} {task:28s} {len(tokens):4d} tokens  layout {layout} "
              f"(|z0 - stored| {gap:.1e})  acc member {base['acc_member']:.3f} clean {base['acc_clean']:.3f}", flush=True)

    table, layers = pd.DataFrame(rows), pd.DataFrame(per_layer)
    out = args.out or args.run / "denoise_levels.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    layers.to_csv(out.with_name(out.stem + "_layers.csv"), index=False)

    summary = table.groupby("t").agg(
        alpha_bar=("alpha_bar", "first"), acc_x0=("acc_x0", "median"), acc_naive=("acc_naive", "median"),
        dit_beats_naive=("acc_x0", "size"), err_x0=("err_x0", "median"), err_naive=("err_naive", "median"),
        acc_clean=("acc_clean", "median"), acc_member=("acc_member", "median")).reset_index()
    wins = (table["acc_x0"] > table["acc_naive"]).groupby(table["t"]).sum()
    summary["dit_beats_naive"] = [f"{int(wins[t])}/{n}" for t, n in zip(summary["t"], summary["dit_beats_naive"])]
    summary.insert(4, "gain", (table["acc_x0"] - table["acc_naive"]).groupby(table["t"]).median().to_numpy())
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"\n{args.run}: {len(members)} members, medians over members (acc = test accuracy, no training; "
              f"err = latent ‖ẑ − z0‖/‖z0‖; window {args.window or 'whole'}, guidance {args.guidance})")
        print(summary.to_string(index=False, float_format=fmt))
        print("\nacc_x0 by family (median over that family's members) / acc_naive:")
        by_family = table.pivot_table(index="t", columns="family", values=["acc_x0", "acc_naive"], aggfunc="median")
        print(pd.DataFrame({f: [f"{x:.2f} / {n:.2f}" for x, n in zip(by_family["acc_x0"][f], by_family["acc_naive"][f])]
                            for f in by_family["acc_x0"].columns}, index=by_family.index).to_string())
        by_position = layers.groupby("position").agg(
            layers=("layer", "size"), tokens=("tokens", "sum"), err_x0=("err_x0", "median"),
            err_naive=("err_naive", "median"), weight_err_x0=("weight_err_x0", "median")).reindex(["first", "middle", "last"])
        print(f"\nper layer at t = {layers_at} (medians over every member's layers in that position; "
              "weight_err = normalised-weight error of the decoded x0)")
        print(by_position.reset_index().to_string(index=False, float_format=fmt))
        worst = layers.sort_values("err_x0", ascending=False).head(8)
        print("\nworst layers at that level:")
        print(worst[["family", "arch", "layer", "module", "position", "tokens", "err_x0", "err_naive", "weight_err_x0"]]
              .to_string(index=False, float_format=fmt))
    print(f"\nwrote {out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
