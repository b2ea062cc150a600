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


def method_styles(methods) -> dict[str, dict]:
    """One colour per init method, its ``+head`` variant in the same colour, dashed (curves) or hatched (bars)."""
    from weightgen.head_fit import HEAD_FIT_SUFFIX

    bases = list(dict.fromkeys(m.removesuffix(HEAD_FIT_SUFFIX) for m in methods))
    return {m: {"color": f"C{bases.index(m.removesuffix(HEAD_FIT_SUFFIX)) % 10}", "head": m.endswith(HEAD_FIT_SUFFIX)}
            for m in methods}


def learning_curves_plot(suite, table, curves, path: str | Path) -> Path:
    """One panel per suite case: each method's validation accuracy (mean over seeds) against fine-tune step,
    with the target as a dashed line."""
    import math

    path = Path(path)
    n = len(suite.cases)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    styles = method_styles(suite.methods)
    for i, case in enumerate(suite.cases):
        ax = axes[i // cols][i % cols]
        mine = curves[curves["case_index"] == i]
        for method, group in mine.groupby("method", sort=False):
            mean = group.groupby("step")["val_acc"].mean()
            style = styles.get(method, {"color": None, "head": False})
            ax.plot(mean.index, mean.values, label=method, color=style["color"], ls="--" if style["head"] else "-",
                    lw=1.4 if method != "random" else 2.2)
        target = table[table["case_index"] == i]["target"]
        if len(target) and target.notna().any():
            ax.axhline(float(target.iloc[0]), ls="--", color="grey", lw=1)
        ax.set_title(f"{case.arch}\n{case.task} ({case.split})", fontsize=8)
        ax.set_xlabel("fine-tune step", fontsize=8)
        ax.set_ylabel("val accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def compute_saved_plot(summary, path: str | Path, goal: float = 0.9) -> Path:
    """Median compute saved per split (groups) and init method (bars), with the 90% goal as a line."""
    path = Path(path)
    from weightgen.bench_score import method_order

    frame = summary["compute_saved_median"].unstack("method")
    methods = sorted(frame.columns, key=method_order)  # the summary's order, so colours match the curves plot
    width = 0.8 / max(len(methods), 1)
    styles = method_styles(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(frame)) + 2.2, 3.8))
    for k, method in enumerate(methods):
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(frame))]
        ax.bar(xs, frame[method].fillna(0.0).values, width, label=method, color=styles[method]["color"],
               hatch="//" if styles[method]["head"] else None, edgecolor="white" if styles[method]["head"] else None)
    ax.axhline(goal, ls="--", color="grey", lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(frame)))
    ax.set_xticklabels(frame.index)
    ax.set_ylabel("median compute saved")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
