"""Train the DiT on a SequenceSet with HF Accelerate: one CPU, several processes, or many GPUs.

    python -m weightgen.dit_train --data SEQS.safetensors --out DIR --steps 1000
    torchrun --nproc_per_node 2 -m weightgen.dit_train --data ... --out ...
    accelerate launch --multi_gpu --num_processes 2 -m weightgen.dit_train --data ... --out ...

Everything random in a step (which sequences, crop windows, timesteps, noise, task dropout) is
drawn for the *global* batch from a generator seeded by (seed, step), and every process takes its
own slice of rows. So resuming from a checkpoint replays the same batches, and N processes with
global batch B compute the same update as one process with batch B (up to float summation order):
each process divides its squared error by the global count of real values, and DDP averages.

Checkpoints go to ``out/checkpoints/step-XXXXXX`` (``accelerator.save_state`` + trainer_state.json),
written to a temporary folder and renamed, so a folder with that name is always complete.
The result is a hub-style folder: model.safetensors (EMA weights when EMA is on) + config.json.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as save_bytes

from weightgen import diffusion
from weightgen.checkpoint import read_weights
from weightgen.dit import DIT_PRESETS, DiT, DiTConfig
from weightgen.io import atomic_write_bytes, atomic_write_json, atomic_write_text, with_default_mode
from weightgen.sequences import SequenceSet

_STEP_PREFIX = "step-"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16  # global: per-process batch × number of processes
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0  # 0 = off
    seed: int = 0
    checkpoint_every: int = 0  # 0 = no checkpoints
    log_every: int = 10
    max_len: int = 256  # random contiguous window of at most this many tokens per sequence
    ema: float = 0.0  # EMA decay, e.g. 0.999; 0 = off
    resume: bool = False
    stop_at: int = 0  # stop (as if killed) after this step's checkpoint, without writing the model; 0 = off
    eval_every: int = 0  # call on_eval(step, model) on the main process every this many steps; 0 = off


@dataclass
class TrainResult:
    losses: list[float]  # global mean loss of every step, from step 1
    num_processes: int
    distributed_type: str
    out: Path
    weights_sha256: str = ""
    log: list[dict] = field(default_factory=list)  # rows of losses.csv


# --------------------------------------------------------------------------- data
def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def collate(items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """(values [l, D], coords [l, 8], depth [l]) items → values [B, L, D], coords, depth, mask [B, L]."""
    L = max(len(v) for v, _, _ in items)
    B, D = len(items), items[0][0].shape[1]
    values, coords = torch.zeros(B, L, D), torch.zeros(B, L, items[0][1].shape[1], dtype=torch.int64)
    depth, mask = torch.zeros(B, L), torch.zeros(B, L, dtype=torch.bool)
    for i, (v, c, d) in enumerate(items):
        values[i, : len(v)], coords[i, : len(v)], depth[i, : len(v)], mask[i, : len(v)] = v, c, d, True
    return values, coords, depth, mask


def global_batch(data: SequenceSet, cfg: TrainConfig, step: int, cond_dropout: float = 0.0) -> dict:
    """The whole batch of ``step`` with its noise, timesteps and task dropout; a pure function of (seed, step)."""
    g = step_generator(cfg.seed, step)
    S, B = len(data), cfg.batch_size
    index = torch.randperm(S, generator=g)[:B] if B <= S else torch.randint(0, S, (B,), generator=g)
    items = []
    for i in index.tolist():
        v, c, d = data.sequence(i)
        start = int(torch.randint(0, max(len(v) - cfg.max_len, 0) + 1, (1,), generator=g))
        items.append((v[start : start + cfg.max_len], c[start : start + cfg.max_len], d[start : start + cfg.max_len]))
    x0, coords, depth, mask = collate(items)
    return dict(
        x0=x0, coords=coords, depth=depth, mask=mask, family=data.family[index], task=data.task[index],
        t=torch.randint(0, diffusion.NUM_TRAIN_STEPS, (B,), generator=g),
        noise=torch.randn(x0.shape, generator=g),
        drop_task=torch.rand(B, generator=g) < cond_dropout,
    )


def local_slice(batch: dict, rank: int, world: int) -> dict:
    """This process's rows, cropped to their own longest sequence."""
    per = batch["x0"].shape[0] // world
    rows = slice(rank * per, (rank + 1) * per)
    local = {k: v[rows] for k, v in batch.items()}
    L = int(local["mask"].sum(1).max())
    for k in ("x0", "coords", "depth", "mask", "noise"):
        local[k] = local[k][:, :L]
    return local


