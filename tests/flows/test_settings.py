"""Settings: the tools' own settings win over the embedded default, SVD_* override them, each value says
where it came from, and reading settings creates nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import settings as settings_mod
from flows.settings import activate, load_settings

TOOL_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_PROFILE",
    "PREFECT_PROFILES_PATH",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean environment (no SVD_*, no tool variables, no user Prefect profile); os.environ is restored
    afterwards because `activate` writes to it directly."""
    saved, exported = dict(os.environ), dict(settings_mod._EXPORTED)
    for key in list(os.environ):
        if key.startswith("SVD_") or key in TOOL_VARS:
            monkeypatch.delenv(key)
    monkeypatch.setenv("SVD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
    settings_mod._EXPORTED.clear()
    yield tmp_path / "home"
    os.environ.clear()
    os.environ.update(saved)
    settings_mod._EXPORTED.clear()
    settings_mod._EXPORTED.update(exported)


def test_embedded_default_only_when_nothing_is_set(home: Path) -> None:
    s = load_settings()
    assert s.resolved_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert s.source("tracking_uri") == "default" and s.embedded_tracking
    activate(s)
    assert os.environ["MLFLOW_TRACKING_URI"] == s.resolved_tracking_uri
    assert os.environ["PREFECT_HOME"] == str(home / "prefect")  # the ephemeral server's database
    assert "PREFECT_API_URL" not in os.environ
    assert not home.exists(), "reading and activating settings must create nothing"


def test_mlflow_variables_win_and_svd_overrides_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team:5000")
    s = load_settings()
    assert s.resolved_tracking_uri == "http://mlflow.team:5000" and not s.embedded_tracking
    assert s.source("tracking_uri") == "env MLFLOW_TRACKING_URI"
    assert s.resolved_registry_uri == "http://mlflow.team:5000"
    assert s.display_sources()["registry_uri"] == "same as tracking_uri (env MLFLOW_TRACKING_URI)"

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://registry.team:5000")
    assert load_settings().resolved_registry_uri == "http://registry.team:5000"

    monkeypatch.setenv("SVD_TRACKING_URI", "http://override:1")
    s = load_settings()
    assert (
        s.resolved_tracking_uri == "http://override:1" and s.source("tracking_uri") == "env SVD_TRACKING_URI"
    )
    activate(s)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://override:1"  # MLflow itself now logs there
    # After activate, a later read still reports where the value came from, not activate's export.
    assert load_settings().source("tracking_uri") == "env SVD_TRACKING_URI"


def test_settings_files_rank_below_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "settings.env").write_text('export SVD_TRACKING_URI="http://from-file:1"\nSVD_DEVICE=cpu\n')
    s = load_settings()
    assert s.tracking_uri == "http://from-file:1" and s.device == "cpu"  # python-dotenv: export, quotes
    assert s.source("device") == f"file {home / 'settings.env'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tool-env:2")
    assert load_settings().tracking_uri == "http://tool-env:2"
    (home / "stack.env").write_text("SVD_DEVICE=cuda\n")
    assert load_settings().device == "cuda"  # `svd stack up`'s file wins over the user's file


def test_active_prefect_profile_is_used_and_left_visible(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.team:4200/api"\n'
        'PREFECT_API_KEY = "pnu_secret"\n[profiles.other]\nPREFECT_API_URL = "http://other:1/api"\n'
    )
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(profiles))
    s = load_settings()
    assert s.prefect_api_url == "http://prefect.team:4200/api"
    assert s.source("prefect_api_url") == f"prefect profile 'team' ({profiles})"
    activate(s)
    # Nothing hides the profile: no PREFECT_HOME, no exported URL; Prefect reads its own profile.
    assert "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ

    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert load_settings().prefect_api_url == "http://other:1/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://env:2/api")
    assert load_settings().source("prefect_api_url") == "env PREFECT_API_URL"


def test_aws_endpoint_variables_are_honoured(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().s3_endpoint_url == ""  # boto3's own chain decides
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3.team:9000")
    s = load_settings()
    assert (
        s.s3_endpoint_url == "http://s3.team:9000"
        and s.source("s3_endpoint_url") == "env AWS_ENDPOINT_URL_S3"
    )
    activate(s)
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://s3.team:9000"
