"""The gate and the gated build over tables given by path (a file or a folder of parts), out of core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.integrations.validation import make_validation_fn, validate_dataset
from svd_core.config import load_config
from svd_core.curation.config import FilterConfig, SubsetConfig, ValidationConfig
from svd_core.curation.filters import apply_filters
from svd_core.curation.publish import ValidationReport, build_filtered, read_current_table, write_table
from svd_core.curation.subsets import random_subset, synthetic_lvd_table
from svd_core.curation.table import Part, write_manifest


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    return synthetic_lvd_table(900, seed=11)


def _parts(table: pd.DataFrame, folder: Path) -> str:
    half = len(table) // 2
    write_table(table.iloc[:half], str(folder / "part-0.parquet"))
    write_table(table.iloc[half:], str(folder / "part-1.parquet"))
    write_manifest(str(folder), [Part("part-0.parquet", half), Part("part-1.parquet", len(table) - half)])
    return str(folder)


def _failed(report: ValidationReport) -> dict[tuple[str, str | None], Any]:
    return {(f.expectation, f.column): f.observed for f in report.failed}


def test_path_and_frame_gates_fail_the_same_expectations(tmp_path: Path, lvd: pd.DataFrame) -> None:
    bad = lvd.drop(columns=["video_id"]).copy()
    bad.loc[0, "clip_id"] = bad.loc[1, "clip_id"]
    bad.loc[2, "clip_uri"] = None
    bad.loc[3, "clip_score"] = 1.7
    bad.loc[4, "duration_s"] = 0.0
    frame_report = validate_dataset(bad, None, ValidationConfig(), tmp_path / "frame", name="bad")
    parts = _parts(bad, tmp_path / "parts")
    path_report = validate_dataset(parts, None, ValidationConfig(), tmp_path / "path", name="bad")
    assert set(_failed(path_report)) == set(_failed(frame_report))
    failed = _failed(path_report)
    assert failed[("expect_column_to_exist", "video_id")] == "column missing"
    assert "2 of 900 rows unexpected" in failed[("expect_column_values_to_be_unique", "clip_id")]
    assert (
        "1 of 900 rows unexpected, e.g. [None]" in failed[("expect_column_values_to_not_be_null", "clip_uri")]
    )
    assert "e.g. [1.7]" in failed[("expect_column_values_to_be_between", "clip_score")]
    assert "e.g. [0.0]" in failed[("expect_column_values_to_be_between", "duration_s")]
    assert Path(str(path_report.docs_index)).is_file() and path_report.suites == ("bad.table",)
    clean = validate_dataset(_parts(lvd, tmp_path / "clean"), None, ValidationConfig(), tmp_path / "c")
    assert clean.success and clean.evaluated > 20, clean.failure_lines()


def test_distribution_bounds_on_aggregates(tmp_path: Path, lvd: pd.DataFrame) -> None:
    uri = str(tmp_path / "lvd.parquet")
    write_table(lvd, uri)
    tight = load_config(
        ValidationConfig,
        None,
        ["score_bounds.clip_score.mean=[0.9,null]", "score_bounds.clip_score.quantiles={50: [0.2, 0.4]}"],
    )
    failed = _failed(validate_dataset(uri, None, tight, tmp_path / "docs"))
    assert failed == {
        ("expect_column_mean_to_be_between", "clip_score"): pytest.approx(lvd.clip_score.mean())
    }


def test_gated_build_over_parts_publishes_the_pandas_rows(tmp_path: Path, lvd: pd.DataFrame) -> None:
    parts = _parts(lvd, tmp_path / "lvd_parts")
    out = str(tmp_path / "curated")
    subset = load_config(SubsetConfig, None, ["size=300", "seed=3"])
    validate = make_validation_fn(ValidationConfig(), tmp_path / "docs")
    summary = build_filtered(parts, out, FilterConfig(), subset, validate)
    assert summary["lvd_rows"] == len(lvd)
    expected = apply_filters(lvd, FilterConfig()).kept
    assert read_current_table(out, "lvd_f").clip_id.tolist() == expected.clip_id.tolist()
    expected_subset = random_subset(lvd, subset)
    assert read_current_table(out, "lvd_10m").clip_id.tolist() == expected_subset.clip_id.tolist()
    thresholds = apply_filters(lvd, FilterConfig()).thresholds
    sub_f = apply_filters(expected_subset, FilterConfig(), thresholds).kept
    assert read_current_table(out, "lvd_10m_f").clip_id.tolist() == sub_f.clip_id.tolist()
    assert summary["datasets"]["lvd_f"]["validation"]["success"]
    again = build_filtered(parts, out, FilterConfig(), subset, validate)
    versions = {n: d["version"] for n, d in summary["datasets"].items()}
    assert {n: d["version"] for n, d in again["datasets"].items()} == versions  # same bytes, same version
