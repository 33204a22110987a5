"""Platform settings: one object resolved from the tools' own settings, `SVD_*` overrides and defaults.

Precedence for each value (highest first; `svd config show` prints which one applied):

1. `SVD_<NAME>` in the environment: an override on top of everything;
2. the tool's own environment variable: `MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI`, `PREFECT_API_URL`,
   `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / `MLFLOW_S3_ENDPOINT_URL`;
3. the stack env file written by `svd stack up` (`<home>/stack.env`), then the user settings file
   (`SVD_SETTINGS_FILE` or `<home>/settings.env`), both read with python-dotenv;
4. the tool's own configuration file: the active Prefect profile's `PREFECT_API_URL` (Prefect's
   `profiles.toml`; boto3 reads `~/.aws/config` itself when no endpoint is set anywhere);
5. the embedded default, which needs no server: an SQLite MLflow store, local artifacts and Prefect's
   ephemeral server, all in the project folder (`.svd/` in the working directory, or `SVD_HOME`).

Reading settings creates nothing: the project folder is made by the first command that writes to it.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_HOME = ".svd"
STACK_ENV_NAME = "stack.env"
DEFAULT_SOURCE = "default"

TOOL_ENV: dict[str, tuple[str, ...]] = {
    "tracking_uri": ("MLFLOW_TRACKING_URI",),
    "registry_uri": ("MLFLOW_REGISTRY_URI",),
    "prefect_api_url": ("PREFECT_API_URL",),
    "s3_endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"),
}
"""The tools' own environment variables for the settings they share with svd (rank 2 above)."""
_EXPORTED: dict[str, str] = {}
"""What `activate` put into os.environ: not a user's setting, so later resolutions look past it."""
EXPORTED_ENV = "SVD_EXPORTED_ENV"
"""JSON copy of `_EXPORTED` in os.environ: child processes (`svd` subcommands, workers) inherit the
variables svd exported, and must also know they were svd's, not the user's, or a stale value from an
earlier project folder in the same parent process would win over their own resolution."""


def _exported() -> dict[str, str]:
    try:
        inherited = json.loads(os.environ.get(EXPORTED_ENV) or "{}")
    except ValueError:
        inherited = {}
    return {**(inherited if isinstance(inherited, dict) else {}), **_EXPORTED}


def _user_env(key: str) -> str | None:
    value = os.environ.get(key)
    return None if value is None or _exported().get(key) == value else value


def svd_home() -> Path:
    return Path(os.environ.get("SVD_HOME", DEFAULT_HOME)).absolute()


def _env_files() -> tuple[Path, ...]:
    """The settings files, highest precedence first: the stack's URLs override the user's file."""
    home = svd_home()
    user_file = Path(os.environ.get("SVD_SETTINGS_FILE", home / "settings.env"))
    return (home / STACK_ENV_NAME, user_file)


