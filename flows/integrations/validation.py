"""Great Expectations gate for curated tables: a table suite and a filter-statistics suite, Data Docs.

The library (svd_core.curation.publish) only consumes the plain `ValidationReport` built here, so
svd_core never imports great_expectations. Each call runs in an ephemeral GX context (nothing to set up,
nothing left behind) whose only persistent output is the Data Docs site written to `docs_dir`. GX prunes
pages whose results are not in the context's (in-memory) stores when it rebuilds a site index, so each
`docs_dir` shows one run: `make_validation_fn` gives every dataset its own folder.

Two datasources, one gate. A frame in memory is validated row by row by GX's pandas datasource. A table
given by path or URI (a Parquet file or a folder of parts, what the out-of-core build stages) is never
loaded: DuckDB (svd_core.curation.table) reduces it, within the engine's memory limit, to one row of
aggregates (row count, per-column null / duplicate / out-of-range counts, means, quantiles), and GX
validates that row with the same thresholds; a failure is reported under the row-level expectation it
stands for, with its unexpected count and up to five example values fetched by a bounded query. (GX has
no DuckDB datasource, and its generic SQL datasource fails on DuckDB's SQLAlchemy dialect.)

Broken scorers. `svd_core.curation.publish.build_filtered` gates the LVD table itself before any filter
runs, with the same suite. Beside schema and ranges it holds expectations a broken scorer fails: a score
column must not be constant (`expect_column_stdev_to_be_between`, min > 0), a scored column must not be
mostly null (`expect_column_values_to_not_be_null`, mostly = `score_min_non_null`), and, on a filter run's
statistics, each percentile filter must remove about the share it asked for (a constant scorer ties every
clip at its percentile, so `min: {pct: 25}` removes nothing). Each failure names the column and the fix.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from svd_core import storage as svd_io
from svd_core.curation.config import TableEngineConfig, ValidationConfig
from svd_core.curation.publish import FailedExpectation, ValidationFn, ValidationReport
from svd_core.curation.schema import SCORE_COLUMNS, SCORE_RANGES, SCORE_SCORERS
from svd_core.curation.table import (
    TableSession,
    TableView,
    quote_ident,
    quote_str,
    sql_float,
    table_session,
)
from svd_core.errors import InputError

DOCS_SITE = "svd_data_docs"


class ExpectColumnQuantilesInRanges(gxe.ExpectColumnQuantileValuesToBeBetween):
    """GX's quantile expectation, returning plain Python values.

    Under numpy 2, GX 1.24's version returns numpy bools in its result, which its own result store then
    fails to serialise ("Object of type bool is not JSON serializable"), aborting the whole run.
    """

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ):
        out = super()._validate(metrics, runtime_configuration, execution_engine)
        observed = out["result"]["observed_value"]
        observed["values"] = [None if v is None else float(v) for v in observed["values"]]
        details = out["result"]["details"]
        details["success_details"] = [bool(ok) for ok in details["success_details"]]
        out["success"] = bool(out["success"])
        return out


def _bound(value: float | None) -> float | None:
    return None if value is None else float(value)


def _constant_fix(column: str) -> str:
    return (
        f"every clip has the same {column}: its scorer ({SCORE_SCORERS[column]!r} in scorer_versions) is "
        "broken (weights, inputs) and a percentile filter on it removes nothing; fix the scorer and rebuild "
        f"LVD (svd data build-lvd) or rescore the stored clips (svd data score), or, when a constant is "
        f"expected, remove {column} from validation.varying_scores"
    )


def _null_fix(column: str) -> str:
    return (
        f"{column} is null in most rows although its scorer ({SCORE_SCORERS[column]!r}) ran: it failed or "
        "had no input on most clips; fix it and rescore (svd data score), or lower "
        "validation.score_min_non_null"
    )


def _share_fix(column: str) -> str:
    return (
        f"the {column} percentile filter removed far from the share it asked for: its scores tie at the "
        "threshold (a constant scorer, or most clips sharing one value); fix the scorer, or give the filter "
        f"an absolute bound (filter scores.{column}.min.abs / max.abs), or widen "
        "validation.percentile_share_tolerance"
    )


def scorers_named(versions: Sequence[Any]) -> set[str]:
    """Scorer keys named in any of the `scorer_versions` JSON values (unreadable values name none)."""
    named: set[str] = set()
    for text in versions:
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            continue
        if isinstance(data, dict):
            named.update(str(k) for k in data)
    return named


def score_health_plan(
    cfg: ValidationConfig, counts: Mapping[str, int], named: set[str], thresholded: set[str]
) -> tuple[list[str], list[str]]:
    """(columns that must vary, columns that must be mostly non-null) from each present score column's
    non-null count, the scorers `scorer_versions` names, and the columns a filter thresholded."""
    scored = [c for c in SCORE_COLUMNS if c in counts and (counts[c] > 0 or SCORE_SCORERS[c] in named)]
    varying = [
        c
        for c in scored
        if c in cfg.varying_scores and c not in thresholded and counts[c] >= cfg.min_scored_rows
    ]
    return varying, scored if cfg.score_min_non_null > 0 else []


def _thresholded(funnel: Mapping[str, Any] | None) -> set[str]:
    """Score columns a filter run thresholded (the table is its output: the filter may squeeze them)."""
    return set((funnel or {}).get("thresholds") or {})


def table_expectations(
    cfg: ValidationConfig, table: pd.DataFrame, funnel: Mapping[str, Any] | None = None
) -> list[gxe.Expectation]:
    """Expectations on a gated table (LVD-shaped): LVD itself, or a table about to be published."""
    columns = list(table.columns)
    exps: list[gxe.Expectation] = [gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows)]
    for column in cfg.required_columns:
        exps.append(gxe.ExpectColumnToExist(column=column))
        if column in columns:  # a missing column is reported once, by the expectation above
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    exps += [gxe.ExpectColumnValuesToBeUnique(column=c) for c in cfg.unique_columns if c in columns]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
        for c in cfg.positive_columns
        if c in columns
    ]
    if cfg.check_score_ranges:
        for column in SCORE_COLUMNS:
            exps.append(gxe.ExpectColumnToExist(column=column))
            if column in columns:
                low, high = SCORE_RANGES[column]
                exps.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high))
    for column, bounds in cfg.score_bounds.items():
        if bounds.mean is not None:
            mean_low, mean_high = bounds.mean
            exps.append(
                gxe.ExpectColumnMeanToBeBetween(
                    column=column, min_value=_bound(mean_low), max_value=_bound(mean_high)
                )
            )
        if bounds.quantiles:
            percents = sorted(bounds.quantiles)
            ranges = [[_bound(v) for v in bounds.quantiles[p]] for p in percents]
            quantile_ranges = {"quantiles": [p / 100 for p in percents], "value_ranges": ranges}
            exps.append(ExpectColumnQuantilesInRanges(column=column, quantile_ranges=quantile_ranges))
    counts = {c: int(table[c].notna().sum()) for c in SCORE_COLUMNS if c in columns}
    versions = table["scorer_versions"].dropna().unique() if "scorer_versions" in columns else []
    varying, non_null = score_health_plan(cfg, counts, scorers_named(list(versions)), _thresholded(funnel))
    exps += [
        gxe.ExpectColumnStdevToBeBetween(
            column=c, min_value=cfg.min_score_stdev, strict_min=True, meta={"fix": _constant_fix(c)}
        )
        for c in varying
    ]
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=cfg.score_min_non_null, meta={"fix": _null_fix(c)})
        for c in non_null
    ]
    return exps


SHARE_SUFFIX = "__removed_share"
"""Funnel-frame column of a percentile filter: the share of scored rows it removed."""


def percentile_shares(cfg: ValidationConfig, funnel: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Score filter -> (share of scored rows it removed, share it asked for), for each percentile filter
    with at least `min_scored_rows` scored rows (statistics written before these shares were recorded
    have none: nothing to check)."""
    if cfg.percentile_share_tolerance is None:
        return {}
    shares = {}
    for name, stats in (funnel.get("filters") or {}).items():
        requested = stats.get("requested_removed_fraction")
        removed = stats.get("removed_scored_fraction")
        if requested is None or removed is None or (stats.get("scored_rows") or 0) < cfg.min_scored_rows:
            continue
        shares[name] = (float(removed), float(requested))
    return shares


