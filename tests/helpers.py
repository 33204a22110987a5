"""Helpers shared by tests: free ports, the real `svd` CLI in a subprocess, stack env, PostgreSQL probe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stack_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        "SVD_HOME": str(home),
        "SVD_STACK_S3_PORT": str(free_port()),
        "SVD_STACK_MLFLOW_PORT": str(free_port()),
        "SVD_STACK_PREFECT_PORT": str(free_port()),
    }
    env.update(extra)
    return env


def svd_cli(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
    cwd: Path | None = None,
):
    """Run the real `svd` entry point in a subprocess (as a user would), from `cwd` (default: the repo)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SVD_", "MLFLOW_", "PREFECT_API"))}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli.main", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"svd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class RunningStack:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home
        self.env = env
        self.urls = dict(
            line.split("=", 1)
            for line in (home / "stack.env").read_text().splitlines()
            if line and not line.startswith("#")
        )

    def client_env(self) -> dict[str, str]:
        """Environment for a client process of this stack."""
        return {**self.env, **self.urls}


def postgres_available() -> str | None:
    """Reason to skip, or None when this machine's PostgreSQL answers on 127.0.0.1:5432."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 not installed"
    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except Exception as exc:
        return f"no PostgreSQL on 127.0.0.1:5432 ({exc.__class__.__name__})"
    return None


CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium, driven by Playwright through executable_path (no browser download)."""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_marks() -> list:  # type: ignore[type-arg]
    """Marks of a browser test module: tiers plus a skip with the install command where chromium is absent."""
    import pytest

    return [
        pytest.mark.browser,
        pytest.mark.integration,
        pytest.mark.skipif(
            not os.path.exists(CHROMIUM),
            reason=f"{CHROMIUM} missing: apt-get install -y chromium chromium-driver (scripts/install_browser.sh)",
        ),
    ]


def assert_close(want: object, got: object, path: str = "") -> None:
    """Nested dicts equal, floats within 1e-9 relative (metrics the table engines compute two ways)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(want) == set(got), path
        for key in want:
            assert_close(want[key], got[key], f"{path}.{key}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9), path
    else:
        assert got == want, path
