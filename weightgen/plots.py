"""Plots people would rather look at than read; each writes a PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def corpus_accuracy_plot(manifest, path: str | Path) -> Path:
    """Test accuracy of every checkpoint against its step, one panel per dataset, one colour per family."""
    path = Path(path)
    datasets = sorted(manifest["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = manifest[manifest["dataset"] == dataset]
        for family, group in rows.groupby("family"):
            ax.scatter(group["step"], group["test_acc"], s=10, alpha=0.6, label=family)
        ax.set_xscale("log")
        ax.set_title(dataset or "external")
        ax.set_xlabel("training step")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