def funnel_expectations(cfg: ValidationConfig, funnel: Mapping[str, Any]) -> list[gxe.Expectation]:
    """Expectations on a filter run's statistics (one row: kept_fraction, kept_rows, input_rows, and each
    percentile filter's removed share)."""
    low, high = cfg.kept_fraction
    exps: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToBeBetween(column="kept_fraction", min_value=low, max_value=high),
        gxe.ExpectColumnValuesToBeBetween(column="kept_rows", min_value=cfg.min_rows),
    ]
    tolerance = cfg.percentile_share_tolerance or 0.0
    for name, (_, requested) in percentile_shares(cfg, funnel).items():
        meta = {"expectation": "expect_percentile_filter_to_remove_its_share", "column": name}
        exps.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=f"{name}{SHARE_SUFFIX}",
                min_value=max(0.0, requested - tolerance),
                max_value=min(1.0, requested + tolerance),
                meta={**meta, "fix": _share_fix(name)},
            )
        )
    return exps


def _funnel_frame(cfg: ValidationConfig, funnel: Mapping[str, Any]) -> pd.DataFrame:
    missing = [k for k in ("kept_fraction", "kept_rows", "input_rows") if k not in funnel]
    if missing:
        raise InputError(
            f"filter statistics lack {missing}; pass the <name>_funnel.json written by `svd data filter`"
        )
    row = {k: funnel[k] for k in ("kept_fraction", "kept_rows", "input_rows")}
    row.update({f"{n}{SHARE_SUFFIX}": removed for n, (removed, _) in percentile_shares(cfg, funnel).items()})
    return pd.DataFrame([row])


