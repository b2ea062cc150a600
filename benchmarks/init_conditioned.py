"""Experiment: a DiT that generates trained weights *given the init they start from*; prints a table.

`benchmarks/canonical_distance.py` shows corpus members that share an init are far closer than any
other pair: the init fixes the frame (which unit is which). Here every training sequence is paired
with the latents of its member's own init (rebuilt from the member's seed), concatenated to the noisy
latents at the DiT's input. Sampling for a target starts from the target's own random init (a seed
no member used), so a sample lives in that init's frame. Scored like `generator_variants.py`: test
accuracy of samples of every corpus architecture with no fine-tuning, beside the same init untrained.

    .venv/bin/python benchmarks/init_conditioned.py --run runs/v-tiny --steps 4000 --out runs/v-init
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

from weightgen import diffusion
from weightgen.corpus import Corpus, final_checkpoints
from weightgen.data import input_shape
from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
from weightgen.dit_train import collate
from weightgen.encoder import PatchAutoencoder
from weightgen.models import build_model
from weightgen.sampling import evaluate_state_dict
from weightgen.sequences import SequenceSet, denormalize, family_id, normalize, task_features
from weightgen.tokens import tokenize


def init_latents(encoder: PatchAutoencoder, arch: str, task: str, seed: int):
    """(tokens, standardised latents) of ``arch``'s fresh init on ``task``'s inputs with ``seed``."""
    tokens = tokenize(build_model(arch, input_shape(task), seed=seed).state_dict(), encoder.config.patch_size)
    with torch.no_grad():
        return tokens, encoder.standardize(encoder.encode(normalize(tokens), tokens.coords))


def conditioned_dit(latent_dim: int, preset: str) -> DiT:
    dit = DiT(DiTConfig(latent_dim=latent_dim, **DIT_PRESETS[preset]))
    dit.x_embedder = nn.Linear(2 * latent_dim, dit.cfg.dim)  # [noisy latents, init latents]
    nn.init.xavier_uniform_(dit.x_embedder.weight)
    nn.init.zeros_(dit.x_embedder.bias)
    return dit


def conditioned_step(dit, optimizer, items, conds, family, task, g: torch.Generator) -> float:
    """One optimizer step of a DiT that sees [noisy latents, condition latents]; returns the loss.

    ``items`` and ``conds`` are (values, coords, depth) windows of the same tokens: the diffusion
    target and the latents it is conditioned on. Timesteps and noise come from ``g``, after the windows.
    """
    x0, coords, depth, mask = collate(items)
    cond = collate(conds)[0]
    t = torch.randint(0, diffusion.NUM_TRAIN_STEPS, (len(items),), generator=g)

    def model_fn(x, t, mask, **_):
        return dit(torch.cat([x, cond], -1), t, coords, depth, mask, family, task)

    loss = diffusion.training_loss(model_fn, x0, t, torch.randn(x0.shape, generator=g), mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/v-tiny"), help="run with encoder/ and latents.safetensors")
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--out", type=Path, default=Path("runs/v-init"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--target-seed", type=int, default=100, help="init seed of the sampled targets (no member's)")
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    encoder = PatchAutoencoder.load(args.run / "encoder")
    data = SequenceSet.load(args.run / "latents.safetensors")
    seeds = Corpus(args.corpus).manifest().drop_duplicates("member").set_index("member")["seed"]
    inits = []
    for meta in data.meta:
        _, z = init_latents(encoder, meta["arch"], meta["task"], int(seeds[meta["member"]]))
        if len(z) != len(data.sequence(len(inits))[0]):
            raise ValueError(f"{meta['member']}: init layout differs from the stored latents")
        inits.append(z)
    print(f"{len(data)} sequences paired with their members' inits")

    dit = conditioned_dit(data.values.shape[1], args.preset)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(0)
    started, running = time.perf_counter(), 0.0
    dit.train()
    for step in range(1, args.steps + 1):
        index = torch.randint(0, len(data), (args.batch_size,), generator=g).tolist()
        items, conds = [], []
        for i in index:
            v, c, d = data.sequence(i)
            start = int(torch.randint(0, max(len(v) - args.max_len, 0) + 1, (1,), generator=g))
            window = slice(start, start + args.max_len)
            items.append((v[window], c[window], d[window]))
            conds.append((inits[i][window], c[window], d[window]))
        running += conditioned_step(dit, optimizer, items, conds, data.family[index], data.task[index], g)
        if step % 250 == 0:
            print(f"step {step:5d}  loss {running / 250:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
            running = 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(dit.state_dict(), str(args.out / "init_conditioned_dit.safetensors"))

    dit.eval()
    manifest = Corpus(args.corpus).manifest()
    rows = []
    for arch, group in manifest[manifest["family"] != "external"].sort_values(["arch", "task"]).groupby("arch"):
        task = group["task"].iloc[0]
        tokens, z_init = init_latents(encoder, arch, task, args.target_seed)
        n = len(tokens)
        coords, depth = tokens.coords.expand(args.samples, n, -1), tokens.depth.expand(args.samples, n)
        family = torch.full((args.samples,), family_id(group["family"].iloc[0]))
        features = task_features(task).expand(args.samples, -1)
        cond = z_init.expand(args.samples, n, -1)

        def model_fn(x, t, mask, drop_task=None, **_):
            return dit(torch.cat([x, cond], -1), t, coords, depth, mask, family, features, drop_task=drop_task)

        z = diffusion.sample(model_fn, (args.samples, n, data.values.shape[1]), steps=25,
                             generator=torch.Generator().manual_seed(0))
        values = encoder.decode(encoder.unstandardize(z.reshape(args.samples * n, -1)), coords.reshape(args.samples * n, -1))
        accs = [evaluate_state_dict(denormalize(tokens, v), arch, task) for v in values.reshape(args.samples, n, -1)]
        init_acc = evaluate_state_dict(build_model(arch, input_shape(task), seed=args.target_seed).state_dict(), arch, task)
        final = final_checkpoints(group[group["task"] == task])
        rows.append({"arch": arch, "task": task, "sample_acc_mean": sum(accs) / len(accs), "sample_acc_max": max(accs),
                     "init_acc": init_acc, "members_acc": float(final["test_acc"].mean())})
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "seen_samples_report.csv", index=False)
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"median sample accuracy {table['sample_acc_mean'].median():.3f} (its init untrained "
          f"{table['init_acc'].median():.3f}, members {table['members_acc'].median():.3f})")


if __name__ == "__main__":
    main()
