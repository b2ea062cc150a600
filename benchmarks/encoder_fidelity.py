"""Encoder fidelity: train the patch autoencoder on most of a corpus, judge it on held-out members.

    .venv/bin/python benchmarks/encoder_fidelity.py --corpus corpus/default [--latent-dim 16] [--patch-size 32] [--steps 3000]

About 10% of members are held out whole (every checkpoint), chosen deterministically and covering
every family; the encoder trains on the rest (checkpoints at step >= --min-step). Prints training
time, per-kind MSE on held-out tokens, reconstructed-model test accuracy per family, and the cosine
similarity of all-MiniLM-L6-v2 sentence embeddings before/after reconstructing its weights.
"""

from __future__ import annotations

import argparse
import tempfile

import pandas as pd
import torch

from weightgen.encoder import EncoderConfig
from weightgen.encoder_eval import run_encoder_stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="corpus/default")
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--min-step", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--out", help="folder for the encoder and latents (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pd.set_option("display.width", 200)
    config = EncoderConfig(patch_size=args.patch_size, latent_dim=args.latent_dim, hidden=args.hidden, depth=args.depth,
                           steps=args.steps, batch_size=args.batch_size)
    print(f"config: {config}")
    out = args.out or tempfile.mkdtemp(prefix="wg-encoder-")
    stage = run_encoder_stage(args.corpus, out, config, args.min_step, minilm=not args.no_minilm,
                              on_step=lambda r: print(f"  step {r['step']:5d}  train_mse {r['train_mse']:.5f}  "
                                                      f"val_mse {r['val_mse']:.5f}", flush=True))
    s = stage.summary
    print(f"\ntraining: {s['train_time_s']:.1f}s ({args.threads} thread(s)), {s['train_tokens']:.0f} tokens; "
          f"final val_mse {s['final_val_mse']:.5f} (held-out variance {s['heldout_variance']:.3f}); saved in {out}")
    print("\nper-kind MSE on held-out tokens (normalised units):")
    print(stage.per_kind.to_string(index=False, float_format=lambda x: f"{x:.5f}"))
    fid = stage.fidelity
    print(f"\nfidelity of held-out members' last checkpoints ({len(fid)} members):")
    summary = fid.groupby("family").agg(members=("member", "count"), acc_original=("acc_original", "median"),
                                        acc_reconstructed=("acc_reconstructed", "median"),
                                        median_acc_kept=("acc_kept", "median"), min_acc_kept=("acc_kept", "min"),
                                        median_weight_rel_error=("weight_rel_error", "median"))
    print(summary.to_string(float_format=lambda x: f"{x:.4f}"))
    print(f"overall median acc_kept: {s['acc_kept_median']:.4f} (goal >= 0.99); min {s['acc_kept_min']:.4f}")
    if stage.minilm:
        m = stage.minilm
        print(f"\nall-MiniLM-L6-v2 through the encoder: {m['sentences']} sentences, cosine mean {m['cos_mean']:.4f}, "
              f"min {m['cos_min']:.4f}; weight rel error {m['weight_rel_error']:.4f}")
        print(m["by_kind"].to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