def _details(kwargs: Mapping[str, Any], meta: Mapping[str, Any], metric: str | None = None) -> str:
    what = (
        f"expected {metric} within {dict(kwargs)}" if metric else f"expected {dict(kwargs)}" if kwargs else ""
    )
    fix = meta.get("fix")
    return "; ".join(x for x in (what, f"fix: {fix}" if fix else "") if x)


def _context(docs_dir: Path) -> Any:
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,  # no network here, and none wanted from a data gate
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so reports print and serialise cleanly."""
    return value.item() if isinstance(value, np.generic) else value


def _observed(result: Any) -> Any:
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"error: {result.exception_info.get('exception_message')}"
    details = result.result or {}
    if "observed_value" in details:
        return _plain(details["observed_value"])
    if result.expectation_config.type == "expect_column_to_exist":
        return "column missing"
    if details.get("element_count") == 1 and details.get("partial_unexpected_list"):
        return _plain(details["partial_unexpected_list"][0])  # one-row frames (the funnel): the value itself
    if "unexpected_count" in details:
        sample = list(details.get("partial_unexpected_list") or [])[:5]
        return (
            f"{details['unexpected_count']} of {details.get('element_count')} rows unexpected, e.g. {sample}"
        )
    return None


def _failures(suite: str, validation: Any) -> list[FailedExpectation]:
    failed = []
    for result in validation.results:
        if result.success:
            continue
        config = result.expectation_config
        meta = config.meta or {}
        kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "column"}}
        failed.append(
            FailedExpectation(
                suite=suite,
                expectation=str(meta.get("expectation", config.type)),
                column=meta.get("column", config.kwargs.get("column")),
                observed=_observed(result),
                details=_details(kwargs, meta),
            )
        )
    return failed


def _run_suite(ctx: Any, suite_name: str, frame: pd.DataFrame, expectations: list[gxe.Expectation]) -> Any:
    source = ctx.data_sources.add_pandas(f"{suite_name}_source")
    batch = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


def _validate_into(
    table: pd.DataFrame | str,
    funnel: Mapping[str, Any] | None,
    cfg: ValidationConfig,
    docs: Path,
    name: str,
    engine: TableEngineConfig | None,
) -> tuple[bool, int, list[FailedExpectation], tuple[str, ...], str]:
    ctx = _context(docs)
    suites = [f"{name}.table"]
    failed: list[FailedExpectation] = []
    evaluated = 0
    if isinstance(table, pd.DataFrame):
        validation = _run_suite(ctx, suites[0], table, table_expectations(cfg, table, funnel))
        evaluated += len(validation.results)
        failed += _failures(suites[0], validation)
    else:
        with table_session(engine) as session:
            view = session.open(table, "validated")
            profile = TableProfile(session, view)
            expectations = aggregate_expectations(cfg, profile, funnel)
            validation = _run_suite(ctx, suites[0], profile.frame(), expectations)
            evaluated += len(validation.results)
            failed += profile.failures(suites[0], validation)
    if funnel is not None:
        suites.append(f"{name}.funnel")
        frame = _funnel_frame(cfg, funnel)
        validation = _run_suite(ctx, suites[1], frame, funnel_expectations(cfg, funnel))
        evaluated += len(validation.results)
        failed += _failures(suites[1], validation)
    index = ctx.build_data_docs(site_names=[DOCS_SITE])[DOCS_SITE]
    return not failed, evaluated, failed, tuple(suites), index


def validate_dataset(
    table: pd.DataFrame | str | Path,
    funnel: Mapping[str, Any] | None,
    cfg: ValidationConfig,
    docs_dir: str | Path,
    name: str = "dataset",
    engine: TableEngineConfig | None = None,
) -> ValidationReport:
    """Run the table suite (and the funnel suite when `funnel` metrics are given); build Data Docs into
    `docs_dir` (a local folder or any svd_core.storage URI) and report every failed expectation.

    `table` is a frame (validated row by row) or the path/URI of a Parquet file or part folder
    (validated through DuckDB aggregates in bounded memory; see the module docstring)."""
    source = table if isinstance(table, pd.DataFrame) else str(table)
    if svd_io.is_local(str(docs_dir)):
        local = svd_io.local_path(str(docs_dir)).absolute()  # GX needs an absolute base_directory
        local.mkdir(parents=True, exist_ok=True)
        success, evaluated, failed, suites, _ = _validate_into(source, funnel, cfg, local, name, engine)
        index = str(local / "index.html")
    else:
        with tempfile.TemporaryDirectory(prefix="svd-docs-") as tmp:
            success, evaluated, failed, suites, _ = _validate_into(
                source, funnel, cfg, Path(tmp), name, engine
            )
            for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
                svd_io.put_file(path, svd_io.join_uri(str(docs_dir), path.relative_to(tmp).as_posix()))
        index = svd_io.join_uri(str(docs_dir), "index.html")
    return ValidationReport(
        success=success, evaluated=evaluated, failed=tuple(failed), docs_index=index, suites=suites
    )


def make_validation_fn(
    cfg: ValidationConfig, docs_dir: str | Path, engine: TableEngineConfig | None = None
) -> ValidationFn:
    """A `ValidationFn` for svd_core.curation.publish.build_filtered: dataset `name`'s Data Docs go to
    `docs_dir/<name>/index.html`."""

    def validate(table: pd.DataFrame | str, funnel: Mapping[str, Any] | None, name: str) -> ValidationReport:
        return validate_dataset(
            table, funnel, cfg, svd_io.join_uri(str(docs_dir), name), name=name, engine=engine
        )

    return validate


# --- the aggregate datasource: a table too large for pandas -------------------------------------------
class TableProfile:
    """One row of aggregates over a table in the engine; each check is a count of bad rows (or a
    statistic) that GX bounds, remembering the row-level expectation it stands for."""

    def __init__(self, session: TableSession, view: TableView) -> None:
        self.session, self.view = session, view
        self.values: dict[str, Any] = {"row_count": view.rows}
        self._bad_rows: dict[str, str] = {}
        """Metric column -> SQL condition of its unexpected rows (for example values)."""
        self._examples: dict[str, str] = {}
        """Metric column -> SQL of example values behind a statistic (e.g. the one value of a constant)."""

    def has(self, column: str) -> bool:
        return column in self.view.columns

    def _count(self, metric: str, column: str, condition: str) -> str:
        self.values[metric] = int(self.session.scalar(f"SELECT count_if({condition}) FROM {self.view.ident}"))
        self._bad_rows[metric] = (
            f"SELECT {quote_ident(column)} FROM {self.view.ident} WHERE {condition} LIMIT 5"
        )
        return metric

    def exists(self, column: str) -> str:
        self.values[f"{column}__exists"] = int(self.has(column))
        return f"{column}__exists"

    def nulls(self, column: str) -> str:
        return self._count(f"{column}__nulls", column, f"{quote_ident(column)} IS NULL")

    def outside(self, column: str, low: float | None, high: float | None, strict_low: bool = False) -> str:
        c = quote_ident(column)
        checks = []
        if low is not None:
            checks.append(f"{c} {'<=' if strict_low else '<'} {sql_float(low)}")
        if high is not None:
            checks.append(f"{c} > {sql_float(high)}")
        numeric = f"{c} IS NOT NULL AND NOT isnan({c})"  # nulls are the not-null check's business
        return self._count(
            f"{column}__outside", column, f"({numeric}) AND ({' OR '.join(checks) or 'FALSE'})"
        )

    def duplicates(self, column: str) -> str:
        c = quote_ident(column)
        groups = f"SELECT {c} AS v, count(*) AS n FROM {self.view.ident} WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) > 1"
        metric = f"{column}__duplicate_rows"
        self.values[metric] = int(self.session.scalar(f"SELECT coalesce(sum(n), 0) FROM ({groups})"))
        self._bad_rows[metric] = f"SELECT v FROM ({groups}) ORDER BY v LIMIT 5"
        return metric

    def mean(self, column: str) -> str:
        c = quote_ident(column)
        self.values[f"{column}__mean"] = self.session.scalar(
            f"SELECT avg({c}) FROM {self.view.ident} WHERE NOT isnan({c})"
        )
        return f"{column}__mean"

    def quantile(self, column: str, percent: int) -> str:
        c = quote_ident(column)
        self.values[f"{column}__p{percent}"] = self.session.scalar(
            f"SELECT quantile_cont({c}, {sql_float(percent / 100)}) FROM {self.view.ident} WHERE NOT isnan({c})"
        )
        return f"{column}__p{percent}"

    def present_counts(self, columns: Sequence[str]) -> dict[str, int]:
        """Non-null, non-NaN values of each numeric column (one scan for all of them)."""
        if not columns:
            return {}
        counts = self.session.row(
            "SELECT "
            + ", ".join(
                f"count(*) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND NOT isnan({quote_ident(c)}))"
                for c in columns
            )
            + f" FROM {self.view.ident}"
        )
        return {c: int(n) for c, n in zip(columns, counts, strict=True)}

    def scorers_named(self) -> set[str]:
        """Scorer keys any row's `scorer_versions` names (one count per scorer, in one scan)."""
        if not self.has("scorer_versions"):
            return set()
        c = quote_ident("scorer_versions")
        keys = sorted(set(SCORE_SCORERS.values()))
        counts = self.session.row(
            "SELECT "
            + ", ".join(
                f"count_if(CASE WHEN json_valid({c}) THEN json_exists({c}, {quote_str('$.' + json.dumps(k))}) "
                "ELSE FALSE END)"
                for k in keys
            )
            + f" FROM {self.view.ident}"
        )
        return {k for k, n in zip(keys, counts, strict=True) if n}

    def stdev(self, column: str) -> str:
        c = quote_ident(column)
        self.values[f"{column}__stdev"] = self.session.scalar(
            f"SELECT stddev_samp({c}) FROM {self.view.ident} WHERE NOT isnan({c})"
        )
        self._examples[f"{column}__stdev"] = (
            f"SELECT DISTINCT {c} FROM {self.view.ident} WHERE {c} IS NOT NULL AND NOT isnan({c}) LIMIT 5"
        )
        return f"{column}__stdev"

    def non_null_share(self, column: str, present: int) -> str:
        self.values[f"{column}__non_null_share"] = present / max(1, self.view.rows)
        return f"{column}__non_null_share"

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{k: (None if v is None else v) for k, v in self.values.items()}])

    def failures(self, suite: str, validation: Any) -> list[FailedExpectation]:
        failed = []
        for result in validation.results:
            if result.success:
                continue
            config = result.expectation_config
            meta = config.meta or {}
            metric = config.kwargs.get("column")
            observed = self.values.get(metric)
            if result.exception_info and result.exception_info.get("raised_exception"):
                observed = f"error: {result.exception_info.get('exception_message')}"
            elif meta.get("expectation") == "expect_column_to_exist":
                observed = "column missing"
            elif metric in self._bad_rows:
                sample = [_plain(r[0]) for r in self.session.run(self._bad_rows[metric])]
                observed = f"{observed} of {self.view.rows} rows unexpected, e.g. {sample}"
            elif metric in self._examples:
                sample = [_plain(r[0]) for r in self.session.run(self._examples[metric])]
                observed = f"{_plain(observed)} (values, e.g. {sample})"
            kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "column"}}
            failed.append(
                FailedExpectation(
                    suite=suite,
                    expectation=str(meta.get("expectation", config.type)),
                    column=meta.get("column"),
                    observed=_plain(observed),
                    details=_details(kwargs, meta, metric),
                )
            )
        return failed


