"""The Great Expectations gate (flows.integrations.validation) and the gated build (publish.build_filtered)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.integrations.validation import make_validation_fn, validate_dataset
from svd_core.config import load_config
from svd_core.curation.config import FilterConfig, SubsetConfig, ValidationConfig
from svd_core.curation.filters import apply_filters
from svd_core.curation.funnel import compute_funnel
from svd_core.curation.publish import PublishBlockedError, build_filtered, current_version, write_table
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.errors import InputError


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    return synthetic_lvd_table(600, seed=4)


@pytest.fixture(scope="module")
def lvd_f(lvd: pd.DataFrame):
    result = apply_filters(lvd, FilterConfig())
    return result.kept, compute_funnel(lvd, result, FilterConfig())


def vcfg(*overrides: str) -> ValidationConfig:
    return load_config(ValidationConfig, None, overrides)


def failed_by_column(report) -> dict[tuple[str, str | None], object]:
    return {(f.expectation, f.column): f.observed for f in report.failed}


def test_clean_table_passes_and_builds_data_docs(tmp_path: Path, lvd_f) -> None:
    kept, funnel = lvd_f
    report = validate_dataset(kept, funnel.metrics, ValidationConfig(), tmp_path / "docs", name="lvd_f")
    assert report.success, report.failure_lines()
    assert report.failed == () and report.evaluated > 20
    assert report.suites == ("lvd_f.table", "lvd_f.funnel")
    index = Path(report.docs_index)
    assert index.is_file() and "lvd_f.table" in index.read_text()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))


def test_broken_table_lists_each_failed_expectation(tmp_path: Path, lvd: pd.DataFrame) -> None:
    bad = lvd.drop(columns=["video_id"]).copy()
    bad.loc[0, "clip_id"] = bad.loc[1, "clip_id"]
    bad.loc[2, "clip_uri"] = None
    bad.loc[3, "clip_score"] = 1.7
    bad.loc[4, "duration_s"] = 0.0
    report = validate_dataset(bad, None, ValidationConfig(), tmp_path, name="bad")
    assert not report.success
    failed = failed_by_column(report)
    assert failed[("expect_column_to_exist", "video_id")] == "column missing"
    assert "2 of 600 rows unexpected" in failed[("expect_column_values_to_be_unique", "clip_id")]
    assert "1 of 600 rows unexpected" in failed[("expect_column_values_to_not_be_null", "clip_uri")]
    assert "[1.7]" in failed[("expect_column_values_to_be_between", "clip_score")]
    assert "[0.0]" in failed[("expect_column_values_to_be_between", "duration_s")]
    assert len(report.failed) == 5  # and nothing else
    assert all(line.startswith("bad.table: ") for line in report.failure_lines())


def test_score_distribution_bounds(tmp_path: Path, lvd: pd.DataFrame) -> None:
    median = float(np.median(lvd["clip_score"]))
    loose = vcfg("score_bounds.clip_score.mean=[0.1,0.5]", "score_bounds.clip_score.quantiles.50=[0.2,0.4]")
    assert validate_dataset(lvd, None, loose, tmp_path / "a").success
    tight = vcfg(
        "score_bounds.clip_score.mean=[0.9,null]",
        "score_bounds.clip_score.quantiles={5: [null, 0.0], 50: [0.2, 0.4]}",
    )
    report = validate_dataset(lvd, None, tight, tmp_path / "b")
    failed = failed_by_column(report)
    assert failed[("expect_column_mean_to_be_between", "clip_score")] == pytest.approx(
        lvd["clip_score"].mean()
    )
    quantiles = failed[("expect_column_quantiles_in_ranges", "clip_score")]
    assert quantiles["quantiles"] == [0.05, 0.5] and quantiles["values"][1] == pytest.approx(median, abs=0.01)


def test_kept_fraction_band(tmp_path: Path, lvd_f) -> None:
    kept, funnel = lvd_f
    report = validate_dataset(kept, funnel.metrics, vcfg("kept_fraction=[0.99,1.0]"), tmp_path)
    assert failed_by_column(report) == {
        ("expect_column_values_to_be_between", "kept_fraction"): funnel.metrics["kept_fraction"]
    }
    with pytest.raises(InputError, match="kept_fraction"):
        validate_dataset(kept, {"rows": 3}, ValidationConfig(), tmp_path)


def test_impossible_gate_keeps_previous_published_version(tmp_path: Path, lvd: pd.DataFrame) -> None:
    lvd_uri = str(tmp_path / "lvd.parquet")
    write_table(lvd, lvd_uri)
    out, docs = str(tmp_path / "curated"), tmp_path / "docs"
    subset = load_config(SubsetConfig, None, ["size=300"])
    first = build_filtered(lvd_uri, out, FilterConfig(), subset, make_validation_fn(ValidationConfig(), docs))
    assert set(first["datasets"]) == {"lvd_f", "lvd_10m", "lvd_10m_f"}
    versions = {name: current_version(out, name).version for name in first["datasets"]}
    files_before = sorted(p for p in (tmp_path / "curated").rglob("*"))

    impossible = make_validation_fn(vcfg("kept_fraction=[0.99,1.0]"), docs)
    with pytest.raises(PublishBlockedError) as err:
        build_filtered(lvd_uri, out, FilterConfig(), subset, impossible)
    message = str(err.value)
    assert "lvd_f.funnel: expect_column_values_to_be_between(kept_fraction)" in message
    assert "lvd_10m_f.funnel: expect_column_values_to_be_between(kept_fraction)" in message
    assert f"version {versions['lvd_f']} stays current" in message
    assert {name: current_version(out, name).version for name in versions} == versions
    assert sorted(p for p in (tmp_path / "curated").rglob("*")) == files_before
    assert (docs / "lvd_f" / "index.html").is_file()  # the failing run's Data Docs are still there to read


def test_build_summary_and_subset_only(tmp_path: Path, lvd: pd.DataFrame) -> None:
    lvd_uri = str(tmp_path / "lvd.parquet")
    write_table(lvd, lvd_uri)
    steps: list[str] = []
    validate = make_validation_fn(ValidationConfig(), tmp_path / "docs")
    subset = load_config(SubsetConfig, None, ["size=300"])
    summary = build_filtered(
        lvd_uri,
        str(tmp_path / "out"),
        FilterConfig(),
        subset,
        validate,
        include_lvd_f=False,
        on_step=steps.append,
    )
    assert set(summary["datasets"]) == {"lvd_10m", "lvd_10m_f"}
    assert summary["lvd_rows"] == 600 and summary["thresholds"]["clip_score"]["min_spec"] == "pct 50"
    assert (
        summary["datasets"]["lvd_10m"]["rows"] == 300
        and summary["datasets"]["lvd_10m"]["kept_fraction"] is None
    )
    assert summary["datasets"]["lvd_10m_f"]["funnel"]["input_rows"] == 300
    assert summary["datasets"]["lvd_10m_f"]["validation"]["success"] is True
    assert "validating lvd_10m_f" in steps and "publishing lvd_10m" in steps
    assert current_version(str(tmp_path / "out"), "lvd_f") is None
