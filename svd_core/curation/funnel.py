"""Funnel statistics of a filter run: what each filter removed alone and in order, and how scores moved.

Rows and hours both matter: the paper reports LVD -> LVD-F as 577M -> 152M clips and 212 -> 51 years,
and a filter that prefers short clips removes more hours than rows. The metrics dict is JSON-ready with
shallow, dot-free keys so `dvc metrics show` prints it as `filters.clip_score.removed_alone_rows` etc.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from svd_core.curation.config import FilterConfig, ScoreFilterConfig
from svd_core.curation.filters import FilterResult
from svd_core.curation.schema import SCORE_COLUMNS

QUANTILE_COLUMNS: tuple[str, ...] = (*SCORE_COLUMNS, "duration_s")
"""Columns whose quantiles the funnel reports before and after filtering."""


@dataclass(frozen=True)
class Funnel:
    steps: pd.DataFrame
    """One row per active filter, in config order: removed alone / in order, remaining, thresholds."""
    quantiles: pd.DataFrame
    """One row per (stage, column): stage is "before" or "after"; one column per percentile (p5, p25...)."""
    metrics: dict[str, Any]
    """JSON-ready summary (totals, kept fraction, per-filter numbers, thresholds, quantiles)."""

    def metrics_json(self) -> bytes:
        return (json.dumps(self.metrics, indent=2, sort_keys=False, allow_nan=False) + "\n").encode()

    def steps_csv(self) -> bytes:
        return self.steps.to_csv(index=False).encode()

    def quantiles_csv(self) -> bytes:
        return self.quantiles.to_csv(index=False).encode()


def _number(value: Any) -> float | int | None:
    """Plain Python number for JSON (numpy scalars are not serialisable; NaN is not valid JSON)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _hours(table: pd.DataFrame, mask: pd.Series | None = None) -> float:
    durations = table["duration_s"] if mask is None else table.loc[mask, "duration_s"]
    return float(durations.sum()) / 3600.0


def percentile_key(q: float) -> str:
    """5 -> "p5", 12.5 -> "p12_5" (no dots: DVC and dashboards split keys on them)."""
    return "p" + f"{q:g}".replace(".", "_")