def _bounded(
    metric: str, expectation: str, column: str | None, fix: str | None = None, **bounds: Any
) -> gxe.Expectation:
    meta = {"expectation": expectation, "column": column, **({"fix": fix} if fix else {})}
    return gxe.ExpectColumnValuesToBeBetween(column=metric, meta=meta, **bounds)


def aggregate_expectations(
    cfg: ValidationConfig, profile: TableProfile, funnel: Mapping[str, Any] | None = None
) -> list[gxe.Expectation]:
    """The table suite of `table_expectations`, as bounds on `profile`'s aggregates (computing them)."""
    exps = [_bounded("row_count", "expect_table_row_count_to_be_between", None, min_value=cfg.min_rows)]
    for column in cfg.required_columns:
        exps.append(_bounded(profile.exists(column), "expect_column_to_exist", column, min_value=1))
        if profile.has(column):  # a missing column is reported once, by the check above
            exps.append(
                _bounded(profile.nulls(column), "expect_column_values_to_not_be_null", column, max_value=0)
            )
    for column in cfg.unique_columns:
        if profile.has(column):
            exps.append(
                _bounded(profile.duplicates(column), "expect_column_values_to_be_unique", column, max_value=0)
            )
    for column in cfg.positive_columns:
        if profile.has(column):
            metric = profile.outside(column, 0.0, None, strict_low=True)
            exps.append(_bounded(metric, "expect_column_values_to_be_between", column, max_value=0))
    if cfg.check_score_ranges:
        for column in SCORE_COLUMNS:
            exps.append(_bounded(profile.exists(column), "expect_column_to_exist", column, min_value=1))
            if profile.has(column):
                low, high = SCORE_RANGES[column]
                metric = profile.outside(column, low, high)
                exps.append(_bounded(metric, "expect_column_values_to_be_between", column, max_value=0))
    for column, bounds in cfg.score_bounds.items():
        if not profile.has(column):
            continue
        if bounds.mean is not None:
            mean_low, mean_high = bounds.mean
            exps.append(
                _bounded(
                    profile.mean(column),
                    "expect_column_mean_to_be_between",
                    column,
                    min_value=_bound(mean_low),
                    max_value=_bound(mean_high),
                )
            )
        for percent in sorted(bounds.quantiles):
            q_low, q_high = bounds.quantiles[percent]
            exps.append(
                _bounded(
                    profile.quantile(column, percent),
                    "expect_column_quantile_values_to_be_between",
                    column,
                    min_value=_bound(q_low),
                    max_value=_bound(q_high),
                )
            )
    counts = profile.present_counts([c for c in SCORE_COLUMNS if profile.has(c)])
    varying, non_null = score_health_plan(cfg, counts, profile.scorers_named(), _thresholded(funnel))
    for column in varying:
        exps.append(
            _bounded(
                profile.stdev(column),
                "expect_column_stdev_to_be_between",
                column,
                _constant_fix(column),
                min_value=cfg.min_score_stdev,
                strict_min=True,
            )
        )
    for column in non_null:
        exps.append(
            _bounded(
                profile.non_null_share(column, counts[column]),
                "expect_column_values_to_not_be_null",
                column,
                _null_fix(column),
                min_value=cfg.score_min_non_null,
            )
        )
    return exps
