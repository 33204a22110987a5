"""Filter, funnel and seeded subsets over a table in the out-of-core engine (svd_core.curation.table).

The same rules as the pandas path (`filters.py`, `funnel.py`, `subsets.py`), written as SQL over a DuckDB
view so no step holds the table in memory:

- thresholds: exact percentiles (`quantile_cont`, numpy's linear interpolation; the value may differ from
  numpy's in the last bit, which never changes a kept row since no score lies strictly between the two
  order statistics it interpolates) or approximate ones (`approx_quantile`, a t-digest) by
  `FilterConfig.percentile_method`; one column at a time, so exact mode holds 8 bytes per row of one column;
- keep-masks: one boolean SQL expression per filter (null and NaN scores handled as in pandas);
- funnel: one scan aggregates every filter's alone / in-order counts and hours;
- subsets: the clip ids stream out in batches, get the same keyed BLAKE2b rank as `subset_rank` and go
  to a local (clip_id, rank) Parquet file; DuckDB's spilling sort picks the k lowest and joins them back,
  so the subset holds the same rows, in the same order, as `random_subset` for the same seed.

`TableEngineConfig.engine: dask` runs the same steps on a Dask cluster instead (table_dask, same results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from svd_core.curation.config import FilterConfig, SubsetConfig, ThresholdConfig
from svd_core.curation.filters import (
    ResolvedThreshold,
    nothing_kept,
    require_resolved,
    require_rows,
)
from svd_core.curation.funnel import QUANTILE_COLUMNS, Funnel, _number, assemble_funnel, percentile_key
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.curation.subsets import check_subset_input, duplicate_ids_error, subset_rank, subset_size
from svd_core.curation.table import TableSession, TableView, quote_ident, quote_str, sql_float
from svd_core.errors import ConfigError, InputError

RANK_BATCH_ROWS = 1 << 20
"""Clip ids hashed per batch while ranking a subset (bounds that step's memory to ~100 MB)."""


def _require_columns(view: TableView, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in view.columns]
    if missing:
        raise InputError(
            f"{source} lacks column(s) {missing} needed by the filters; it must follow the LVD schema "
            "(svd_core.curation.schema.LVD_SCHEMA); re-run the LVD build or disable those filters"
        )


def _present(column: str, numeric: bool = True) -> str:
    c = quote_ident(column)
    return f"({c} IS NOT NULL AND NOT isnan({c}))" if numeric else f"({c} IS NOT NULL)"


def _require_values(
    session: TableSession, view: TableView, column: str, config_key: str, source: str, numeric: bool = True
) -> None:
    """A filter on a column its producer never filled would silently drop (or keep) everything."""
    if not session.scalar(f"SELECT count(*) FILTER (WHERE {_present(column, numeric)}) FROM {view.ident}"):
        raise ConfigError(
            f"filter on {column!r}: the column is null in every row of {source} (its scorer was not "
            f"configured in the LVD build); set {config_key}=false to skip this filter"
        )


def _percentiles(
    session: TableSession,
    view: TableView,
    column: str,
    percents: list[float],
    method: str,
    where: str = "TRUE",
) -> list[float | None]:
    if not percents:
        return []
    fn = "quantile_cont" if method == "exact" else "approx_quantile"
    fractions = "[" + ", ".join(sql_float(p / 100.0) for p in percents) + "]"
    if method != "exact":
        fractions = f"CAST({fractions} AS FLOAT[])"  # approx_quantile takes FLOAT positions
    c = quote_ident(column)
    values = session.scalar(
        f"SELECT {fn}({c}, {fractions}) FROM {view.ident} WHERE {_present(column)} AND ({where})"
    )
    return [None if v is None else float(v) for v in (values or [None] * len(percents))]


def resolve_thresholds(
    session: TableSession, view: TableView, cfg: FilterConfig, source: str | None = None
) -> dict[str, ResolvedThreshold]:
    """Absolute bounds for every enabled score filter, resolved on `view` (one column per query)."""
    source = source or view.uri
    enabled = [(name, rule) for name, rule in cfg.scores.items() if rule.enabled]
    _require_columns(view, [name for name, _ in enabled], source)
    out: dict[str, ResolvedThreshold] = {}
    for name, rule in enabled:
        _require_values(session, view, name, f"scores.{name}.enabled", source)
        bounds: list[ThresholdConfig | None] = [rule.min, rule.max]
        percents = [b.pct for b in bounds if b is not None and b.abs is None and b.pct is not None]
        resolved = iter(_percentiles(session, view, name, percents, cfg.percentile_method))
        lo, hi = (
            None if b is None else float(b.abs) if b.abs is not None else next(resolved) for b in bounds
        )
        min_spec = rule.min.describe() if rule.min else None
        max_spec = rule.max.describe() if rule.max else None
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(
                f"scores.{name}: min ({min_spec} -> {lo:g}) is above max ({max_spec} -> {hi:g}) on "
                f"{source}; lower min or raise max"
            )
        out[name] = ResolvedThreshold(column=name, min=lo, max=hi, min_spec=min_spec, max_spec=max_spec)
    return out


def _score_predicate(threshold: ResolvedThreshold, drop_missing: bool) -> str:
    c = quote_ident(threshold.column)
    checks = []
    if threshold.min is not None:
        checks.append(f"{c} >= {sql_float(threshold.min)}")
    if threshold.max is not None:
        checks.append(f"{c} <= {sql_float(threshold.max)}")
    inside = " AND ".join(checks) or "TRUE"
    missing = "FALSE" if drop_missing else "TRUE"
    return f"(CASE WHEN {c} IS NULL OR isnan({c}) THEN {missing} ELSE ({inside}) END)"


def _caption_predicate(session: TableSession, view: TableView, cfg: FilterConfig, source: str) -> str:
    rules = cfg.caption
    checks = []
    if rules.non_empty or rules.min_words > 0:
        _require_columns(view, ["caption"], source)
        _require_values(session, view, "caption", "caption.enabled", source, numeric=False)
        text = "coalesce(caption, '')"
        if rules.non_empty:
            checks.append(f"regexp_matches({text}, '\\S')")
        if rules.min_words > 0:
            checks.append(f"len(regexp_extract_all({text}, '\\S+')) >= {int(rules.min_words)}")
    if rules.allowed_sources is not None:
        _require_columns(view, ["caption_source"], source)
        _require_values(session, view, "caption_source", "caption.enabled", source, numeric=False)
        allowed = ", ".join(quote_str(s) for s in rules.allowed_sources) or "NULL"
        checks.append(f"coalesce(caption_source IN ({allowed}), FALSE)")  # null is never allowed
    return "(" + (" AND ".join(checks) or "TRUE") + ")"


def filter_predicates(
    session: TableSession,
    view: TableView,
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold],
    source: str | None = None,
) -> dict[str, str]:
    """Active filter name -> boolean SQL keep-expression (never null), in `cfg.order`."""
    source = source or view.uri
    out: dict[str, str] = {}
    for name in cfg.order:
        if not cfg.is_active(name):
            continue
        if name == "duration":
            _require_columns(view, ["duration_s"], source)
            checks = []
            if cfg.min_duration_s is not None:
                checks.append(f"duration_s >= {sql_float(cfg.min_duration_s)}")
            if cfg.max_duration_s is not None:
                checks.append(f"duration_s <= {sql_float(cfg.max_duration_s)}")
            out[name] = f"coalesce({' AND '.join(checks)}, FALSE)"
        elif name == "caption":
            out[name] = _caption_predicate(session, view, cfg, source)
        else:
            _require_columns(view, [name], source)
            _require_values(session, view, name, f"scores.{name}.enabled", source)
            out[name] = _score_predicate(thresholds[name], cfg.drop_missing_scores)
    return out


