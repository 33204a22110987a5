"""The GX gate sees broken scorers: a constant score column, a mostly-null one, and a percentile filter
that removes far from the share it asked for; the LVD table is gated before any filter runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.integrations.validation import make_validation_fn, validate_dataset
from svd_core.config import load_config
from svd_core.curation.config import FilterConfig, SubsetConfig, ValidationConfig
from svd_core.curation.filters import apply_filters
from svd_core.curation.funnel import compute_funnel
from svd_core.curation.publish import (
    PublishBlockedError,
    build_filtered,
    current_version,
    read_table,
    write_table,
)
from svd_core.curation.schema import CAPTION_COLUMNS, SCORE_SCORERS
from svd_core.curation.subsets import synthetic_lvd_table

STDEV = "expect_column_stdev_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
SHARE = "expect_percentile_filter_to_remove_its_share"
SCORED = json.dumps({"flow": "f1", "craft": "c1", "aesthetic": "a1", "clip_score": "s1"})


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    table = synthetic_lvd_table(400, seed=7)
    table["scorer_versions"] = SCORED  # as the LVD build writes it: every scorer ran
    return table


def constant_scorers(table: pd.DataFrame) -> pd.DataFrame:
    """Three scorers broken the same way: one number for every clip (the issue's failing case)."""
    bad = table.copy()
    for column, value in (("flow_score", 2.0), ("aesthetic_score", 5.0), ("clip_score", 0.3)):
        bad[column] = value
    return bad


def failures(report) -> dict[tuple[str, str | None], str]:
    return {(f.expectation, f.column): f.describe() for f in report.failed}


def health_failures(report) -> set[tuple[str, str | None]]:
    return {key for key in failures(report) if key[0] in {STDEV, NOT_NULL, SHARE}}


@pytest.mark.parametrize("as_path", [False, True], ids=["frame", "parquet"])
def test_constant_score_columns_fail_the_gate(tmp_path: Path, lvd: pd.DataFrame, as_path: bool) -> None:
    good = validate_dataset(lvd, None, ValidationConfig(), tmp_path / "good", name="lvd")
    assert good.success, good.failure_lines()
    # 37 schema and range expectations, plus one constant and one mostly-null check per score column.
    assert good.evaluated == 37 + 2 * len(SCORE_SCORERS)
    bad: pd.DataFrame | str = constant_scorers(lvd)
    if as_path:
        bad = str(tmp_path / "lvd.parquet")
        write_table(constant_scorers(lvd), bad)
    report = validate_dataset(bad, None, ValidationConfig(), tmp_path / "bad", name="lvd")
    assert not report.success
    assert health_failures(report) == {
        (STDEV, "flow_score"),
        (STDEV, "aesthetic_score"),
        (STDEV, "clip_score"),
    }
    assert report.evaluated == good.evaluated  # the same suite, and only the constant columns fail
    line = failures(report)[(STDEV, "aesthetic_score")]
    assert "aesthetic_score" in line and "'aesthetic' in scorer_versions" in line
    assert "validation.varying_scores" in line and "svd data build-lvd" in line  # the fix, by name
    if as_path:
        assert "e.g. [5.0]" in line  # the one value every clip got


def test_a_constant_can_be_declared_expected(tmp_path: Path, lvd: pd.DataFrame) -> None:
    no_text = lvd.assign(text_area_ratio=0.0)  # footage without any text
    assert not validate_dataset(no_text, None, ValidationConfig(), tmp_path / "a", name="lvd").success
    cfg = load_config(ValidationConfig, None, ["varying_scores=[flow_score,aesthetic_score,clip_score]"])
    assert validate_dataset(no_text, None, cfg, tmp_path / "b", name="lvd").success


def test_too_few_scored_rows_skip_the_constant_check(tmp_path: Path, lvd: pd.DataFrame) -> None:
    few = constant_scorers(lvd).head(ValidationConfig().min_scored_rows - 1)
    report = validate_dataset(few, None, ValidationConfig(), tmp_path, name="few")
    assert report.success, report.failure_lines()


@pytest.mark.parametrize("as_path", [False, True], ids=["frame", "parquet"])
def test_mostly_null_score_column_fails_the_gate(tmp_path: Path, lvd: pd.DataFrame, as_path: bool) -> None:
    holes = lvd.copy()
    holes.loc[holes.index[: len(holes) // 2], "aesthetic_score"] = np.nan  # the scorer failed on half
    holes.loc[holes.index[:4], "flow_score"] = np.nan  # 1%: within score_min_non_null
    table: pd.DataFrame | str = holes
    if as_path:
        table = str(tmp_path / "lvd.parquet")
        write_table(holes, table)
    report = validate_dataset(table, None, ValidationConfig(), tmp_path / "docs", name="lvd")
    assert health_failures(report) == {(NOT_NULL, "aesthetic_score")}
    line = failures(report)[(NOT_NULL, "aesthetic_score")]
    assert "validation.score_min_non_null" in line and "svd data score" in line
    if as_path:
        assert "0.5" in line  # the non-null share observed


def test_an_unconfigured_scorer_is_exempt_but_a_silent_one_is_not(tmp_path: Path, lvd: pd.DataFrame) -> None:
    off = lvd.assign(
        clip_score=np.nan, scorer_versions=json.dumps({"flow": "f", "craft": "c", "aesthetic": "a"})
    )
    report = validate_dataset(off, None, ValidationConfig(), tmp_path / "off", name="lvd")
    assert report.success, report.failure_lines()  # null everywhere and named nowhere: not configured
    silent = lvd.assign(clip_score=np.nan)  # scorer_versions says the CLIP scorer ran, yet no value
    report = validate_dataset(silent, None, ValidationConfig(), tmp_path / "silent", name="lvd")
    assert health_failures(report) == {(NOT_NULL, "clip_score")}


def test_percentile_filter_far_from_its_share_fails_the_funnel_suite(
    tmp_path: Path, lvd: pd.DataFrame
) -> None:
    cfg = load_config(ValidationConfig, None, ["kept_fraction=[0.0,1.0]"])
    result = apply_filters(lvd, FilterConfig())
    good = validate_dataset(
        result.kept, compute_funnel(lvd, result, FilterConfig()).metrics, cfg, tmp_path / "a"
    )
    assert good.success, good.failure_lines()
    # Most clips without text: p75 of text_area_ratio is 0 and `max: {pct: 75}` removes 10%, not 25%.
    texty = lvd.copy()
    texty["text_area_ratio"] = np.where(np.arange(len(lvd)) % 10 == 0, 0.2, 0.0)
    result = apply_filters(texty, FilterConfig())
    funnel = compute_funnel(texty, result, FilterConfig()).metrics
    assert funnel["filters"]["text_area_ratio"]["removed_scored_fraction"] == pytest.approx(0.1)
    assert funnel["filters"]["text_area_ratio"]["requested_removed_fraction"] == pytest.approx(0.25)
    report = validate_dataset(result.kept, funnel, cfg, tmp_path / "b", name="lvd_f")
    # Only the share check fails: the thresholded column is constant in LVD-F, as the filter made it.
    assert health_failures(report) == {(SHARE, "text_area_ratio")}
    line = failures(report)[(SHARE, "text_area_ratio")]
    assert "observed 0.1" in line and "scores.text_area_ratio.min.abs / max.abs" in line
    assert "validation.percentile_share_tolerance" in line
    wide = load_config(ValidationConfig, None, ["kept_fraction=[0.0,1.0]", "percentile_share_tolerance=0.2"])
    assert validate_dataset(result.kept, funnel, wide, tmp_path / "c", name="lvd_f").success


def test_constant_scorers_make_percentile_filters_remove_nothing(tmp_path: Path, lvd: pd.DataFrame) -> None:
    bad = constant_scorers(lvd)
    result = apply_filters(bad, FilterConfig())
    funnel = compute_funnel(bad, result, FilterConfig()).metrics
    cfg = load_config(ValidationConfig, None, ["kept_fraction=[0.0,1.0]"])
    report = validate_dataset(result.kept, funnel, cfg, tmp_path, name="lvd_f")
    assert health_failures(report) == {
        (SHARE, "flow_score"),
        (SHARE, "aesthetic_score"),
        (SHARE, "clip_score"),
    }


def test_old_funnel_statistics_still_validate(tmp_path: Path, lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, FilterConfig())
    funnel = compute_funnel(lvd, result, FilterConfig()).metrics
    old = {
        **funnel,
        "filters": {
            n: {k: v for k, v in f.items() if k in {"removed_alone_rows"}}
            for n, f in funnel["filters"].items()
        },
    }
    cfg = load_config(ValidationConfig, None, ["kept_fraction=[0.0,1.0]"])
    report = validate_dataset(result.kept, old, cfg, tmp_path, name="lvd_f")
    assert (
        report.success
        and report.evaluated
        == validate_dataset(result.kept, funnel, cfg, tmp_path / "new", name="lvd_f").evaluated - 4
    )  # the four percentile filters' share checks need the new statistics


def test_build_gates_the_lvd_table_before_any_filter(tmp_path: Path, lvd: pd.DataFrame) -> None:
    out, docs = str(tmp_path / "curated"), tmp_path / "docs"
    lvd_uri = str(tmp_path / "lvd.parquet")
    write_table(constant_scorers(lvd), lvd_uri)
    subset = SubsetConfig(fraction=0.5)
    steps: list[str] = []
    with pytest.raises(PublishBlockedError) as blocked:
        build_filtered(
            lvd_uri,
            out,
            FilterConfig(),
            subset,
            make_validation_fn(ValidationConfig(), docs),
            on_step=steps.append,
        )
    message = str(blocked.value)
    assert "LVD table" in message and "no filter ran and nothing was published" in message
    for column in ("flow_score", "aesthetic_score", "clip_score"):
        assert f"{STDEV}({column})" in message
    assert "validation.varying_scores" in message
    assert steps == [f"validating {lvd_uri} (the LVD table, before any filter)"]  # stopped before filtering
    assert (docs / "lvd" / "index.html").is_file()  # the LVD table's own Data Docs
    assert not Path(out).exists()  # nothing half-published
    for name in ("lvd_f", "lvd_10m", "lvd_10m_f"):
        assert current_version(out, name) is None

    write_table(lvd, lvd_uri)  # the scorers fixed: the same build goes through
    summary = build_filtered(
        lvd_uri, out, FilterConfig(), subset, make_validation_fn(ValidationConfig(), docs)
    )
    assert summary["lvd_validation"]["success"] and tuple(summary["lvd_validation"]["suites"]) == (
        "lvd.table",
    )
    assert set(summary["datasets"]) == {"lvd_f", "lvd_10m", "lvd_10m_f"}
    assert (
        summary["datasets"]["lvd_f"]["funnel"]["filters"]["flow_score"]["requested_removed_fraction"] == 0.25
    )


def test_an_lvd_table_from_before_the_caption_columns_still_builds(tmp_path: Path, lvd: pd.DataFrame) -> None:
    old = lvd.drop(columns=[*CAPTION_COLUMNS, "caption_provenance"])
    lvd_uri = str(tmp_path / "lvd.parquet")
    write_table(old, lvd_uri)
    validate = make_validation_fn(ValidationConfig(), tmp_path / "docs")
    summary = build_filtered(lvd_uri, str(tmp_path / "curated"), FilterConfig(), None, validate)
    assert summary["lvd_validation"]["success"]
    published = read_table(summary["datasets"]["lvd_f"]["files"]["table"])
    assert list(published.columns) == list(old.columns) and len(published) > 0
