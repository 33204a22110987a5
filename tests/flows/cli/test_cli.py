"""The `svd` entry point: help everywhere, settings output, one-line errors with non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import svd_cli


def test_config_show_json_resolves_embedded_default_and_masks_secrets(tmp_path: Path) -> None:
    env = {
        "SVD_HOME": str(tmp_path / "h"),
        "SVD_MLFLOW_DB_URL": "postgresql://alice:s3cret@127.0.0.1:5432/mlflow",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    }
    out = svd_cli("config", "show", "--json", env=env).stdout
    data = json.loads(out)
    assert data["tracking_uri"] == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert data["artifact_root"] == f"file://{tmp_path / 'h' / 'artifacts'}"
    assert data["s3_endpoint_url"] is None and data["prefect_api_url"] is None
    assert data["mlflow_db_url"] == "postgresql://alice:****@127.0.0.1:5432/mlflow"
    assert "s3cret" not in out and "AKIAEXAMPLEKEY" not in out


def test_settings_file_and_env_precedence(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.env").write_text("SVD_ARTIFACT_ROOT=s3://team-bucket/svd\nSVD_DEVICE=cpu\n")
    env = {"SVD_HOME": str(home), "SVD_DEVICE": "cuda"}
    data = json.loads(svd_cli("config", "show", "--json", env=env).stdout)
    assert data["artifact_root"] == "s3://team-bucket/svd"
    assert data["device"] == "cuda"  # the environment wins over the file


@pytest.mark.parametrize(
    "args", [["--help"], ["stack", "--help"], ["stack", "up", "--help"], ["config", "show", "--help"]]
)
def test_help_everywhere(args: list[str]) -> None:
    assert "Usage" in svd_cli(*args).stdout


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    proc = svd_cli(
        "config", "validate", str(tmp_path / "missing.yaml"), check=False, env={"SVD_HOME": str(tmp_path)}
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config file") and "Traceback" not in proc.stderr


def test_non_loopback_stack_host_is_refused(tmp_path: Path) -> None:
    proc = svd_cli(
        "config", "show", check=False, env={"SVD_HOME": str(tmp_path), "SVD_STACK_HOST": "0.0.0.0"}
    )
    assert proc.returncode != 0
    assert "not a loopback address" in proc.stderr
