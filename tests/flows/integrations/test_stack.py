"""The local stack: S3 + MLflow (artifacts proxied to S3) + Prefect, up/status/down via the real CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, RunningStack, _stack_env, svd_cli

pytestmark = pytest.mark.integration


def _client(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env={**_base_env(), **env},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _base_env() -> dict[str, str]:
    import os

    return {
        k: v for k, v in os.environ.items() if not k.startswith(("SVD_", "MLFLOW_", "PREFECT_API", "AWS_"))
    }


MLFLOW_CLIENT = """
    import os, mlflow, boto3, tempfile, pathlib
    mlflow.set_tracking_uri(os.environ["SVD_TRACKING_URI"])
    mlflow.set_experiment("stack-test")
    with mlflow.start_run() as run:
        p = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
        p.write_text("artifact through the tracking server")
        mlflow.log_artifact(str(p))
        mlflow.log_metric("x", 1.0)
    s3 = boto3.client("s3", endpoint_url=os.environ["SVD_S3_ENDPOINT_URL"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="svd-artifacts").get("Contents", [])]
    key = next(k for k in keys if k.endswith(run.info.run_id + "/artifacts/hello.txt"))
    print(s3.get_object(Bucket="svd-artifacts", Key=key)["Body"].read().decode())
"""

PREFECT_CLIENT = """
    import asyncio
    from prefect import flow, get_client

    @flow(name="stack-smoke")
    def smoke(x: int) -> int:
        return x + 1

    assert smoke(41) == 42
    async def runs():
        async with get_client() as client:
            return await client.read_flow_runs()
    print(sorted({r.state.type.value for r in asyncio.run(runs()) if r.name}))
"""


def _check_stack(home: Path, env: dict[str, str]) -> None:
    urls = RunningStack(home, env).urls
    client_env = {
        **urls,
        "PREFECT_API_URL": urls["SVD_PREFECT_API_URL"],
        "PREFECT_HOME": str(home / "client"),
    }
    assert (
        _client(MLFLOW_CLIENT, client_env).strip().splitlines()[-1] == "artifact through the tracking server"
    )
    assert "COMPLETED" in _client(PREFECT_CLIENT, client_env)
    status = json.loads(svd_cli("stack", "status", "--json", env=env).stdout)
    assert {s["name"]: s["state"] for s in status} == {
        "s3": "running",
        "mlflow": "running",
        "prefect": "running",
    }


def _pids(home: Path) -> list[int]:
    return [int(p.read_text()) for p in (home / "stack").glob("*.pid")]


def _group_alive(pgids: list[int]) -> list[int]:
    import os

    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in pgids and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def _up_check_down(home: Path, env: dict[str, str]) -> None:
    svd_cli("stack", "up", env=env)
    pgids = _pids(home)
    try:
        assert len(pgids) == 3
        _check_stack(home, env)
    finally:
        out = svd_cli("stack", "down", env=env).stdout
    assert "stopped" in out
    assert _group_alive(pgids) == [], "svd stack down left processes running"
    assert not (home / "stack.env").exists()


def test_stack_sqlite_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _up_check_down(home, _stack_env(home))


def test_stack_postgres_backends(tmp_path: Path, postgres_db) -> None:
    home = tmp_path / "home"
    env = _stack_env(
        home,
        SVD_MLFLOW_DB_URL=f"postgresql://postgres@127.0.0.1:5432/{postgres_db()}",
        SVD_PREFECT_DB_URL=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{postgres_db()}",
    )
    _up_check_down(home, env)


def test_taken_port_gives_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _stack_env(home)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["SVD_STACK_MLFLOW_PORT"])))
        blocker.listen()
        proc = svd_cli("stack", "up", env=env, check=False)
    assert proc.returncode == 2
    assert f"port {env['SVD_STACK_MLFLOW_PORT']} for mlflow" in proc.stderr
    assert "SVD_STACK_MLFLOW_PORT" in proc.stderr
    assert _pids(home) == []


def test_down_when_nothing_runs(tmp_path: Path) -> None:
    env = _stack_env(tmp_path / "home")
    assert "nothing was running" in svd_cli("stack", "down", env=env).stdout


REGISTER_ONE = """
import mlflow, pathlib
from flows.integrations import registry, tracking

class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input

folder = pathlib.Path(__import__("tempfile").mkdtemp()) / "pipe"
folder.mkdir()
(folder / "model_index.json").write_text('{"kept": true}')
with tracking.run("persist-test", "stage"):
    print(registry.register_pipeline(folder, "kept-model", {"svd.stage": "finetune"}, Echo()).uri)
"""

FLOW_RUN_NAMES = """
import asyncio
from prefect import get_client

async def runs():
    async with get_client() as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        return sorted({flows[r.flow_id] for r in await client.read_flow_runs()})
print(asyncio.run(runs()))
"""


@pytest.mark.timeout(1800)  # two stack starts, a flow run and a registration: minutes on a loaded machine
def test_down_up_keeps_models_and_a_prefect_profile_gets_the_flow_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _stack_env(home)
    svd_cli("stack", "up", env=env)
    try:
        urls = RunningStack(home, env).urls
        # A user whose only setting is a Prefect profile pointing at the server: svd's flows run there.
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            f'active = "team"\n[profiles.team]\nPREFECT_API_URL = "{urls["SVD_PREFECT_API_URL"]}"\n'
        )
        user = {"SVD_HOME": str(tmp_path / "user-home"), "PREFECT_PROFILES_PATH": str(profiles)}
        orbits = ["--objects", "1", "--views", "2", "--size", "16", "--supersample", "1"]
        svd_cli(
            "data", "orbits", "--out", str(tmp_path / "orbits"), *orbits, "--prefect", env=user, timeout=900
        )
        server = {"PREFECT_API_URL": urls["SVD_PREFECT_API_URL"], "PREFECT_HOME": str(tmp_path / "client")}
        assert "make_orbits" in _client(FLOW_RUN_NAMES, server)
        assert not (tmp_path / "user-home" / "prefect").exists(), "no throwaway local Prefect server"

        # A registered model's artifacts (in the stack's S3) survive `svd stack down && svd stack up`.
        assert "models:/kept-model/1" in _client(REGISTER_ONE, env).split()
        svd_cli("stack", "down", env=env)
        assert (home / "stack" / "s3-state.pickle").is_file()
        svd_cli("stack", "up", env=env)
        svd_cli("models", "export", "models:/kept-model/1", "--out", str(tmp_path / "exported"), env=env)
        assert (tmp_path / "exported" / "model_index.json").read_text() == '{"kept": true}'
    finally:
        pgids = _pids(home)
        svd_cli("stack", "down", env=env, check=False)
    assert _group_alive(pgids) == [], "svd stack down left processes running"
