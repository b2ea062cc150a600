"""Do a generated transformer's residual branches write too loudly? Its branch outputs scaled down before fine-tuning.

A generated transformer's attention and feedforward branches write 1.1–3.1× (median 1.7×) more into the residual
stream, relative to the stream, than a random init's (the branch output's RMS over the stream's at each block,
measured at stop 29 on two of this probe's pairs and on `transformer:dim=24,patch=8` × digits), while its attention
is about as spread (0.82–0.97 of the largest entropy, random init 0.94–0.99). Pre-norm transformers train best when each branch starts
small beside the stream (the reasoning behind ReZero and SkipInit). This scales each block's residual-writing
matrices (``self_attn.out_proj`` and ``linear2``, with their biases) of the sample by a factor, or to random
init's Frobenius norm, and fine-tunes each start as ``benchmarks/layer_probe.py`` does. The pairs are
layer_probe's transformers in no suite, on corpus tasks, so nothing is chosen on a bench case.

    .venv/bin/python benchmarks/residual_branch_probe.py --run runs/xsp-k100-s3-lr1e-4-ts --steps 600 --seeds 0

``--stats`` prints the measurement above instead (no fine-tuning, seconds): per block, the attention logits' spread,
the attention's entropy as a share of its largest, and each branch's output RMS over the stream's, for the sample
and the same seed's random init, on 256 validation examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_probe import PAIRS, parse_pairs, print_summary, probe, probe_parser  # noqa: E402

BRANCH_OUTPUTS = ("self_attn.out_proj.weight", "self_attn.out_proj.bias", "linear2.weight", "linear2.bias")


def writes_to_stream(name: str) -> bool:
    return name.startswith("blocks.") and name.endswith(BRANCH_OUTPUTS)


def starts(sample: dict[str, torch.Tensor], init: dict[str, torch.Tensor], factors=(0.5, 0.25, 0.0)):
    """The sample, random init, the sample with its branch outputs × each factor, and at random init's norm."""
    out = {"generated": sample, "random": init}
    for factor in factors:
        out[f"branches x{factor:g}"] = {k: v * factor if writes_to_stream(k) else v for k, v in sample.items()}
    out["branches at init norm"] = {
        k: v * init[k].norm() / v.norm().clamp(min=1e-12) if writes_to_stream(k) and k.endswith("weight") else v
        for k, v in sample.items()}
    return out


def stream_stats(model, x: torch.Tensor) -> dict[str, float]:
    """A ``TinyTransformer``'s forward pass on ``x``, block by block: what each branch writes beside the stream."""
    stats = {}
    tokens = model.embed(x.flatten(1).unflatten(1, (-1, model.patch))) + model.pos_embedding
    stats["embedding output RMS"] = tokens.pow(2).mean().sqrt().item()
    for i, block in enumerate(model.blocks):
        h = block.norm1(tokens)
        q, k, _ = (h @ block.self_attn.in_proj_weight.T + block.self_attn.in_proj_bias).chunk(3, dim=-1)
        heads = block.self_attn.num_heads
        q, k = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k))
        logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        p = logits.softmax(-1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean().item()
        stats[f"block {i} logit std"] = logits.std(-1).mean().item()
        stats[f"block {i} attention entropy / largest"] = entropy / torch.log(torch.tensor(float(p.shape[-1]))).item()
        attention = block._sa_block(h, None, None, False)  # torch's own branch functions, so this is the forward pass
        stats[f"block {i} attention RMS / stream"] = (attention.pow(2).mean() / tokens.pow(2).mean()).sqrt().item()
        tokens = tokens + attention
        feedforward = block._ff_block(block.norm2(tokens))
        stats[f"block {i} feedforward RMS / stream"] = (feedforward.pow(2).mean() / tokens.pow(2).mean()).sqrt().item()
        tokens = tokens + feedforward
    return stats


def print_stats(run: str, pairs: list[tuple[str, str]], seeds: list[int]) -> None:
    """:func:`stream_stats` of each pair's sample beside the same seed's random init."""
    from weightgen.data import input_shape, load_task
    from weightgen.generate import Generator
    from weightgen.models import build_model

    generator, columns = Generator.from_run(run), {}
    for (arch, task), seed in ((p, s) for p in pairs for s in seeds):
        x = load_task(task).val.x[:256]
        model = build_model(arch, input_shape(task), seed=seed)
        with torch.no_grad():
            columns[(arch, task, seed, "random")] = stream_stats(model, x)
            model.load_state_dict({k: v.float() for k, v in generator.sample(arch, task, seed=seed).state_dicts[0].items()})
            columns[(arch, task, seed, "generated")] = stream_stats(model, x)
    print(pd.DataFrame(columns).to_string(float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "layer_probe's transformers", "0", 600)
    parser.add_argument("--stats", action="store_true", help="print the branches' output scales and the attention's spread; no fine-tuning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.stats:
        return print_stats(args.run, parse_pairs(args.pairs, PAIRS), args.seeds)
    print_summary(probe(args.run, parse_pairs(args.pairs, PAIRS), args.seeds, args.steps, starts))


if __name__ == "__main__":
    main()
