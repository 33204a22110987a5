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
"""

from __future__ import annotations

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
from svd_core.curation.schema import SCORE_COLUMNS, SCORE_RANGES
from svd_core.curation.table import TableSession, TableView, quote_ident, sql_float, table_session
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


def table_expectations(cfg: ValidationConfig, columns: Sequence[str]) -> list[gxe.Expectation]:
    """Expectations on a published table (LVD-shaped)."""
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
    return exps


def funnel_expectations(cfg: ValidationConfig) -> list[gxe.Expectation]:
    """Expectations on a filter run's statistics (one row: kept_fraction, kept_rows, input_rows)."""
    low, high = cfg.kept_fraction
    return [
        gxe.ExpectColumnValuesToBeBetween(column="kept_fraction", min_value=low, max_value=high),
        gxe.ExpectColumnValuesToBeBetween(column="kept_rows", min_value=cfg.min_rows),
    ]


def _funnel_frame(funnel: Mapping[str, Any]) -> pd.DataFrame:
    missing = [k for k in ("kept_fraction", "kept_rows", "input_rows") if k not in funnel]
    if missing:
        raise InputError(
            f"filter statistics lack {missing}; pass the <name>_funnel.json written by `svd data filter`"
        )
    return pd.DataFrame([{k: funnel[k] for k in ("kept_fraction", "kept_rows", "input_rows")}])


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
        kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "column"}}
        failed.append(
            FailedExpectation(
                suite=suite,
                expectation=config.type,
                column=config.kwargs.get("column"),
                observed=_observed(result),
                details=f"expected {kwargs}" if kwargs else "",
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
        validation = _run_suite(ctx, suites[0], table, table_expectations(cfg, list(table.columns)))
        evaluated += len(validation.results)
        failed += _failures(suites[0], validation)
    else:
        with table_session(engine) as session:
            view = session.open(table, "validated")
            profile = TableProfile(session, view)
            expectations = aggregate_expectations(cfg, profile)
            validation = _run_suite(ctx, suites[0], profile.frame(), expectations)
            evaluated += len(validation.results)
            failed += profile.failures(suites[0], validation)
    if funnel is not None:
        suites.append(f"{name}.funnel")
        validation = _run_suite(ctx, suites[1], _funnel_frame(funnel), funnel_expectations(cfg))
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
            kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "column"}}
            failed.append(
                FailedExpectation(
                    suite=suite,
                    expectation=str(meta.get("expectation", config.type)),
                    column=meta.get("column"),
                    observed=_plain(observed),
                    details=f"expected {metric} within {kwargs}",
                )
            )
        return failed


def _bounded(metric: str, expectation: str, column: str | None, **bounds: Any) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(
        column=metric, meta={"expectation": expectation, "column": column}, **bounds
    )


def aggregate_expectations(cfg: ValidationConfig, profile: TableProfile) -> list[gxe.Expectation]:
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
    return exps