# --------------------------------------------------------------------------- checkpoints
def latest_checkpoint(out: Path) -> Path | None:
    done = sorted((out / "checkpoints").glob(f"{_STEP_PREFIX}[0-9]*"))
    return done[-1] if done else None


def save_checkpoint(accelerator, out: Path, step: int, losses: list[float], log: list[dict]) -> None:
    final = out / "checkpoints" / f"{_STEP_PREFIX}{step:06d}"
    tmp = out / "checkpoints" / f".tmp-{_STEP_PREFIX}{step:06d}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    tmp.mkdir(parents=True, exist_ok=True)
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in tmp.rglob("*"):  # save_state writes its weights owner-only, as safetensors' save_file does
            with_default_mode(path, directory=path.is_dir())
        atomic_write_json(tmp / "trainer_state.json", {"step": step, "losses": losses, "log": log})
        if final.exists():  # a fresh (non-resumed) run passing a step an earlier run saved
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------- export
def weights_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_pretrained(model: DiT, out: Path, train_cfg: TrainConfig | None = None, weights: str = "raw") -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / "model.safetensors", save_bytes(state, metadata={"format": "pt"}))
    config = {"model_type": "weightgen-dit", "dit": asdict(model.cfg), "weights": weights}
    if train_cfg is not None:
        config["train"] = asdict(train_cfg)
    atomic_write_json(out / "config.json", config)


def save_one_step_run(dit: DiT, base_dir: Path, out_dir: Path, weights: str, sampler: dict, summary_file: str,
                      summary: dict, log_csv: str, config: dict | None = None) -> None:
    """A run folder for a DiT sampled in one step (a tune's or a distillation's): the base's encoder, the DiT
    with ``sampler`` in its ``dit/config.json`` (Generator.from_run samples it that way), the summary and its log."""
    import pandas as pd

    shutil.copytree(base_dir / "encoder", out_dir / "encoder", dirs_exist_ok=True)
    save_pretrained(dit, out_dir / "dit", weights=weights)
    written = json.loads((out_dir / "dit" / "config.json").read_text())
    atomic_write_json(out_dir / "dit" / "config.json", {**written, **(config or {}), "sampler": sampler})
    atomic_write_json(out_dir / "dit" / summary_file, summary)
    pd.DataFrame(summary["log"]).to_csv(out_dir / log_csv, index=False)


def load_dit(folder: str | os.PathLike) -> DiT:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = DiT(DiTConfig(**config["dit"]))
    model.load_state_dict(read_weights(folder / "model.safetensors"), strict=True)
    return model.eval()


