"""The local stack: S3 (moto server), MLflow tracking server and Prefect server on loopback.

`up` starts what is not running, waits for each health check, creates the buckets and writes the URLs to
`<home>/stack.env`, which every later `svd` command reads. `down` stops exactly the processes `up`
started (one process group per service, recorded in pid files) and checks that nothing is left.

Everything persists under `<home>/stack/` across `down`/`up`: the MLflow and Prefect databases, and the
S3 data. moto keeps objects in memory, so the stack runs it through `serve_s3` below, which loads the
buckets from `<home>/stack/s3-state.pickle` at start and saves them there when `down` stops it (moto's
objects are picklable; the state file is the stack's own, never shared). A crash of the S3 process loses
what was written since the last `up`; MinIO or a real bucket is the choice for data that must not.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from flows.settings import STACK_ENV_NAME, Settings, mask_url
from svd_core.errors import SvdError

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; these are written to stack.env so clients sign requests."""


class StackError(SvdError):
    """A stack service cannot start, is unhealthy, or cannot be stopped."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    command: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 180.0  # MLflow and Prefect import for a minute on a loaded 2-core machine
    port_setting: str = ""
    stop_timeout_s: float = 15.0

    @property
    def url(self) -> str:
        """Base URL clients use (the health URL without its health path)."""
        return self.health_url.split("/moto-api")[0].removesuffix("/health")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | stopped | unhealthy | stale
    pid: int | None
    url: str
    detail: str = ""


def _python_bin(name: str) -> str:
    """Console script next to the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def stack_dir(s: Settings) -> Path:
    return s.home / "stack"


def s3_state_file(s: Settings) -> Path:
    """Where the stack's S3 server keeps its buckets between `down` and `up`."""
    return stack_dir(s) / "s3-state.pickle"


def plan_services(s: Settings) -> list[Service]:
    """The three services with their commands, derived from settings (ports, database URLs)."""
    host, state = s.stack_host, stack_dir(s)
    s3_url = f"http://{host}:{s.stack_s3_port}"
    mlflow_db = s.mlflow_db_url.get_secret_value() if s.mlflow_db_url else f"sqlite:///{state / 'mlflow.db'}"
    prefect_env = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": (
            s.prefect_db_url.get_secret_value()
            if s.prefect_db_url
            else f"sqlite+aiosqlite:///{state / 'prefect' / 'prefect.db'}"
        ),
    }
    return [
        Service(
            "s3",
            s.stack_s3_port,
            [
                sys.executable,
                "-m",
                "flows.integrations.stack",
                "--host",
                host,
                "--port",
                str(s.stack_s3_port),
                "--state",
                str(s3_state_file(s)),
            ],
            f"{s3_url}/moto-api/",
            port_setting="SVD_STACK_S3_PORT",
            stop_timeout_s=300.0,  # saving the S3 state on SIGTERM takes as long as the data is large
        ),
        Service(
            "mlflow",
            s.stack_mlflow_port,
            [
                _python_bin("mlflow"),
                "server",
                "--host",
                host,
                "--port",
                str(s.stack_mlflow_port),
                "--backend-store-uri",
                mlflow_db,
                "--serve-artifacts",
                "--artifacts-destination",
                f"s3://{s.buckets[0]}/mlflow",
                "--workers",
                "1",
            ],
            f"http://{host}:{s.stack_mlflow_port}/health",
            env={"MLFLOW_S3_ENDPOINT_URL": s3_url, **S3_CREDENTIALS},
            port_setting="SVD_STACK_MLFLOW_PORT",
        ),
        Service(
            "prefect",
            s.stack_prefect_port,
            [_python_bin("prefect"), "server", "start", "--host", host, "--port", str(s.stack_prefect_port)],
            f"http://{host}:{s.stack_prefect_port}/api/health",
            env=prefect_env,
            port_setting="SVD_STACK_PREFECT_PORT",
        ),
    ]


def stack_urls(s: Settings) -> dict[str, str]:
    host = s.stack_host
    return {
        "SVD_S3_ENDPOINT_URL": f"http://{host}:{s.stack_s3_port}",
        "SVD_TRACKING_URI": f"http://{host}:{s.stack_mlflow_port}",
        "SVD_PREFECT_API_URL": f"http://{host}:{s.stack_prefect_port}/api",
        "SVD_ARTIFACT_ROOT": f"s3://{s.buckets[0]}",
    }


# --- process bookkeeping ------------------------------------------------------------------------
def _pid_file(s: Settings, name: str) -> Path:
    return stack_dir(s) / f"{name}.pid"


def _log_file(s: Settings, name: str) -> Path:
    return stack_dir(s) / "logs" / f"{name}.log"


def _read_pid(s: Settings, name: str) -> int | None:
    path = _pid_file(s, name)
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- public API ---------------------------------------------------------------------------------
def status(s: Settings) -> list[ServiceStatus]:
    out = []
    for svc in plan_services(s):
        pid = _read_pid(s, svc.name)
        url = svc.url
        if pid is None:
            out.append(ServiceStatus(svc.name, "stopped", None, url))
        elif not _alive(pid):
            out.append(ServiceStatus(svc.name, "stale", pid, url, "pid file left by a process that died"))
        elif _healthy(svc.health_url):
            out.append(ServiceStatus(svc.name, "running", pid, url))
        else:
            out.append(
                ServiceStatus(svc.name, "unhealthy", pid, url, f"health check failed: {svc.health_url}")
            )
    return out


