"""Great Expectations gate for curated tables: a table suite and a filter-statistics suite, Data Docs.

The library (svd_core.curation.publish) only consumes the plain `ValidationReport` built here, so
svd_core never imports great_expectations. Each call runs in an ephemeral GX context (nothing to set up,
nothing left behind) whose only persistent output is the Data Docs site written to `docs_dir`. GX prunes
pages whose results are not in the context's (in-memory) stores when it rebuilds a site index, so each
`docs_dir` shows one run: `make_validation_fn` gives every dataset its own folder.
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
from svd_core.curation.config import ValidationConfig
from svd_core.curation.publish import FailedExpectation, ValidationFn, ValidationReport
from svd_core.curation.schema import SCORE_COLUMNS, SCORE_RANGES
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
    table: pd.DataFrame, funnel: Mapping[str, Any] | None, cfg: ValidationConfig, docs: Path, name: str
) -> tuple[bool, int, list[FailedExpectation], tuple[str, ...], str]:
    ctx = _context(docs)
    runs = [(f"{name}.table", table, table_expectations(cfg, list(table.columns)))]
    if funnel is not None:
        runs.append((f"{name}.funnel", _funnel_frame(funnel), funnel_expectations(cfg)))
    failed: list[FailedExpectation] = []
    evaluated = 0
    for suite_name, frame, expectations in runs:
        validation = _run_suite(ctx, suite_name, frame, expectations)
        evaluated += len(validation.results)
        failed += _failures(suite_name, validation)
    index = ctx.build_data_docs(site_names=[DOCS_SITE])[DOCS_SITE]
    return not failed, evaluated, failed, tuple(s for s, _, _ in runs), index


def validate_dataset(
    table: pd.DataFrame,
    funnel: Mapping[str, Any] | None,
    cfg: ValidationConfig,
    docs_dir: str | Path,
    name: str = "dataset",
) -> ValidationReport:
    """Run the table suite (and the funnel suite when `funnel` metrics are given); build Data Docs into
    `docs_dir` (a local folder or any svd_core.storage URI) and report every failed expectation."""
    if svd_io.is_local(str(docs_dir)):
        local = svd_io.local_path(str(docs_dir)).absolute()  # GX needs an absolute base_directory
        local.mkdir(parents=True, exist_ok=True)
        success, evaluated, failed, suites, _ = _validate_into(table, funnel, cfg, local, name)
        index = str(local / "index.html")
    else:
        with tempfile.TemporaryDirectory(prefix="svd-docs-") as tmp:
            success, evaluated, failed, suites, _ = _validate_into(table, funnel, cfg, Path(tmp), name)
            for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
                svd_io.put_file(path, svd_io.join_uri(str(docs_dir), path.relative_to(tmp).as_posix()))
        index = svd_io.join_uri(str(docs_dir), "index.html")
    return ValidationReport(
        success=success, evaluated=evaluated, failed=tuple(failed), docs_index=index, suites=suites
    )


def make_validation_fn(cfg: ValidationConfig, docs_dir: str | Path) -> ValidationFn:
    """A `ValidationFn` for svd_core.curation.publish.build_filtered: dataset `name`'s Data Docs go to
    `docs_dir/<name>/index.html`."""

    def validate(table: pd.DataFrame, funnel: Mapping[str, Any] | None, name: str) -> ValidationReport:
        return validate_dataset(table, funnel, cfg, svd_io.join_uri(str(docs_dir), name), name=name)

    return validate