class Settings(BaseSettings):
    """Resolved platform settings (see `svd config show`); built by `load_settings`."""

    # Values are resolved by `load_settings` (with their sources); the model only validates them.
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
    """S3-compatible endpoint (moto, MinIO); empty means boto3's own chain (AWS config, AWS endpoints)."""
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
    """Port of the stack's S3 server."""
    stack_mlflow_port: int = 5500
    """Port of the stack's MLflow server."""
    stack_prefect_port: int = 4400
    """Port of the stack's Prefect server."""
    buckets: tuple[str, ...] = ("svd-artifacts", "svd-data", "svd-dvc")
    """Buckets `svd stack up` creates."""
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)
    """Where each value came from (`env SVD_X`, `env MLFLOW_TRACKING_URI`, `file PATH`, `default`)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # load_settings resolves every source itself, with provenance

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

    # Derived values: the embedded default fills what nothing set.
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

    @property
    def embedded_tracking(self) -> bool:
        """True when MLflow runs on the embedded SQLite store under `home` (nothing set a URI)."""
        return not self.tracking_uri

    def source(self, name: str) -> str:
        return self.sources.get(name, DEFAULT_SOURCE)

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
            "sources": self.display_sources(),
        }

    def display_sources(self) -> dict[str, str]:
        """Where each shown value came from, including what the embedded default means for it."""
        out = {name: self.source(name) for name in type(self).model_fields if name != "sources"}
        if self.source("registry_uri") == DEFAULT_SOURCE and self.tracking_uri:
            out["registry_uri"] = f"same as tracking_uri ({self.source('tracking_uri')})"
        if not self.s3_endpoint_url:
            out["s3_endpoint_url"] = "default (boto3's own chain: AWS_PROFILE, ~/.aws/config)"
        if not self.prefect_api_url:
            out["prefect_api_url"] = "default (Prefect's ephemeral server in <home>/prefect)"
        return out


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]+:)(?P<pw>[^@]+)(?P<tail>@)")


def mask_url(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:****@h/db`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}****{m['tail']}", url)


def _mask_secret(value: SecretStr | None) -> str | None:
    return mask_url(value.get_secret_value()) if value is not None else None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE pairs of an env file (python-dotenv's parser); empty when the file does not exist."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def prefect_profile_api_url() -> tuple[str, str] | None:
    """(PREFECT_API_URL, source) of the active Prefect profile, read the way Prefect finds it.

    Reads the TOML directly (importing prefect takes seconds): `PREFECT_PROFILES_PATH`, else
    `$PREFECT_HOME/profiles.toml`, else `~/.prefect/profiles.toml`; the active profile is
    `PREFECT_PROFILE` or the file's `active` key.
    """
    path = Path(
        os.environ.get("PREFECT_PROFILES_PATH")
        or Path(_user_env("PREFECT_HOME") or Path.home() / ".prefect") / "profiles.toml"
    ).expanduser()
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError):
        return None
    name = os.environ.get("PREFECT_PROFILE") or data.get("active")
    url = data.get("profiles", {}).get(name, {}).get("PREFECT_API_URL") if name else None
    return (str(url), f"prefect profile {name!r} ({path})") if url else None


def _resolve() -> tuple[dict[str, Any], dict[str, str]]:
    """Every value with its source, by the precedence in the module docstring."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    files = [(p, read_env_file(p)) for p in _env_files()]
    for name in Settings.model_fields:
        if name == "sources":
            continue
        key = f"SVD_{name.upper()}"
        candidates: list[tuple[str | None, str]] = [(os.environ.get(key), f"env {key}")]
        candidates += [(_user_env(tool), f"env {tool}") for tool in TOOL_ENV.get(name, ())]
        candidates += [(data.get(key), f"file {path}") for path, data in files]
        for value, source in candidates:
            if value:  # an empty variable counts as unset
                values[name], sources[name] = value, source
                break
    if "prefect_api_url" not in values and (profile := prefect_profile_api_url()):
        values["prefect_api_url"], sources["prefect_api_url"] = profile
    if "home" not in values:
        sources["home"] = f"default ({DEFAULT_HOME} in the working directory)"
    return values, sources


def load_settings() -> Settings:
    """Read settings now (no caching: the stack env file may have changed). Creates nothing."""
    from pydantic import ValidationError

    from svd_core.config import format_validation_error
    from svd_core.errors import ConfigError

    values, sources = _resolve()
    try:
        return Settings(**values, sources=sources)
    except ValidationError as exc:
        bad = [str(e["loc"][0]) for e in exc.errors() if e["loc"]]
        where = ", ".join(sorted({sources.get(name, name) for name in bad}))
        fields = ", ".join(f"SVD_{name.upper()}" for name in bad)
        message = format_validation_error(exc, f"settings (from {where})")
        raise ConfigError(f"{message} (fix {fields})") from None


@cache
def settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()


def settings_json(s: Settings) -> str:
    return json.dumps(s.public_dict(), indent=2)


def activate(s: Settings) -> None:
    """Export the resolved settings to the libraries that read their own env vars (MLflow, Prefect, boto3).

    Only what svd resolved is exported; a Prefect profile is left to Prefect (PREFECT_HOME stays unset so
    the profile and its other settings, an API key for example, stay visible). Creates nothing.
    """
    for key, value in read_env_file(s.home / STACK_ENV_NAME).items():
        if not key.startswith("SVD_"):  # AWS_* credentials for the local stack's S3
            os.environ.setdefault(key, value)
    exports = {
        "MLFLOW_TRACKING_URI": s.resolved_tracking_uri,
        "MLFLOW_REGISTRY_URI": s.resolved_registry_uri,
    }
    if s.s3_endpoint_url:
        exports["MLFLOW_S3_ENDPOINT_URL"] = s.s3_endpoint_url
        exports["AWS_ENDPOINT_URL_S3"] = s.s3_endpoint_url
    if s.prefect_api_url and not s.source("prefect_api_url").startswith("prefect profile"):
        exports["PREFECT_API_URL"] = s.prefect_api_url
    for key, value in exports.items():  # resolved above, with the tools' own variables in the precedence
        if os.environ.get(key) != value:
            os.environ[key] = _EXPORTED[key] = value
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The ephemeral server's 20 s default is too short on a loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if not s.prefect_api_url:  # the embedded default: Prefect's ephemeral server keeps its DB in <home>
        defaults["PREFECT_HOME"] = str(s.prefect_home)
    for key, value in defaults.items():
        if key not in os.environ:
            os.environ[key] = _EXPORTED[key] = value
    os.environ[EXPORTED_ENV] = json.dumps(_exported(), sort_keys=True)


def ensure_home(s: Settings) -> Path:
    """Create the project folder (for the embedded stores); called by commands that write."""
    s.home.mkdir(parents=True, exist_ok=True)
    return s.home