def up(s: Settings, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Start every service that is not running; return the URLs written to the stack env file."""
    say = progress or (lambda msg: None)
    services = plan_services(s)
    running = {st.name for st in status(s) if st.state == "running"}
    for svc in services:  # check every port first: fail before starting anything
        if svc.name not in running and not _port_free(s.stack_host, svc.port):
            raise StackError(
                f"port {svc.port} for {svc.name} on {s.stack_host} is taken by another process; "
                f"stop it or choose another port ({svc.port_setting}=N or --{svc.name}-port N)"
            )
    (stack_dir(s) / "logs").mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    try:
        for svc in services:
            if svc.name in running:
                say(f"{svc.name}: already running")
                continue
            say(f"{svc.name}: starting on {s.stack_host}:{svc.port}")
            _start(s, svc)
            started.append(svc.name)
            _wait_healthy(s, svc)
            if svc.name == "s3":
                _create_buckets(s)
            say(f"{svc.name}: healthy")
    except BaseException:
        for name in started:  # leave nothing half-up behind
            _stop(s, name)
        raise
    urls = stack_urls(s)
    _write_env_file(s, urls)
    return urls


def _start(s: Settings, svc: Service) -> None:
    env = {**os.environ, **svc.env, "PYTHONUNBUFFERED": "1"}
    if svc.name == "prefect":
        Path(svc.env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
        env.pop("PREFECT_API_URL", None)
    log = _log_file(s, svc.name).open("ab")
    proc = subprocess.Popen(  # own session: `down` kills the whole group (workers included)
        svc.command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    _pid_file(s, svc.name).write_text(str(proc.pid))


def _wait_healthy(s: Settings, svc: Service) -> None:
    deadline = time.monotonic() + svc.startup_timeout_s
    pid = _read_pid(s, svc.name)
    while time.monotonic() < deadline:
        if _healthy(svc.health_url):
            return
        if not _alive(pid):
            raise StackError(
                f"{svc.name} exited during start-up; last log lines ({_log_file(s, svc.name)}):\n"
                + mask_url(_tail(_log_file(s, svc.name)))
            )
        time.sleep(0.5)
    raise StackError(
        f"{svc.name} not healthy after {svc.startup_timeout_s:.0f}s at {svc.health_url}; see {_log_file(s, svc.name)}"
    )


def _create_buckets(s: Settings) -> None:
    from flows.integrations.s3 import S3Store

    for key, value in S3_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    store = S3Store(endpoint_url=stack_urls(s)["SVD_S3_ENDPOINT_URL"])
    for bucket in s.buckets:
        store.ensure_bucket(bucket)


def _write_env_file(s: Settings, urls: dict[str, str]) -> None:
    lines = ["# Written by `svd stack up`; removed by `svd stack down`. Read by every svd command."]
    lines += [f"{k}={v}" for k, v in {**urls, **S3_CREDENTIALS}.items()]
    tmp = s.home / f".{STACK_ENV_NAME}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, s.home / STACK_ENV_NAME)


def _stop(s: Settings, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the service's whole process group; True if something was running."""
    pid = _read_pid(s, name)
    _pid_file(s, name).unlink(missing_ok=True)
    if not _alive(pid):
        return False
    assert pid is not None
    members = _group_members(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        _, alive = psutil.wait_procs(members, timeout=timeout_s if sig == signal.SIGTERM else 5)
        if not alive:
            break
        members = alive
    left = [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if left:
        raise StackError(f"{name}: processes {[p.pid for p in left]} did not stop; kill them by hand")
    return True


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return members


def down(s: Settings) -> list[str]:
    """Stop the stack's services (in reverse start order); return the names that were running."""
    stopped = [
        svc.name for svc in reversed(plan_services(s)) if _stop(s, svc.name, timeout_s=svc.stop_timeout_s)
    ]
    (s.home / STACK_ENV_NAME).unlink(missing_ok=True)
    return stopped


# --- the stack's S3 server: moto with its buckets saved across restarts --------------------------------
def serve_s3(host: str, port: int, state: Path) -> None:
    """Run moto's S3 server on host:port until SIGTERM/SIGINT; load the buckets from `state` at start and
    save them there (atomically) at stop. moto offers no persistence of its own; its objects pickle."""
    import pickle
    import threading

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if state.is_file():
        try:
            backend.buckets.update(pickle.loads(state.read_bytes()))
        except Exception as exc:  # a moto upgrade can change its classes
            raise StackError(
                f"cannot load the stack's S3 state {state} ({exc.__class__.__name__}: {exc}); "
                "reinstall the moto version of requirements/lock.txt, or move the file away to start empty"
            ) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    print(f"S3 (moto) on http://{host}:{port}, state {state}: {len(backend.buckets)} buckets", flush=True)
    while not stop.wait(1.0):  # a timed wait lets the signal handler run promptly
        pass
    server.stop()
    tmp = state.with_name(f".{state.name}.tmp")
    tmp.write_bytes(pickle.dumps(dict(backend.buckets), protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, state)
    print(f"saved {len(backend.buckets)} buckets to {state}", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="The local stack's S3 server (moto, state kept on disk).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    cli = parser.parse_args()
    serve_s3(cli.host, cli.port, cli.state)
