"""What it cost to make the generator: corpus training, encoder training and DiT training, in FLOPs.

Counted the way the training loop counts a step (:func:`counting_flops`: matmuls, convolutions
and attention, forward + backward), then multiplied by the number of steps actually run. The corpus
side uses each member's own counted FLOPs per step from the manifest. For the DiT, one step's FLOPs
depend on the sequences drawn, so the count is the mean over the first few real training batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _cpu_attention(query_shape, key_shape, value_shape, *_args, **_kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *_args, **_kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter knows the CUDA attention kernels (flash, efficient, cuDNN) but not the one
# scaled_dot_product_attention runs on CPU, which it counted as 0 FLOPs: the same formulas for it.
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward}


@contextmanager
def counting_flops() -> Iterator[FlopCounterMode]:
    """A ``FlopCounterMode`` (no display) that sees every op this package runs: the one way FLOPs are counted here.

    Two things torch's own counter misses on CPU are put right: attention (the CPU kernel of
    ``scaled_dot_product_attention``, which the DiT and the zoo's transformers run, counted with torch's own
    attention formulas) and ``nn.TransformerEncoderLayer``'s inference fast path (one fused op, the whole layer
    counted as 0), which is turned off inside the block so the layer runs, and is counted, op by op.
    Until stop 44 both were counted as nothing (docs/results.md, item 81).
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class RepeatedFlops:
    """A running FLOP count of work that recurs with the same shapes, each kind (key) counted once.

    A FLOP counter routes every op through a Python hook. Around a whole tune or distillation loop that
    made a small network's training steps 7-10x slower and a DiT's step about 2x (stop 18's micro-benchmark,
    docs/results.md item 44), and those loops repeat the same pair's work, with the same shapes, hundreds of
    times. So the first ``count(key)`` block runs under a counter and later blocks with the same key run bare
    and add that count: the same total, as long as a key's work has one set of shapes (tests check it against
    a counter around everything).
    """

    def __init__(self) -> None:
        self.total = 0
        self._per_key: dict[Hashable, int] = {}

    @contextmanager
    def count(self, key: Hashable) -> Iterator[None]:
        known = self._per_key.get(key)
        if known is None:
            with counting_flops() as counter:
                yield
            known = self._per_key[key] = int(counter.get_total_flops())
        else:
            yield
        self.total += known


def corpus_training_flops(manifest: pd.DataFrame) -> int:
    """Σ over zoo members of FLOPs per step × steps trained (imported checkpoints cost this corpus nothing)."""
    from weightgen.corpus import final_checkpoints

    final = final_checkpoints(manifest[(manifest["family"] != "external") & manifest["flops_per_step"].notna()])
    return int((final["flops_per_step"] * final["step"]).sum())


def encoder_training_flops(encoder_dir: str | os.PathLike) -> int:
    from weightgen.encoder import PatchAutoencoder, masked_mse

    model = PatchAutoencoder.load(encoder_dir).train()
    c = model.config
    coords = torch.zeros(c.batch_size, 8, dtype=torch.long)
    coords[:, 6] = c.patch_size  # a full patch; the cost does not depend on the values
    x = torch.zeros(c.batch_size, c.patch_size)
    with counting_flops() as counter:
        masked_mse(model(x, coords), x, coords, c.patch_size).backward()
    return int(counter.get_total_flops()) * c.steps


def dit_training_flops(run_dir: str | os.PathLike, sample_steps: int = 4) -> int:
    from weightgen import diffusion
    from weightgen.dit_train import TrainConfig, global_batch, load_dit
    from weightgen.sequences import SequenceSet

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "dit" / "config.json").read_text())
    cfg = TrainConfig(**config["train"])
    model = load_dit(run_dir / "dit").train()
    data = SequenceSet.load(run_dir / "latents.safetensors")
    counts = []
    for step in range(min(sample_steps, cfg.steps)):
        b = global_batch(data, cfg, step, model.cfg.cond_dropout)

        def model_fn(x, t, mask, **_):
            return model(x, t, b["coords"], b["depth"], mask, b["family"], b["task"], drop_task=b["drop_task"])

        with counting_flops() as counter:
            diffusion.training_loss(model_fn, b["x0"], b["t"], b["noise"], b["mask"]).backward()
        counts.append(counter.get_total_flops())
        model.zero_grad(set_to_none=True)
    return int(sum(counts) / len(counts) * cfg.steps)


def records_whole_cost(run_dir: str | os.PathLike) -> bool:
    """Whether the run recorded its generator's whole cost: a distilled run, or a tune of one (``includes_base_generator``)."""
    from weightgen.dit_distill import DISTILL_FILE
    from weightgen.dit_tune import TUNE_FILE

    dit = Path(run_dir) / "dit"
    return (dit / DISTILL_FILE).is_file() or ((dit / TUNE_FILE).is_file()
                                               and bool(json.loads((dit / TUNE_FILE).read_text()).get("includes_base_generator")))


def generator_flops_countable(run_dir: str | os.PathLike) -> bool:
    """Whether :func:`generator_training_flops` can count this run: a recorded whole cost, or the latents its DiT
    trained on."""
    return records_whole_cost(run_dir) or (Path(run_dir) / "latents.safetensors").is_file()


def generator_training_flops(run_dir: str | os.PathLike) -> int:
    """Encoder + DiT training, plus a task-loss fine-tune's counted FLOPs when the run had one.

    A distilled run (:mod:`weightgen.dit_distill`) recorded its whole cost, its teacher's included, and so
    did a tune of one (``includes_base_generator``).
    """
    from weightgen.dit_distill import DISTILL_FILE
    from weightgen.dit_tune import TUNE_FILE

    run_dir = Path(run_dir)
    distilled, finetune = run_dir / "dit" / DISTILL_FILE, run_dir / "dit" / TUNE_FILE
    if records_whole_cost(run_dir):
        return int(json.loads((distilled if distilled.is_file() else finetune).read_text())["flops"])
    extra = int(json.loads(finetune.read_text())["flops"]) if finetune.is_file() else 0
    return encoder_training_flops(run_dir / "encoder") + dit_training_flops(run_dir) + extra