@dataclass(frozen=True)
class TableFilter:
    """What the filters keep, as SQL over `view` (nothing materialised yet)."""

    view: TableView
    predicates: dict[str, str]
    """Active filter name -> keep-expression, in funnel order."""
    thresholds: dict[str, ResolvedThreshold]
    kept_rows: int

    @property
    def keep(self) -> str:
        return " AND ".join(f"({p})" for p in self.predicates.values()) or "TRUE"


def apply_filters(
    session: TableSession,
    view: TableView,
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold] | None = None,
    source: str | None = None,
) -> TableFilter:
    """Filter `view` by `cfg`: the out-of-core twin of `filters.apply_filters` (same checks and errors)."""
    source = source or view.uri
    require_rows(view.rows, source)
    _require_columns(view, ["clip_id", "duration_s"], source)
    if thresholds is None:
        thresholds = resolve_thresholds(session, view, cfg, source)
    require_resolved(cfg, thresholds)
    predicates = filter_predicates(session, view, cfg, thresholds, source)
    used = {name: thresholds[name] for name in SCORE_COLUMNS if name in predicates}
    result = TableFilter(view, predicates, used, 0)
    kept = int(session.scalar(f"SELECT count(*) FROM {view.ident} WHERE {result.keep}"))
    if kept == 0:
        removed = ", ".join(
            f"{name} drops {session.scalar(f'SELECT count_if(NOT ({p})) FROM {view.ident}')}/{view.rows}"
            for name, p in predicates.items()
        )
        raise nothing_kept(view.rows, source, removed)
    return TableFilter(view, predicates, used, kept)


