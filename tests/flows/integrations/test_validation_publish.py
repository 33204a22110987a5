"""Publishing curated tables: immutable versions, the CURRENT pointer, the gate blocking a publish."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from svd_core.curation.config import FilterConfig
from svd_core.curation.filters import apply_filters
from svd_core.curation.funnel import compute_funnel
from svd_core.curation.publish import (
    CURRENT_FILE,
    FailedExpectation,
    PublishBlockedError,
    ValidationReport,
    current_version,
    list_versions,
    publish_dataset,
    publish_if_valid,
    read_current_table,
)
from svd_core.curation.schema import LVD_SCHEMA
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.errors import InputError

PASSED = ValidationReport(success=True, evaluated=3)
FAILED = ValidationReport(
    success=False,
    evaluated=3,
    failed=(FailedExpectation("lvd_f.funnel", "expect_column_values_to_be_between", "kept_fraction", 0.21),),
)


@pytest.fixture(scope="module")
def filtered() -> tuple[pd.DataFrame, object]:
    lvd = synthetic_lvd_table(500, seed=2)
    result = apply_filters(lvd, FilterConfig())
    return result.kept, compute_funnel(lvd, result, FilterConfig())


def test_publish_writes_a_version_and_flips_current(tmp_path: Path, filtered) -> None:
    kept, funnel = filtered
    out = str(tmp_path / "curated")
    assert current_version(out, "lvd_f") is None
    published = publish_if_valid(out, "lvd_f", kept, funnel, PASSED)
    current = current_version(out, "lvd_f")
    assert current == published
    assert set(published.files) == {"table", "funnel_json", "funnel_csv", "quantiles_csv", "validation"}
    for uri in published.files.values():
        assert Path(uri).is_file()
    table = read_current_table(out, "lvd_f")
    pd.testing.assert_frame_equal(table, kept.reset_index(drop=True))
    assert pq.read_schema(published.files["table"]).remove_metadata().equals(LVD_SCHEMA)
    assert json.loads(Path(published.files["funnel_json"]).read_text())["kept_rows"] == len(kept)
    metrics = json.loads((tmp_path / "curated" / "lvd_f_metrics.json").read_text())
    assert metrics["version"] == published.version and metrics["rows"] == len(kept)
    assert metrics["kept_fraction"] == funnel.metrics["kept_fraction"]
    assert json.loads(Path(published.files["validation"]).read_text())["success"] is True
    # no temp files are left behind by the atomic writes
    assert not [p for p in (tmp_path / "curated").rglob("*") if ".svdtmp-" in p.name]


def test_failed_gate_publishes_nothing_and_keeps_previous_version(tmp_path: Path, filtered) -> None:
    kept, funnel = filtered
    out = str(tmp_path)
    first = publish_if_valid(out, "lvd_f", kept, funnel, PASSED)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(PublishBlockedError) as err:
        publish_if_valid(out, "lvd_f", kept.iloc[:10], funnel, FAILED)
    message = str(err.value)
    assert "expect_column_values_to_be_between(kept_fraction) observed 0.21" in message
    assert f"version {first.version} stays current" in message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert current_version(out, "lvd_f") == first


def test_old_versions_are_pruned_but_current_kept(tmp_path: Path, filtered) -> None:
    kept, funnel = filtered
    out = str(tmp_path)
    versions = [
        publish_dataset(out, "lvd_f", kept.iloc[: 50 + i], funnel, keep_versions=2).version for i in range(4)
    ]
    assert len(set(versions)) == 4 and versions == sorted(versions)  # timestamp-first names sort in time
    assert list_versions(out, "lvd_f") == versions[-2:]
    assert current_version(out, "lvd_f").version == versions[-1]
    assert len(read_current_table(out, "lvd_f")) == 53
    assert sorted(p.name for p in (tmp_path / "lvd_f").iterdir()) == sorted([CURRENT_FILE, *versions[-2:]])


def test_publish_refuses_empty_tables(tmp_path: Path, filtered) -> None:
    kept, _ = filtered
    with pytest.raises(InputError, match="no rows"):
        publish_dataset(str(tmp_path), "lvd_f", kept.iloc[:0])
    with pytest.raises(InputError, match="no published version"):
        read_current_table(str(tmp_path), "lvd_f")


def test_report_serialises_observed_values() -> None:
    report = ValidationReport(
        success=False,
        evaluated=1,
        failed=(FailedExpectation("s", "expect_x", None, {"values": [1.5]}, "expected {}"),),
        docs_index="/d/index.html",
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["failed"][0]["observed"] == {"values": [1.5]}
    assert report.failure_lines() == ["s: expect_x observed {'values': [1.5]}; expected {}"]


def test_relative_out_path_prunes_too(tmp_path: Path, filtered, monkeypatch: pytest.MonkeyPatch) -> None:
    kept, _ = filtered
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        publish_dataset("./curated", "lvd_f", kept, keep_versions=1)
    assert len(list_versions("./curated", "lvd_f")) == 1
    assert len([p for p in (tmp_path / "curated" / "lvd_f").iterdir() if p.is_dir()]) == 1


@pytest.fixture
def mocked_s3(svd_home: Path, monkeypatch: pytest.MonkeyPatch):
    """In-process S3 (moto) behind flows.integrations.s3's real S3 backend."""
    moto = pytest.importorskip("moto")
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        import flows.integrations.s3
        from svd_core import storage as svd_io

        svd_io.register_store("s3", flows.integrations.s3.S3Store)  # a client created inside the mock
        svd_io.store_for("s3://svd-test/x").ensure_bucket("svd-test")
        yield "s3://svd-test/curated"
        svd_io.register_store("s3", flows.integrations.s3.S3Store)  # drop the mocked client


