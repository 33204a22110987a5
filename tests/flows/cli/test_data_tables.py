"""`svd data filter | subset | validate` through typer's CliRunner on a throwaway app."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows.cli.data_tables import ValidationFailedError, register
from svd_core.curation.publish import PublishBlockedError, current_version, read_current_table, write_table
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    group = typer.Typer()
    register(group)
    return group


@pytest.fixture
def lvd_uri(tmp_path: Path) -> str:
    uri = str(tmp_path / "lvd.parquet")
    write_table(synthetic_lvd_table(500, seed=8), uri)
    return uri


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_help_lists_the_commands(app: typer.Typer) -> None:
    result = invoke(app, "--help")
    assert result.exit_code == 0
    for name in ("filter", "subset", "validate"):
        assert name in result.output
    assert "--lvd" in invoke(app, "filter", "--help").output


def test_filter_publishes_with_config_and_overrides(app: typer.Typer, lvd_uri: str, tmp_path: Path) -> None:
    out = str(tmp_path / "curated")
    result = invoke(
        app,
        "filter",
        "--lvd",
        lvd_uri,
        "--out",
        out,
        "--config",
        str(ROOT / "configs/data/filter.yaml"),
        "--validation-config",
        str(ROOT / "configs/data/validation.yaml"),
        "scores.clip_score.min.pct=40",
    )
    assert result.exit_code == 0, result.output
    current = current_version(out, "lvd_f")
    assert f"published lvd_f version {current.version}" in result.output
    funnel = json.loads(Path(current.files["funnel_json"]).read_text())
    assert funnel["thresholds"]["clip_score"]["min_spec"] == "pct 40"
    assert funnel["filters"]["clip_score"]["removed_alone_rows"] == 200  # 40% of 500
    assert len(read_current_table(out, "lvd_f")) == funnel["kept_rows"]
    assert (tmp_path / "curated" / "validation" / "lvd_f" / "index.html").is_file()


def test_filter_blocked_by_gate_exits_non_zero(app: typer.Typer, lvd_uri: str, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("kept_fraction: [0.99, 1.0]\n")
    result = invoke(
        app, "filter", "--lvd", lvd_uri, "--out", str(tmp_path / "o"), "--validation-config", str(strict)
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, PublishBlockedError)
    assert "kept_fraction" in str(result.exception)
    assert current_version(str(tmp_path / "o"), "lvd_f") is None


def test_bad_override_is_a_config_error(app: typer.Typer, lvd_uri: str, tmp_path: Path) -> None:
    result = invoke(app, "filter", "--lvd", lvd_uri, "--out", str(tmp_path), "scores.clip_score.min.pct=200")
    assert isinstance(result.exception, ConfigError)
    assert "scores.clip_score.min.pct" in str(result.exception)


def test_subset_publishes_both_subsets(app: typer.Typer, lvd_uri: str, tmp_path: Path) -> None:
    out = str(tmp_path / "curated")
    result = invoke(
        app,
        "subset",
        "--lvd",
        lvd_uri,
        "--out",
        out,
        "--config",
        str(ROOT / "configs/data/subset.yaml"),
        "size=200",
    )
    assert result.exit_code == 0, result.output
    assert len(read_current_table(out, "lvd_10m")) == 200
    sub_f = read_current_table(out, "lvd_10m_f")
    assert set(sub_f["clip_id"]) <= set(read_current_table(out, "lvd_10m")["clip_id"])
    assert current_version(out, "lvd_f") is None


def test_validate_passes_then_fails_listing_expectations(
    app: typer.Typer, lvd_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "val"
    ok = invoke(app, "validate", "--table", lvd_uri, "--out", str(out))
    assert ok.exit_code == 0, ok.output
    assert "all" in ok.output and json.loads((out / "lvd_validation.json").read_text())["success"] is True

    broken = synthetic_lvd_table(50, seed=1)
    broken.loc[0, "aesthetic_score"] = 11.0
    table = str(tmp_path / "broken.parquet")
    broken.to_parquet(table)
    funnel = tmp_path / "funnel.json"
    funnel.write_text(json.dumps({"kept_fraction": 0.9, "kept_rows": 45, "input_rows": 50}))
    bad = invoke(app, "validate", "--table", table, "--funnel", str(funnel), "--out", str(out))
    assert bad.exit_code != 0
    assert isinstance(bad.exception, ValidationFailedError)
    message = str(bad.exception)
    assert "broken: 2 of" in message
    assert "expect_column_values_to_be_between(aesthetic_score)" in message
    assert "expect_column_values_to_be_between(kept_fraction) observed 0.9" in message
    report = json.loads((out / "broken_validation.json").read_text())
    assert report["success"] is False and len(report["failed"]) == 2
    assert pd.read_parquet(table).shape[0] == 50  # validate never modifies its input