def write_kept(session: TableSession, result: TableFilter, path: Path) -> Path:
    """Stream the kept rows, in input order, into one local Parquet file."""
    return session.copy_to_parquet(f"SELECT * FROM {result.view.ident} WHERE {result.keep}", path)


def _step_rows(session: TableSession, result: TableFilter) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    names = list(result.predicates)
    flags = ", ".join(f"({p}) AS f{k}" for k, p in enumerate(result.predicates.values()))
    inner = f"SELECT duration_s{', ' + flags if flags else ''} FROM {result.view.ident}"
    hours = "coalesce(sum(duration_s) FILTER (WHERE {}), 0) / 3600.0"
    aggs = [
        "count(*)",
        "coalesce(sum(duration_s), 0) / 3600.0",
        "avg(duration_s)",
        f"avg(duration_s) FILTER (WHERE {' AND '.join(f'f{k}' for k in range(len(names))) or 'TRUE'})",
    ]
    for k in range(len(names)):
        before = " AND ".join(f"f{j}" for j in range(k)) or "TRUE"
        step = f"({before}) AND NOT f{k}"
        remaining = " AND ".join(f"f{j}" for j in range(k + 1))
        aggs += [
            f"count_if(NOT f{k})",
            hours.format(f"NOT f{k}"),
            f"count_if({step})",
            hours.format(step),
            f"count_if({remaining})",
            hours.format(remaining),
        ]
    values = session.row(f"SELECT {', '.join(aggs)} FROM ({inner})")
    total_rows, total_hours, mean_all, mean_kept = values[:4]
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        alone, alone_h, step_rows, step_h, remain, remain_h = values[4 + 6 * k : 10 + 6 * k]
        threshold = result.thresholds.get(name)
        rows.append(
            {
                "filter": name,
                "min": threshold.min if threshold else None,
                "max": threshold.max if threshold else None,
                "min_spec": threshold.min_spec if threshold else None,
                "max_spec": threshold.max_spec if threshold else None,
                "removed_alone_rows": int(alone),
                "removed_alone_hours": float(alone_h),
                "removed_alone_fraction": float(alone) / total_rows,
                "removed_in_order_rows": int(step_rows),
                "removed_in_order_hours": float(step_h),
                "remaining_rows": int(remain),
                "remaining_hours": float(remain_h),
                "remaining_fraction": float(remain) / total_rows,
                "remaining_hours_fraction": float(remain_h) / total_hours if total_hours else None,
            }
        )
    totals = {
        "input_rows": int(total_rows),
        "input_hours": float(total_hours),
        "input_mean_duration_s": mean_all,
        "kept_mean_duration_s": mean_kept,
    }
    return rows, totals


