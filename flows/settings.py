"""Platform settings: one object read from `SVD_*` environment variables and optional files.

Precedence (highest first): environment variables, the stack env file written by `svd stack up`
(`<home>/stack.env`), the user settings file (`SVD_SETTINGS_FILE` or `<home>/settings.env`), defaults.

The embedded default needs no server: everything lives in a project folder (`.svd/` in the working
directory, or `SVD_HOME`): an SQLite MLflow store, local artifacts and a local Prefect home.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = ".svd"
STACK_ENV_NAME = "stack.env"


def svd_home() -> Path:
    return Path(os.environ.get("SVD_HOME", DEFAULT_HOME)).absolute()


def _env_files() -> tuple[Path, ...]:
    home = svd_home()
    user_file = Path(os.environ.get("SVD_SETTINGS_FILE", home / "settings.env"))
    # Later files win in pydantic-settings: the stack's URLs override the user's file.
    return (user_file, home / STACK_ENV_NAME)


class Settings(BaseSettings):
    """Resolved platform settings (see `svd config show`)."""

    model_config = SettingsConfigDict(env_prefix="SVD_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=svd_home)
    """Project folder for the embedded default (SQLite stores, local artifacts, stack state)."""
    tracking_uri: str = ""
    """MLflow tracking URI; empty means the embedded SQLite store `<home>/mlflow.db`."""
    registry_uri: str = ""
    """MLflow registry URI; empty means the same as tracking_uri."""
    artifact_root: str = ""
    """Where artifacts go: `file://...` or `s3://bucket/prefix`; empty means `<home>/artifacts`."""
    s3_endpoint_url: str = ""
    """S3-compatible endpoint (moto, MinIO); empty means AWS's default endpoints."""
    prefect_api_url: str = ""
    """Prefect API URL; empty means Prefect's ephemeral local server with PREFECT_HOME=<home>/prefect."""
    mlflow_db_url: SecretStr | None = None
    """Database for the stack's MLflow server (e.g. postgresql://user:pw@127.0.0.1/mlflow); None = SQLite."""
    prefect_db_url: SecretStr | None = None
    """Database for the stack's Prefect server (postgresql+asyncpg://...); None = SQLite."""
    rating_db_url: SecretStr | None = None
    """Database for the rating app's votes; None = SQLite under <home>."""
    device: str = "auto"
    """Torch device for library work: auto, cpu, cuda, cuda:N."""
    stack_host: str = "127.0.0.1"
    """Interface the local stack binds to (loopback only by design)."""
    stack_s3_port: int = 9100
    """Port of the stack's S3 (moto) server."""
    stack_mlflow_port: int = 5500
    """Port of the stack's MLflow server."""
    stack_prefect_port: int = 4400
    """Port of the stack's Prefect server."""
    buckets: tuple[str, ...] = ("svd-artifacts", "svd-data", "svd-dvc")
    """Buckets `svd stack up` creates."""

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.absolute()

    @field_validator("stack_host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not (value.startswith("127.") or value in ("localhost", "::1")):
            raise ValueError(
                f"stack_host {value!r} is not a loopback address; the local stack binds to 127.x only"
            )
        return value

    # Derived values: the embedded default fills what the user left empty.
    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def resolved_registry_uri(self) -> str:
        return self.registry_uri or self.resolved_tracking_uri

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or f"file://{self.home / 'artifacts'}"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def public_dict(self) -> dict[str, Any]:
        """Resolved settings with secrets masked (what `svd config show --json` prints)."""
        return {
            "home": str(self.home),
            "tracking_uri": mask_url(self.resolved_tracking_uri),
            "registry_uri": mask_url(self.resolved_registry_uri),
            "artifact_root": self.resolved_artifact_root,
            "s3_endpoint_url": self.s3_endpoint_url or None,
            "prefect_api_url": self.prefect_api_url or None,
            "mlflow_db_url": _mask_secret(self.mlflow_db_url),
            "prefect_db_url": _mask_secret(self.prefect_db_url),
            "rating_db_url": _mask_secret(self.rating_db_url),
            "device": self.device,
            "aws_access_key_id": "****" if os.environ.get("AWS_ACCESS_KEY_ID") else None,
            "aws_profile": os.environ.get("AWS_PROFILE"),
            "stack": {
                "host": self.stack_host,
                "s3_port": self.stack_s3_port,
                "mlflow_port": self.stack_mlflow_port,
                "prefect_port": self.stack_prefect_port,
            },
        }


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]+:)(?P<pw>[^@]+)(?P<tail>@)")


def mask_url(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:****@h/db`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}****{m['tail']}", url)


def _mask_secret(value: SecretStr | None) -> str | None:
    return mask_url(value.get_secret_value()) if value is not None else None


def load_settings() -> Settings:
    """Read settings now (no caching: the stack env file may have changed)."""
    from pydantic import ValidationError

    from svd_core.config import format_validation_error
    from svd_core.errors import ConfigError

    files = [p for p in _env_files() if p.is_file()]
    try:
        return Settings(_env_file=files or None)  # type: ignore[call-arg]
    except ValidationError as exc:
        sources = ", ".join(str(p) for p in files) or "no settings file"
        fields = ", ".join(f"SVD_{str(e['loc'][0]).upper()}" for e in exc.errors() if e["loc"])
        message = format_validation_error(exc, f"settings (from the environment and {sources})")
        raise ConfigError(f"{message} (fix {fields})") from None


@cache
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()


def settings_json(s: Settings) -> str:
    return json.dumps(s.public_dict(), indent=2)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a simple KEY=VALUE env file (the format `svd stack up` writes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def activate(s: Settings) -> None:
    """Export the settings to the libraries that read their own env vars (MLflow, Prefect, boto3).

    Values already set in the environment win, so a user can always override one piece.
    """
    for key, value in read_env_file(s.home / STACK_ENV_NAME).items():
        if not key.startswith("SVD_"):  # AWS_* credentials for the local stack's S3
            os.environ.setdefault(key, value)
    defaults = {
        "MLFLOW_TRACKING_URI": s.resolved_tracking_uri,
        "MLFLOW_REGISTRY_URI": s.resolved_registry_uri,
        "PREFECT_HOME": str(s.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The ephemeral server's 20 s default is too short on a loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    }
    if s.prefect_api_url:
        defaults["PREFECT_API_URL"] = s.prefect_api_url
    if s.s3_endpoint_url:
        defaults["MLFLOW_S3_ENDPOINT_URL"] = s.s3_endpoint_url
        defaults["AWS_ENDPOINT_URL_S3"] = s.s3_endpoint_url
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    s.home.mkdir(parents=True, exist_ok=True)
