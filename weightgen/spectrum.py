"""A sample's matrices with the spectrum's shape of a random init: the generator's directions, a random init's spread.

The generated matrices put their energy in fewer directions than a trained or random network's (docs/results.md,
item 48), and a generated start can fine-tune slower than random init though it starts higher. This keeps each
generated matrix's singular vectors — the directions the generator chose — and replaces its singular values by
those of the target's own random init at the sample's seed, rescaled to the sample's Frobenius norm: the matrix
keeps its directions and its size, and spreads its energy as a random init does. Vectors (biases, norm
parameters) and matrices with fewer than two rows or columns stay as sampled. Kernels are flattened to
[out, in × k]. It is a sampler option (``"init_spectrum": true`` in a run's ``dit/config.json``; written by
``weightgen dit init-spectrum``), chosen on pairs that are in no suite (``benchmarks/spectrum_reshape_probe.py``,
item 55), and its FLOPs are counted from the standard operation counts of the SVDs and the product.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def svd_flops(rows: int, cols: int, vectors: bool) -> int:
    """Golub & Van Loan's counts (Matrix Computations, 4th ed., 8.6): R-SVD with U1, Σ and V, or Σ alone."""
    m, n = max(rows, cols), min(rows, cols)
    return int(6 * m * n * n + 20 * n ** 3) if vectors else int(4 * m * n * n - 4 * n ** 3 // 3)


def _matrix_shape(tensor: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of ``tensor`` as a matrix (kernels flattened to [out, in × k]); (0, 0) for a vector."""
    rows = tensor.shape[0] if tensor.dim() >= 2 else 0
    return rows, tensor[0].numel() if rows else 0


def singular_values(reference: torch.Tensor) -> tuple[torch.Tensor | None, int]:
    """``reference``'s singular values as a matrix (float64), and the FLOPs; None for what :func:`reshaped` leaves alone."""
    rows, cols = _matrix_shape(reference)
    if min(rows, cols) < 2:
        return None, 0
    return torch.linalg.svdvals(reference.reshape(rows, cols).double()), svd_flops(rows, cols, False)


def reshaped(sample: torch.Tensor, reference: torch.Tensor, values: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """``sample``'s singular vectors with ``reference``'s singular values at ``sample``'s norm, and the FLOPs spent.

    ``values``: ``reference``'s singular values already taken (:func:`singular_values`), so neither they nor their
    FLOPs are spent again: a random init is the same at every step of a tune and for every sample of a seed.
    """
    rows, cols = _matrix_shape(sample)
    if min(rows, cols) < 2:
        return sample, 0
    if reference.shape != sample.shape:
        raise ValueError(f"reference shape {tuple(reference.shape)} is not the sample's {tuple(sample.shape)}")
    flops = 0
    if values is None:
        values, flops = singular_values(reference)
    matrix = sample.reshape(rows, cols).double()
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    out = (u * values) @ vh
    out = out * matrix.norm() / out.norm().clamp(min=1e-12)
    flops += svd_flops(rows, cols, True) + 2 * rows * cols * min(rows, cols) + 4 * rows * cols
    return out.reshape(sample.shape).to(sample.dtype), flops


def init_singular_values(reference: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The singular values of every matrix of ``reference`` (a random init) that :func:`with_init_spectrum` reads, and
    their FLOPs: taken once for many samples of one architecture and seed."""
    values, flops = {}, 0
    for name, tensor in reference.items():
        if tensor.is_floating_point():
            taken, spent = singular_values(tensor)
            if taken is not None:
                values[name], flops = taken, flops + spent
    return values, flops


def with_init_spectrum(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                       values: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """Every matrix of ``state`` reshaped by :func:`reshaped` against ``reference`` (a random init of the same
    network); the new state_dict and the FLOPs. ``values`` (:func:`init_singular_values` of ``reference``) skips
    taking the reference's singular values again."""
    out, flops = {}, 0
    for name, tensor in state.items():
        if tensor.is_floating_point() and name in reference:
            out[name], spent = reshaped(tensor, reference[name], None if values is None else values.get(name))
            flops += spent
        else:
            out[name] = tensor
    return out, flops


def init_spectrum_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A copy of ``run_dir`` whose sampler reshapes every sample's spectrum (``init_spectrum`` in ``dit/config.json``);
    the run is left as it is and an existing ``out_dir`` is refused (``generate.copy_run_with_sampler``)."""
    from weightgen.generate import copy_run_with_sampler

    return copy_run_with_sampler(run_dir, out_dir, {"init_spectrum": True})


__all__ = ["init_singular_values", "init_spectrum_run", "reshaped", "singular_values", "svd_flops", "with_init_spectrum"]