def _quantile_rows(
    session: TableSession, view: TableView, stage: str, where: str, cfg: FilterConfig
) -> list[dict[str, Any]]:
    fn = "quantile_cont" if cfg.percentile_method == "exact" else "approx_quantile"
    fractions = "[" + ", ".join(sql_float(q / 100.0) for q in cfg.quantiles) + "]"
    if cfg.percentile_method != "exact":
        fractions = f"CAST({fractions} AS FLOAT[])"
    rows = []
    for column in QUANTILE_COLUMNS:
        if column not in view.columns:
            continue
        c = quote_ident(column)
        quantile = f", {fn}({c}, {fractions})" if cfg.quantiles else ""
        values = session.row(  # one scan per column: count, mean and every percentile
            f"SELECT count(*), avg({c}){quantile} FROM {view.ident} WHERE {_present(column)} AND ({where})"
        )
        count, mean = values[0], values[1]
        quantiles = list(values[2] or [None] * len(cfg.quantiles)) if cfg.quantiles else []
        row: dict[str, Any] = {"stage": stage, "column": column, "count": int(count)}
        row.update({percentile_key(q): _number(v) for q, v in zip(cfg.quantiles, quantiles, strict=True)})
        row["mean"] = _number(mean) if count else None
        rows.append(row)
    return rows


def compute_funnel(
    session: TableSession, result: TableFilter, cfg: FilterConfig, name: str | None = None
) -> Funnel:
    """Funnel statistics of `result`: the out-of-core twin of `funnel.compute_funnel` (same metrics)."""
    steps, totals = _step_rows(session, result)
    kept_hours = float(
        session.scalar(
            f"SELECT coalesce(sum(duration_s), 0) / 3600.0 FROM {result.view.ident} WHERE {result.keep}"
        )
    )
    quantiles = _quantile_rows(session, result.view, "before", "TRUE", cfg) + _quantile_rows(
        session, result.view, "after", result.keep, cfg
    )
    return assemble_funnel(
        steps,
        quantiles,
        cfg,
        name,
        totals={**totals, "kept_rows": result.kept_rows, "kept_hours": kept_hours},
        thresholds={n: t.to_dict() for n, t in result.thresholds.items()},
    )


def write_subset(
    session: TableSession, view: TableView, cfg: SubsetConfig, path: Path, source: str | None = None
) -> int:
    """Write the seeded subset of `view` (the rows and order of `subsets.random_subset`); return its size."""
    source = source or view.uri
    check_subset_input(source, view.rows, view.columns)
    k = subset_size(view.rows, cfg)
    ranks_path = session.scratch("ranks.parquet")
    schema = pa.schema([("clip_id", pa.string()), ("rank", pa.uint64())])
    reader = session.con.sql(f"SELECT CAST(clip_id AS VARCHAR) FROM {view.ident}").to_arrow_reader(
        RANK_BATCH_ROWS
    )
    with pq.ParquetWriter(ranks_path, schema) as writer:
        for batch in reader:
            ids = batch.column(0).to_pylist()
            writer.write_batch(
                pa.record_batch(
                    [pa.array(ids, pa.string()), pa.array(subset_rank(ids, cfg.seed))], schema=schema
                )
            )
    ranks = f"read_parquet({quote_str(str(ranks_path))})"
    tied = session.scalar(
        f"SELECT count(*) FROM (SELECT rank FROM {ranks} GROUP BY rank HAVING count(*) > 1)"
    )
    if tied:  # equal ranks mean duplicate clip ids or (practically never) a 64-bit collision
        dup_count, examples = session.row(
            f"SELECT sum(n - 1), list(clip_id ORDER BY clip_id)[1:3] FROM "
            f"(SELECT clip_id, count(*) AS n FROM {ranks} GROUP BY clip_id HAVING count(*) > 1)"
        )
        if dup_count:
            raise duplicate_ids_error(source, dup_count, examples)
    chosen = f"(SELECT clip_id, rank FROM {ranks} ORDER BY rank, clip_id LIMIT {k})"
    session.copy_to_parquet(
        f"SELECT v.* FROM {view.ident} AS v JOIN {chosen} AS s ON CAST(v.clip_id AS VARCHAR) = s.clip_id "
        "ORDER BY s.rank, s.clip_id",
        path,
    )
    return k
