"""DiT training throughput with 1 and with 2 processes (CPU by default), through the real script.

    python benchmarks/dit_throughput.py                      # corpus/default, patch 32, step >= 1000
    python benchmarks/dit_throughput.py --data SEQS.safetensors --steps 50 --batch-size 16

With no ``--data``, a SequenceSet is built from the corpus and its raw normalised patches stand in
for latents (``--latent-dim N`` swaps them for random N-dim latents with the same coordinates).
Each configuration runs ``weightgen.dit_train`` as a subprocess (``torchrun`` for 2 processes);
tokens/s and s/step are means over the logged windows after the first (warm-up), peak RSS is
per rank as the rank reports it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build_data(path: Path, corpus: str, patch_size: int, min_step: int, latent_dim: int) -> None:
    from weightgen.sequences import corpus_sequences

    data = corpus_sequences(corpus, patch_size, min_step=min_step)
    if latent_dim:
        data = data.with_values(torch.randn(len(data.values), latent_dim, generator=torch.Generator().manual_seed(0)))
    data.save(path)


def run(processes: int, data: Path, out: Path, args) -> dict:
    train = ["-m", "weightgen.dit_train", "--data", str(data), "--out", str(out), "--preset", args.preset,
             "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-len", str(args.max_len),
             "--log-every", str(args.log_every)]  # fmt: skip
    if processes == 1:
        command = [sys.executable, *train]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(port), *train]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, capture_output=not args.verbose)
    rows = list(csv.DictReader((out / "losses.csv").open()))[1:] or list(csv.DictReader((out / "losses.csv").open()))
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(processes)]
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["num_processes"] == processes, run_info
    return {
        "processes": processes,
        "type": run_info["distributed_type"],
        "global batch": args.batch_size,
        "tokens/s": sum(float(r["tokens_per_s"]) for r in rows) / len(rows),
        "s/step": sum(float(r["s_per_step"]) for r in rows) / len(rows),
        "peak RSS MB/rank": " / ".join(f"{r['peak_rss_mb']:.0f}" for r in ranks),
        "final loss": float(rows[-1]["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--corpus", default="corpus/default")
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--min-step", type=int, default=1000)
    parser.add_argument("--latent-dim", type=int, default=0, help="random latents of this size; 0 = raw patches")
    parser.add_argument("--preset", default="S")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dit-throughput-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "sequences.safetensors"
            build_data(data, str(ROOT / args.corpus), args.patch_size, args.min_step, args.latent_dim)
        results = [run(p, data, tmp / f"run-{p}", args) for p in args.processes]

    print(f"\nDiT preset {args.preset}, {args.steps} steps, max_len {args.max_len}, data {args.data or args.corpus}, "
          f"torch threads/process: {os.environ.get('OMP_NUM_THREADS', 'default')} (torchrun sets 1 for >1 process)")  # fmt: skip
    keys = list(results[0])
    widths = [max(len(k), *(len(_fmt(r[k])) for r in results)) for k in keys]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths)))
    for r in results:
        print("  ".join(_fmt(r[k]).rjust(w) for k, w in zip(keys, widths)))


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) and value < 10 else f"{value:.0f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
