"""Nightly regression check: measured metrics against a committed baseline with per-metric thresholds.

Pure logic (no Prefect, no MLflow): :func:`load_baseline` reads ``configs/nightly-baseline.yaml``,
:func:`compare` returns a :class:`Comparison` — a pandas table with one row per baseline metric and
the names of the metrics that fell past their limit. A metric is judged in its own direction:

* ``higher_is_better: true``  → limit = baseline − abs_tol − rel_tol·|baseline|; regressed if value < limit
* ``higher_is_better: false`` → limit = baseline + abs_tol + rel_tol·|baseline|; regressed if value > limit

A metric the run did not produce, or produced as NaN/inf, counts as regressed ("missing"): a check
that silently passes when its input vanished would hide exactly the failures it exists for.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

COLUMNS = ["metric", "baseline", "value", "limit", "change", "direction", "status"]


class Threshold(BaseModel):
    """One metric's baseline value and how far it may move the wrong way."""

    model_config = ConfigDict(extra="forbid")

    baseline: float
    higher_is_better: bool = True
    abs_tol: float = Field(0.0, ge=0)
    rel_tol: float = Field(0.0, ge=0)
    note: str = ""

    @model_validator(mode="after")
    def _finite(self) -> "Threshold":
        if not math.isfinite(self.baseline):
            raise ValueError("baseline must be a finite number")
        return self

    @property
    def limit(self) -> float:
        slack = self.abs_tol + self.rel_tol * abs(self.baseline)
        return self.baseline - slack if self.higher_is_better else self.baseline + slack

    def regressed(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return True
        return value < self.limit if self.higher_is_better else value > self.limit


class Baseline(BaseModel):
    """A committed baseline: where its numbers came from, the run settings they hold for, and thresholds."""

    model_config = ConfigDict(extra="forbid")

    measured: dict[str, Any] = Field(default_factory=dict, description="date, command, machine, flow run: provenance")
    settings: dict[str, Any] = Field(default_factory=dict, description="nightly parameters the numbers were measured with")
    metrics: dict[str, Threshold] = Field(min_length=1)


def load_baseline(source: str | os.PathLike | Mapping) -> Baseline:
    """A baseline from a YAML file or a mapping (tests build failing baselines in memory)."""
    if isinstance(source, Mapping):
        return Baseline.model_validate(dict(source))
    import yaml

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"baseline {path} not found")
    return Baseline.model_validate(yaml.safe_load(path.read_text()) or {})


@dataclass
class Comparison:
    table: pd.DataFrame
    regressed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressed

    def message(self) -> str:
        """One line naming every metric that fell, its value, its limit and its baseline."""
        if self.ok:
            return f"no regression: {len(self.table)} metrics within their limits"
        rows = self.table.set_index("metric").loc[self.regressed]
        parts = []
        for metric, row in rows.iterrows():
            if row["status"] == "missing":
                parts.append(f"{metric} missing (baseline {_fmt(row['baseline'])})")
            else:
                sign = "<" if row["direction"] == "higher" else ">"
                parts.append(f"{metric} {_fmt(row['value'])} {sign} limit {_fmt(row['limit'])} (baseline {_fmt(row['baseline'])})")
        return f"regression in {len(parts)} metric{'s' if len(parts) > 1 else ''}: " + "; ".join(parts)

    def markdown(self) -> str:
        return markdown_table(self.table)


def compare(metrics: Mapping[str, float], baseline: Baseline) -> Comparison:
    """Judge each baseline metric; metrics without a threshold are ignored."""
    rows, regressed = [], []
    for name, threshold in baseline.metrics.items():
        value = metrics.get(name)
        value = None if value is None else float(value)
        missing = value is None or not math.isfinite(value)
        bad = threshold.regressed(value)
        rows.append({"metric": name, "baseline": threshold.baseline, "value": math.nan if value is None else value,
                     "limit": threshold.limit, "change": math.nan if missing else value - threshold.baseline,
                     "direction": "higher" if threshold.higher_is_better else "lower",
                     "status": "missing" if missing else ("regressed" if bad else "ok")})
        if bad:
            regressed.append(name)
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), regressed)


def _fmt(value: float) -> str:
    return "nan" if value != value else f"{value:.4g}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-style markdown table (pandas' own needs ``tabulate``, which is not installed); floats to 4 digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if value != value else _fmt(value)  # an empty cell for a run without that metric
        return str(value).replace("|", "\\|")

    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