def test_publish_and_gate_on_s3(mocked_s3: str, filtered) -> None:
    kept, funnel = filtered
    out = mocked_s3
    versions = [
        publish_if_valid(out, "lvd_f", kept.iloc[: 100 + i], funnel, PASSED).version for i in range(3)
    ]
    assert list_versions(out, "lvd_f") == versions[-2:]
    current = current_version(out, "lvd_f")
    assert current.version == versions[-1] and current.files["table"].startswith(
        "s3://svd-test/curated/lvd_f/"
    )
    assert len(read_current_table(out, "lvd_f")) == 102
    with pytest.raises(PublishBlockedError):
        publish_if_valid(out, "lvd_f", kept, funnel, FAILED)
    assert current_version(out, "lvd_f").version == versions[-1]


def test_data_docs_upload_to_s3(mocked_s3: str, filtered) -> None:
    from flows.integrations.validation import validate_dataset
    from svd_core import storage as svd_io
    from svd_core.curation.config import ValidationConfig

    kept, funnel = filtered
    report = validate_dataset(
        kept, funnel.metrics, ValidationConfig(), "s3://svd-test/docs/lvd_f", name="lvd_f"
    )
    assert report.success and report.docs_index == "s3://svd-test/docs/lvd_f/index.html"
    assert b"lvd_f.table" in svd_io.read_bytes(report.docs_index)
    assert any("/validations/" in uri for uri in svd_io.list_uris("s3://svd-test/docs/lvd_f/"))


def test_republishing_the_same_table_keeps_the_current_version(tmp_path: Path) -> None:
    table = synthetic_lvd_table(50, seed=7)
    first = publish_dataset(str(tmp_path), "lvd_f", table)
    again = publish_dataset(str(tmp_path), "lvd_f", table.copy())
    assert again.version == first.version
    assert list_versions(str(tmp_path), "lvd_f") == [first.version]
    changed = publish_dataset(str(tmp_path), "lvd_f", table.iloc[:-1])
    assert changed.version != first.version
