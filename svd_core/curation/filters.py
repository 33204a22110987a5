"""LVD -> LVD-F: resolve thresholds, compute one keep-mask per filter, keep the rows that pass all of them.

Each filter is evaluated independently on the whole input (the paper thresholds each score on the LVD
distribution, not on what earlier filters left), so a row's fate does not depend on filter order; the
order only matters for the cumulative funnel report. Bounds are inclusive: min <= score <= max.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from svd_core.curation.config import FilterConfig, ScoreFilterConfig, ThresholdConfig
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.errors import ConfigError, InputError


class EmptyResultError(InputError):
    """The filters removed every row; nothing is published."""


@dataclass(frozen=True)
class ResolvedThreshold:
    """The absolute bounds a score filter used, and where they came from (for reproducibility)."""

    column: str
    min: float | None
    max: float | None
    min_spec: str | None = None
    """How `min` was configured, e.g. "pct 25" or "abs 0.07"."""
    max_spec: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "min_spec": self.min_spec, "max_spec": self.max_spec}


@dataclass(frozen=True)
class FilterResult:
    """What `apply_filters` kept, and why each row was dropped."""

    kept: pd.DataFrame
    """Rows that passed every active filter, in input order (a copy; the input is not modified)."""
    keep_mask: pd.Series
    """Boolean per input row: True where the row was kept."""
    masks: dict[str, pd.Series]
    """Active filter name -> boolean per input row (True = passes), in the config's funnel order."""
    thresholds: dict[str, ResolvedThreshold]
    """Score column -> the absolute bounds used, for every enabled score filter."""
    input_rows: int


def _require_columns(table: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"{source} lacks column(s) {missing} needed by the filters; it must follow the LVD schema "
            "(svd_core.curation.schema.LVD_SCHEMA); re-run the LVD build or disable those filters"
        )


def _require_values(table: pd.DataFrame, column: str, config_key: str, source: str) -> None:
    """A filter on a column its producer never filled would silently drop (or keep) everything."""
    if table[column].isna().all():
        raise ConfigError(
            f"filter on {column!r}: the column is null in every row of {source} (its scorer was not "
            f"configured in the LVD build); set {config_key}=false to skip this filter"
        )


def _resolve_bound(values: np.ndarray, bound: ThresholdConfig | None) -> float | None:
    if bound is None:
        return None
    if bound.abs is not None:
        return float(bound.abs)
    assert bound.pct is not None  # ThresholdConfig holds exactly one of abs / pct
    return float(np.percentile(values, bound.pct))


def resolve_score_threshold(
    table: pd.DataFrame, column: str, rule: ScoreFilterConfig, source: str
) -> ResolvedThreshold:
    """Turn one score filter's bounds into absolute numbers (percentiles over the non-null scores)."""
    _require_values(table, column, f"scores.{column}.enabled", source)
    values = table[column].dropna().to_numpy(dtype=np.float64)
    lo, hi = _resolve_bound(values, rule.min), _resolve_bound(values, rule.max)
    min_spec = rule.min.describe() if rule.min else None
    max_spec = rule.max.describe() if rule.max else None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(
            f"scores.{column}: min ({min_spec} -> {lo:g}) is above max ({max_spec} -> {hi:g}) on {source}; "
            "lower min or raise max"
        )
    return ResolvedThreshold(column=column, min=lo, max=hi, min_spec=min_spec, max_spec=max_spec)


def resolve_thresholds(
    table: pd.DataFrame, cfg: FilterConfig, source: str = "the table"
) -> dict[str, ResolvedThreshold]:
    """Absolute bounds for every enabled score filter, resolved on `table`."""
    enabled = [(name, rule) for name, rule in cfg.scores.items() if rule.enabled]
    _require_columns(table, [name for name, _ in enabled], source)
    return {name: resolve_score_threshold(table, name, rule, source) for name, rule in enabled}


def _score_mask(table: pd.DataFrame, threshold: ResolvedThreshold, drop_missing: bool) -> pd.Series:
    # float64 turns any null (None, pd.NA, Arrow null) into NaN, whose comparisons are plain False.
    values = table[threshold.column].astype("float64")
    mask = pd.Series(True, index=table.index)
    if threshold.min is not None:
        mask &= values >= threshold.min
    if threshold.max is not None:
        mask &= values <= threshold.max
    # Comparisons with null are False, which drops the row; keep it instead when asked to.
    return mask if drop_missing else mask | values.isna()