# --------------------------------------------------------------------------- training
def train(
    data: SequenceSet | str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    model_cfg: DiTConfig | None = None,
    on_log: Callable[[dict], None] | None = None,
    on_eval: Callable[[int, DiT], None] | None = None,
) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(out)
    data = data if isinstance(data, SequenceSet) else SequenceSet.load(data)
    model_cfg = model_cfg or DiTConfig(latent_dim=data.values.shape[1], **DIT_PRESETS["S"])
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    set_seed(cfg.seed)  # model init: same on every process (DDP also broadcasts it)
    model = DiT(model_cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema = ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    step, losses, log = 0, [], []
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        step, losses, log = state["step"], state["losses"], state["log"]
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "run.json", {"num_processes": world, "distributed_type": str(accelerator.distributed_type.value),
                                             "train": asdict(cfg), "dit": asdict(model_cfg)})  # fmt: skip

    model.train()
    window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.perf_counter(), 0
    while step < cfg.steps:
        batch = global_batch(data, cfg, step, model_cfg.cond_dropout)
        denominator = batch["mask"].sum() * batch["x0"].shape[-1] / world  # DDP averages over processes
        b = {k: v.to(accelerator.device) for k, v in local_slice(batch, rank, world).items()}
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr

        def model_fn(x, t, mask, **kw):
            return model(x, t, b["coords"], b["depth"], mask, b["family"], b["task"], drop_task=b["drop_task"])

        loss = diffusion.training_loss(model_fn, b["x0"], b["t"], b["noise"], b["mask"], denominator)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), accelerator.unwrap_model(model).parameters()):
                    e.lerp_(p, 1 - cfg.ema)
        step += 1

        global_loss = float(accelerator.reduce(loss.detach(), "sum")) / world
        losses.append(global_loss)
        window_loss, window_tokens, window_steps = window_loss + global_loss, window_tokens + int(batch["mask"].sum()), window_steps + 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - window_start
            row = {"step": step, "loss": window_loss / window_steps, "tokens_per_s": window_tokens / elapsed,
                   "s_per_step": elapsed / window_steps}  # fmt: skip
            log.append(row)
            accelerator.print(f"step {step:6d}  loss {row['loss']:.4f}  tokens/s {row['tokens_per_s']:.0f}")
            if on_log is not None and accelerator.is_main_process:
                on_log(row)
            window_loss, window_tokens, window_start, window_steps = 0.0, 0, time.perf_counter(), 0
        if on_eval is not None and cfg.eval_every and step % cfg.eval_every == 0 and accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.eval()
            on_eval(step, ema if ema is not None else unwrapped)  # samples use their own generator: no RNG drift
            unwrapped.train()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            saving = time.perf_counter()
            save_checkpoint(accelerator, out, step, losses, log)
            window_start += time.perf_counter() - saving  # checkpoint time is not training throughput
            if cfg.stop_at and step >= cfg.stop_at:
                accelerator.end_training()
                return TrainResult(losses, world, accelerator.distributed_type.value, out, log=log)

    final = ema if ema is not None else accelerator.unwrap_model(model)
    sha = weights_sha256(final)
    atomic_write_json(out / f"rank-{rank}.json", {"rank": rank, "weights_sha256": sha, "peak_rss_mb": _peak_rss_mb()})
    if accelerator.is_main_process:
        save_pretrained(final, out, cfg, weights="ema" if ema is not None else "raw")
        _write_csv(out / "losses.csv", log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(losses, world, accelerator.distributed_type.value, out, sha, log)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["step", "loss", "tokens_per_s", "s_per_step"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> TrainResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="SequenceSet .safetensors file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="S", choices=sorted(DIT_PRESETS))
    for name in ("dim", "depth", "heads"):
        parser.add_argument(f"--{name}", type=int, default=None, help="override the preset")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true")
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__)
            parser.add_argument(flag, type=kind, default=f.default)
    parser.add_argument("--encoder", help="encoder folder: with --eval-pairs, sample and score seen architectures")
    parser.add_argument("--eval-pairs", default="", help="'ARCH@TASK;ARCH@TASK' scored every --eval-every steps")
    parser.add_argument("--eval-samples", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    data = SequenceSet.load(args.data)
    overrides = {k: getattr(args, k) for k in ("dim", "depth", "heads") if getattr(args, k) is not None}
    model_cfg = DiTConfig(latent_dim=data.values.shape[1], **{**DIT_PRESETS[args.preset], **overrides})
    on_log, on_eval = _mlflow_callbacks(args)
    return train(data, args.out, cfg, model_cfg, on_log=on_log, on_eval=on_eval)


def _mlflow_callbacks(args):
    """With MLFLOW_RUN_ID set (the DiT flow does), log losses and sampled accuracies into that run."""
    run_id = os.environ.get("MLFLOW_RUN_ID")  # read once: mlflow clears it when a run it resumed ends
    if not run_id:
        return None, None
    import mlflow

    def log(row: dict) -> None:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({"loss": row["loss"], "tokens_per_s": row["tokens_per_s"]}, step=row["step"])

    pairs = [p.split("@", 1) for p in args.eval_pairs.split(";") if "@" in p]
    if not (args.encoder and pairs):
        return log, None
    from weightgen.encoder import PatchAutoencoder
    from weightgen.sampling import evaluate_state_dict, sample_state_dicts

    encoder = PatchAutoencoder.load(args.encoder)

    def evaluate(step: int, model: DiT) -> None:
        metrics = {}
        for arch, task in pairs:
            states = sample_state_dicts(model, encoder, arch, task, samples=args.eval_samples, steps=25)
            accs = [evaluate_state_dict(s, arch, task) for s in states]
            metrics[re.sub(r"[^\w./ -]", "_", f"sample_acc/{arch}/{task}")] = sum(accs) / len(accs)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics(metrics, step=step)

    return log, evaluate


if __name__ == "__main__":
    main()
