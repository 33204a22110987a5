"""Shared fixtures: an isolated SVD home per test, the local stack, a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows import settings as settings_mod
from tests.helpers import RunningStack, _stack_env, postgres_available, svd_cli

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Tiny models on a 2-core machine: one BLAS thread per process (pytest-xdist runs two workers, and rank
# subprocesses inherit this); oversubscribed threads made tiny forwards ~50x slower under load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="module", autouse=True)
def _process_settings_restored_per_module() -> Iterator[None]:
    """Each test module starts from the worker's own environment and leaves it as it found it.

    `flows.settings.activate` and MLflow's `set_tracking_uri` write the resolved URIs into os.environ on
    purpose (child processes inherit them). Under pytest-xdist several modules share one worker process,
    so without this a module's tracking store leaked into the next module as if the user had set
    MLFLOW_TRACKING_URI (the tools' variables win over svd's defaults), and its models landed in another
    module's registry.
    """

    environ, exported = dict(os.environ), dict(settings_mod._EXPORTED)
    yield
    if (mlflow := sys.modules.get("mlflow")) is not None:  # MLflow caches the URIs in module globals too
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.clear()
    os.environ.update(environ)
    settings_mod._EXPORTED.clear()
    settings_mod._EXPORTED.update(exported)


@pytest.fixture
def svd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SVD_HOME with no stack env, so tests never see the developer's .svd/."""
    home = tmp_path / "svd_home"
    monkeypatch.setenv("SVD_HOME", str(home))
    for key in list(os.environ):
        if key.startswith("SVD_") and key not in ("SVD_HOME", settings_mod.EXPORTED_ENV):
            monkeypatch.delenv(key)
    return home


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The local stack (SQLite backends), started once per test session via the real CLI."""
    home = tmp_path_factory.mktemp("stack_home")
    env = _stack_env(home)
    svd_cli("stack", "up", env=env)
    try:
        yield RunningStack(home, env)
    finally:
        svd_cli("stack", "down", env=env, check=False)


@pytest.fixture
def postgres_db() -> Iterator[Callable[[], str]]:
    """Factory of throwaway PostgreSQL databases (dropped afterwards); skips where no server runs."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    made: list[str] = []

    def make() -> str:
        name = f"svd_test_{uuid.uuid4().hex[:10]}"
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    try:
        yield make
    finally:
        cur = conn.cursor()
        for name in made:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()