def _duration_mask(table: pd.DataFrame, cfg: FilterConfig) -> pd.Series:
    duration = table["duration_s"]
    mask = pd.Series(True, index=table.index)
    if cfg.min_duration_s is not None:
        mask &= duration >= cfg.min_duration_s
    if cfg.max_duration_s is not None:
        mask &= duration <= cfg.max_duration_s
    return mask


def _caption_mask(table: pd.DataFrame, cfg: FilterConfig, source: str) -> pd.Series:
    rules = cfg.caption
    if rules.non_empty or rules.min_words > 0:
        _require_columns(table, ["caption"], source)
        _require_values(table, "caption", "caption.enabled", source)
    if rules.allowed_sources is not None:
        _require_columns(table, ["caption_source"], source)
        _require_values(table, "caption_source", "caption.enabled", source)
    return caption_rules_mask(table, cfg)


def caption_rules_mask(table: pd.DataFrame, cfg: FilterConfig) -> pd.Series:
    """Rows the caption rules keep, on a table (or partition) whose caption columns were checked."""
    rules = cfg.caption
    mask = pd.Series(True, index=table.index)
    if rules.non_empty or rules.min_words > 0:
        text = table["caption"].fillna("").astype(str)
        if rules.non_empty:
            mask &= text.str.strip() != ""
        if rules.min_words > 0:
            mask &= text.str.count(r"\S+") >= rules.min_words
    if rules.allowed_sources is not None:
        mask &= table["caption_source"].isin(list(rules.allowed_sources))  # null is never allowed
    return mask


def filter_masks(
    table: pd.DataFrame,
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold],
    source: str = "the table",
) -> dict[str, pd.Series]:
    """Active filter name -> boolean keep-mask over `table`, in `cfg.order`."""
    masks: dict[str, pd.Series] = {}
    for name in cfg.order:
        if not cfg.is_active(name):
            continue
        if name == "duration":
            _require_columns(table, ["duration_s"], source)
            masks[name] = _duration_mask(table, cfg)
        elif name == "caption":
            masks[name] = _caption_mask(table, cfg, source)
        else:
            _require_columns(table, [name], source)
            _require_values(table, name, f"scores.{name}.enabled", source)
            masks[name] = _score_mask(table, thresholds[name], cfg.drop_missing_scores)
    return masks


def _removal_summary(masks: dict[str, pd.Series], rows: int) -> str:
    return ", ".join(f"{name} drops {int((~mask).sum())}/{rows}" for name, mask in masks.items())


def require_rows(rows: int, source: str) -> None:
    """The input check every filter engine (pandas, DuckDB, Dask) makes first."""
    if rows == 0:
        raise InputError(
            f"{source} has no rows; build LVD first (svd data build-lvd) or check the input path"
        )


def require_resolved(cfg: FilterConfig, thresholds: dict[str, ResolvedThreshold]) -> None:
    """Every enabled score filter has a resolved threshold (all engines)."""
    missing = [name for name, rule in cfg.scores.items() if rule.enabled and name not in thresholds]
    if missing:
        raise ConfigError(f"no resolved thresholds for enabled score filter(s) {missing}; resolve them first")


def nothing_kept(rows: int, source: str, removed: str) -> EmptyResultError:
    """The error of every engine when the filters keep no row; `removed` says what each filter dropped."""
    return EmptyResultError(
        f"the filters removed all {rows} rows of {source} ({removed}); nothing was published; "
        "loosen the thresholds in the filter config or disable a filter"
    )


def apply_filters(
    table: pd.DataFrame,
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold] | None = None,
    source: str = "the LVD table",
) -> FilterResult:
    """Filter `table` by `cfg`. Percentile thresholds resolve on `table` unless `thresholds` (absolute
    bounds resolved elsewhere, e.g. on full LVD for the LVD-10M-F subset) are given."""
    require_rows(len(table), source)
    _require_columns(table, ["clip_id", "duration_s"], source)
    if thresholds is None:
        thresholds = resolve_thresholds(table, cfg, source)
    require_resolved(cfg, thresholds)
    masks = filter_masks(table, cfg, thresholds, source)
    keep = pd.Series(True, index=table.index)
    for mask in masks.values():
        keep &= mask
    if not keep.any():
        raise nothing_kept(len(table), source, _removal_summary(masks, len(table)))
    used = {name: thresholds[name] for name in SCORE_COLUMNS if name in masks}
    return FilterResult(
        kept=table.loc[keep].copy(), keep_mask=keep, masks=masks, thresholds=used, input_rows=len(table)
    )