def _step_rows(table: pd.DataFrame, result: FilterResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    total_rows, total_hours = len(table), _hours(table)
    remaining = pd.Series(True, index=table.index)
    for name, mask in result.masks.items():
        before = remaining
        remaining = remaining & mask
        removed_step = before & ~mask
        threshold = result.thresholds.get(name)
        rows.append(
            {
                "filter": name,
                "min": threshold.min if threshold else None,
                "max": threshold.max if threshold else None,
                "min_spec": threshold.min_spec if threshold else None,
                "max_spec": threshold.max_spec if threshold else None,
                "removed_alone_rows": int((~mask).sum()),
                "removed_alone_hours": _hours(table, ~mask),
                "removed_alone_fraction": float((~mask).sum()) / total_rows,
                "removed_in_order_rows": int(removed_step.sum()),
                "removed_in_order_hours": _hours(table, removed_step),
                "remaining_rows": int(remaining.sum()),
                "remaining_hours": _hours(table, remaining),
                "remaining_fraction": float(remaining.sum()) / total_rows,
                "remaining_hours_fraction": _hours(table, remaining) / total_hours if total_hours else None,
            }
        )
    return rows


def _quantile_rows(table: pd.DataFrame, stage: str, percents: tuple[float, ...]) -> list[dict[str, Any]]:
    rows = []
    for column in QUANTILE_COLUMNS:
        if column not in table.columns:
            continue
        values = table[column].dropna().to_numpy(dtype=np.float64)
        row: dict[str, Any] = {"stage": stage, "column": column, "count": len(values)}
        quantiles = np.percentile(values, percents) if len(values) else [None] * len(percents)
        row.update({percentile_key(q): _number(v) for q, v in zip(percents, quantiles, strict=True)})
        row["mean"] = _number(values.mean()) if len(values) else None
        rows.append(row)
    return rows


def _quantile_metrics(quantiles: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for record in quantiles.to_dict(orient="records"):
        stage, column = record.pop("stage"), record.pop("column")
        out.setdefault(stage, {})[column] = {k: _number(v) for k, v in record.items()}
    return out


def compute_funnel(
    table: pd.DataFrame, result: FilterResult, cfg: FilterConfig, name: str | None = None
) -> Funnel:
    """Funnel statistics of `result` (from `apply_filters(table, cfg)`); `name` defaults to `cfg.name`."""
    kept = result.kept
    return assemble_funnel(
        _step_rows(table, result),
        _quantile_rows(table, "before", cfg.quantiles) + _quantile_rows(kept, "after", cfg.quantiles),
        cfg,
        name,
        totals={
            "input_rows": len(table),
            "input_hours": _hours(table),
            "input_mean_duration_s": table["duration_s"].mean(),
            "kept_rows": len(kept),
            "kept_hours": _hours(kept),
            "kept_mean_duration_s": kept["duration_s"].mean(),
        },
        thresholds={name: t.to_dict() for name, t in result.thresholds.items()},
    )


def requested_removed_fraction(rule: ScoreFilterConfig) -> float | None:
    """Share of the scored rows a percentile filter asks to remove (`min: {pct: 25}` -> 0.25,
    `max: {pct: 75}` -> 0.25, both -> 0.5); None when a bound is absolute (no share was asked for)."""
    bounds = [b for b in (rule.min, rule.max) if b is not None]
    if not bounds or any(b.pct is None for b in bounds):
        return None
    share = 0.0
    if rule.min is not None and rule.min.pct is not None:
        share += rule.min.pct / 100.0
    if rule.max is not None and rule.max.pct is not None:
        share += 1.0 - rule.max.pct / 100.0
    return share


def _share_columns(
    row: dict[str, Any], cfg: FilterConfig, scored: dict[str, int], input_rows: int
) -> dict[str, Any]:
    """For a score filter: the share of scored rows (non-null) it removed by its bounds alone, beside the
    share its percentiles asked for. They differ when the scores tie (a constant scorer: p25 == every
    value, nothing is removed) and, a little, when thresholds came from another table (LVD-10M-F)."""
    name = row["filter"]
    if name not in SCORE_COLUMNS or name not in scored:
        return {}
    count = scored[name]
    nulls = input_rows - count  # null and NaN scores: removed too when drop_missing_scores
    outside = int(row["removed_alone_rows"]) - (nulls if cfg.drop_missing_scores else 0)
    return {
        "scored_rows": count,
        "requested_removed_fraction": requested_removed_fraction(getattr(cfg.scores, name)),
        "removed_scored_fraction": outside / count if count else None,
    }


def assemble_funnel(
    step_rows: list[dict[str, Any]],
    quantile_rows: list[dict[str, Any]],
    cfg: FilterConfig,
    name: str | None,
    totals: dict[str, Any],
    thresholds: dict[str, dict[str, Any]],
) -> Funnel:
    """The Funnel from per-filter rows, quantile rows and totals (shared by the pandas and the
    out-of-core engine, svd_core.curation.table_steps, so both report the same keys)."""
    input_rows, input_hours = int(totals["input_rows"]), float(totals["input_hours"])
    scored = {r["column"]: int(r["count"]) for r in quantile_rows if r["stage"] == "before"}
    step_rows = [{**row, **_share_columns(row, cfg, scored, input_rows)} for row in step_rows]
    steps = pd.DataFrame(step_rows)
    quantiles = pd.DataFrame(quantile_rows)
    kept_rows, kept_hours = int(totals["kept_rows"]), float(totals["kept_hours"])
    filters = {
        record["filter"]: {
            k: (v if isinstance(v, str) or v is None else _number(v))
            for k, v in record.items()
            if k not in {"filter", "min", "max", "min_spec", "max_spec"}  # thresholds have their own key
        }
        for record in step_rows  # not the frame: its missing cells (non-score filters) would be NaN
    }
    metrics: dict[str, Any] = {
        "name": name or cfg.name,
        "config_hash": cfg.config_hash(),
        "input_rows": input_rows,
        "input_hours": input_hours,
        "input_mean_duration_s": _number(totals["input_mean_duration_s"]),
        "kept_rows": kept_rows,
        "kept_hours": kept_hours,
        "kept_mean_duration_s": _number(totals["kept_mean_duration_s"]),
        "kept_fraction": kept_rows / input_rows,
        "kept_hours_fraction": kept_hours / input_hours if input_hours else None,
        "filters": filters,
        "thresholds": thresholds,
        "quantiles": _quantile_metrics(quantiles),
    }
    return Funnel(steps=steps, quantiles=quantiles, metrics=metrics)
