"""Start `cfg.ranks` training processes and supervise them: `launch(task_factory, task_config, cfg, run_dir)`.

One machine (no hostfile): we spawn `python -m svd_core.training.launch --job JOB` once per rank with
RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR=127.0.0.1/MASTER_PORT (a free port) ourselves, rather than through
the `deepspeed` launcher, because then we own every process: each rank gets its own log file, each runs in
its own process group that we can kill as a whole, and we notice the first rank that dies (the
`deepspeed` launcher interleaves all ranks' output and exits with a bare return code).

`launcher=torchrun`: PyTorch's launcher (`torch.distributed.run`) starts this machine's ranks instead.

Several machines (`cfg.hostfile`): `deepspeed --hostfile` (pdsh/ssh) starts the same module on every node
with the same environment variables; ranks then write their own logs, so both paths report alike. The run
directory (job file, logs, checkpoints) must be on storage that every node sees.

Everything that can be checked is checked before any process starts. A failing rank writes
`logs/rank-R.error.json`; the launcher kills the remaining ranks and raises one line naming the first
failing rank, its error and its last log lines. Ctrl-C or any error in the launcher kills all ranks too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svd_core import errors
from svd_core.device import resolve_device
from svd_core.training import checkpoint as ckpt
from svd_core.training.config import TrainerConfig
from svd_core.training.metrics import METRICS_FILE, MetricsTail
from svd_core.training.trainer import (
    RESULT_FILE,
    TrainingDivergedError,
    TrainingFailedError,
    TrainResult,
    load_task,
)

LOG_DIR = "logs"
JOB_FILE = "job.json"
_ERROR_TYPES: dict[str, type[errors.SvdError]] = {
    cls.__name__: cls
    for cls in (
        errors.SvdError,
        errors.ConfigError,
        errors.InputError,
        errors.StorageError,
        TrainingDivergedError,
        TrainingFailedError,
    )
}
_GRACE_S = 3.0  # after a rank fails, time for the others to fail on their own and report why


@dataclass
class _Rank:
    """One supervised child: a rank (local spawn) or the deepspeed or torchrun launcher (rank None)."""

    rank: int | None
    process: subprocess.Popen
    log_path: Path


def launch(
    task_factory: str,
    task_config: dict[str, Any],
    cfg: TrainerConfig,
    run_dir: Path,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `cfg.ranks` ranks in `run_dir` (resuming from its latest checkpoint) and return the result.

    `on_metrics` is called in this process with each new metrics.jsonl row while the ranks train (for a
    progress bar); the rows are also in `run_dir/metrics.jsonl`.
    """
    run_dir = Path(run_dir)
    hosts = validate_launch(task_factory, task_config, cfg, run_dir)
    with _run_dir_lock(run_dir):
        job = write_job(task_factory, task_config, cfg, run_dir)
        ckpt.discard_unresumable_metrics(run_dir, cfg.resume)  # on_metrics sees only the final history
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        for stale in (run_dir / LOG_DIR).glob("rank-*.error.json"):
            stale.unlink()
        for attempt in range(cfg.max_restarts + 1):
            children: list[_Rank] = []
            try:
                if hosts is None and cfg.launcher == "torchrun":
                    children = [_spawn_torchrun(job, cfg, run_dir)]
                elif hosts is None:
                    children = _spawn_local(job, cfg, run_dir)
                else:
                    children = [_spawn_deepspeed(job, cfg, run_dir, hosts)]
                _supervise(children, run_dir, on_metrics=on_metrics)
                break
            except TrainingFailedError as exc:
                if not _restartable(exc, cfg, attempt):
                    raise
                _kill_all(children)
                print(f"svd launcher: restart {attempt + 1}/{cfg.max_restarts} after: {exc}", file=sys.stderr)
                _record_restart(run_dir, attempt + 1, exc)
                ckpt.discard_unresumable_metrics(run_dir, resume=True)
                for stale in (run_dir / LOG_DIR).glob("rank-*.error.json"):
                    stale.unlink()
            finally:
                _kill_all(children)
    return TrainResult.from_json((run_dir / RESULT_FILE).read_text())


RESTARTS_FILE = "restarts.jsonl"
"""One JSON row per elastic restart (attempt, time, the failure it restarted after), in `run_dir/logs`."""


def _restartable(exc: TrainingFailedError, cfg: TrainerConfig, attempt: int) -> bool:
    """A crashed or killed rank restarts; a diverged run (a subclass: NaN would come back) does not."""
    return type(exc) is TrainingFailedError and cfg.resume and attempt < cfg.max_restarts


def _record_restart(run_dir: Path, attempt: int, exc: BaseException) -> None:
    row = {"attempt": attempt, "time": time.time(), "after": str(exc)[:2000]}
    path = run_dir / LOG_DIR / RESTARTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def validate_launch(
    task_factory: str, task_config: dict[str, Any], cfg: TrainerConfig, run_dir: Path
) -> dict[str, int] | None:
    """Fail before any process starts; returns the hostfile's {host: slots} (None for one machine)."""
    try:
        json.dumps(task_config)
    except TypeError as exc:
        raise errors.ConfigError(
            f"task_config must be JSON-serialisable (it is sent to every rank): {exc}"
        ) from None
    load_task(task_factory, task_config)  # importable, and the task accepts its config
    hosts = parse_hostfile(cfg.hostfile, cfg.ranks) if cfg.hostfile else None
    resume_from = ckpt.find_resume_point(run_dir) if cfg.resume else None
    if resume_from is not None:  # sharded state fits the same stage only: say so before starting ranks
        ckpt.check_compatible(ckpt.read_info(resume_from), resume_from, cfg.ranks, cfg.zero_stage)
    if hosts is None:
        device = resolve_device(cfg.device)
        if device.type == "cuda":
            import torch

            visible = torch.cuda.device_count()
            if cfg.ranks > visible:
                raise errors.ConfigError(
                    f"ranks={cfg.ranks} but only {visible} GPU(s) are visible; "
                    f"set ranks<={visible} or device=cpu"
                )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise errors.StorageError(
            f"run_dir {run_dir} is not writable ({exc}); choose another folder"
        ) from None
    return hosts


def parse_hostfile(path: Path, ranks: int) -> dict[str, int]:
    """DeepSpeed hostfile lines `host slots=N` (comments allowed); slots must add up to `ranks`."""
    if not Path(path).is_file():
        raise errors.ConfigError(
            f"hostfile {path} does not exist; write `host slots=N` lines or unset hostfile"
        )
    hosts: dict[str, int] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("slots=") or not parts[1][6:].isdigit():
            raise errors.ConfigError(f"hostfile {path} line {number} {raw!r}: expected `host slots=N`")
        if parts[0] in hosts:
            raise errors.ConfigError(f"hostfile {path} lists {parts[0]} twice; give each host one line")
        hosts[parts[0]] = int(parts[1][6:])
    if not hosts:
        raise errors.ConfigError(f"hostfile {path} lists no hosts; write `host slots=N` lines")
    if sum(hosts.values()) != ranks:
        raise errors.ConfigError(
            f"hostfile {path} offers {sum(hosts.values())} slots but ranks={ranks}; make them equal"
        )
    return hosts


def write_job(task_factory: str, task_config: dict[str, Any], cfg: TrainerConfig, run_dir: Path) -> Path:
    """Everything a rank needs, as JSON (no pickles cross process or machine boundaries)."""
    job = {
        "task_factory": task_factory,
        "task_config": task_config,
        "cfg": cfg.to_dict(),
        "run_dir": str(run_dir),
    }
    path = run_dir / "launch" / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{path.name}"
    tmp.write_text(json.dumps(job, indent=2))
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Two launches into one run directory would overwrite each other's checkpoints: refuse the second."""
    with (run_dir / ".launch.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another launch is training in {run_dir}; wait for it or use another run_dir"
            raise errors.InputError(msg) from None
        yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env(cfg: TrainerConfig, local_ranks: int) -> dict[str, str]:
    import svd_core

    env = os.environ.copy()
    root = str(Path(svd_core.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.getcwd(), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["DS_ACCELERATOR"] = resolve_device(cfg.device).type
    if env["DS_ACCELERATOR"] == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // local_ranks))  # no oversubscription
    return env


def _rank_command(job: Path) -> list[str]:
    return [sys.executable, "-m", "svd_core.training.launch", "--job", str(job)]


def _spawn_local(job: Path, cfg: TrainerConfig, run_dir: Path) -> list[_Rank]:
    base = _child_env(cfg, cfg.ranks)
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(cfg.ranks))
    base.update(LOCAL_SIZE=str(cfg.ranks), LOCAL_WORLD_SIZE=str(cfg.ranks))
    (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    children = []
    for rank in range(cfg.ranks):
        env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
        log_path = run_dir / LOG_DIR / f"rank-{rank}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                _rank_command(job), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        children.append(_Rank(rank, process, log_path))
    return children


def _spawn_torchrun(job: Path, cfg: TrainerConfig, run_dir: Path) -> _Rank:
    """`torch.distributed.run` starts the ranks (a c10d rendezvous on a free local port); each rank writes
    its own log and error report as with the local spawn. No restarts: the restarted ranks failed gloo's
    connectFullMesh on CPU, so a failed run is resumed by running it again."""
    command = [sys.executable, "-u", "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(cfg.ranks), "--max-restarts", "0"]
    command += ["--module", "svd_core.training.launch", "--job", str(job), "--redirect-logs"]
    (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_DIR / "launcher.log"
    env = _child_env(cfg, cfg.ranks)
    env.update(LOCAL_SIZE=str(cfg.ranks))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Rank(None, process, log_path)


def _spawn_deepspeed(job: Path, cfg: TrainerConfig, run_dir: Path, hosts: dict[str, int]) -> _Rank:
    local_only = set(hosts) <= {"localhost", "127.0.0.1"}
    master = "127.0.0.1" if local_only else next(iter(hosts))
    command = [sys.executable, "-u", "-m", "deepspeed.launcher.runner", "--hostfile", str(cfg.hostfile)]
    command += ["--master_addr", master, "--master_port", str(free_port()), "--no_local_rank"]
    command += ["--no_ssh_check"] if local_only else []
    command += ["--module", "svd_core.training.launch", "--job", str(job), "--redirect-logs"]
    (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_DIR / "launcher.log"
    env = _child_env(cfg, max(hosts.values()))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Rank(None, process, log_path)


def _supervise(
    children: list[_Rank],
    run_dir: Path,
    poll_s: float = 0.2,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Wait for all children; on the first failure give the rest a moment, then kill them and raise."""
    tail = MetricsTail(run_dir / METRICS_FILE)
    while True:
        if on_metrics:
            for row in tail.new_rows():
                on_metrics(row)
        failed = [c for c in children if c.process.poll() not in (None, 0)]
        if failed:
            deadline = time.monotonic() + _GRACE_S
            while time.monotonic() < deadline and any(c.process.poll() is None for c in children):
                time.sleep(poll_s)
            # Before we kill anyone: a rank that died without a report was killed or hard-exited itself,
            # which makes it the root cause (its peers then fail in collectives and do write reports).
            silent = [
                c for c in children if c.process.poll() not in (None, 0) and not _has_report(c, run_dir)
            ]
            _kill_all(children)
            raise _failure_error(silent[0] if silent else failed[0], run_dir, prefer_reports=not silent)
        if all(c.process.poll() == 0 for c in children):
            if on_metrics:
                for row in tail.new_rows():
                    on_metrics(row)
            return
        time.sleep(poll_s)


def _has_report(child: _Rank, run_dir: Path) -> bool:
    if child.rank is None:  # deepspeed or torchrun: reports, if any, come from its ranks
        return any((run_dir / LOG_DIR).glob("rank-*.error.json"))
    return (run_dir / LOG_DIR / f"rank-{child.rank}.error.json").is_file()


def _kill_all(children: list[_Rank], grace_s: float = 5.0) -> None:
    """SIGTERM each child's process group (ranks and their DataLoader workers), then SIGKILL stragglers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [c for c in children if c.process.poll() is None]
        for child in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, sig)
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            alive = [c for c in alive if c.process.poll() is None]
            time.sleep(0.05)
        if not alive:
            return


def last_log_lines(path: Path, count: int = 3) -> list[str]:
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-count:]


def _failure_error(culprit: _Rank, run_dir: Path, prefer_reports: bool) -> errors.SvdError:
    """One line: the root-cause rank, its error (earliest report) or exit signal, and its last log lines."""
    reports = []
    for path in (run_dir / LOG_DIR).glob("rank-*.error.json"):
        with contextlib.suppress(OSError, ValueError):
            reports.append(json.loads(path.read_text()))
    if reports and prefer_reports:
        report = min(reports, key=lambda r: r["time"])
        rank, log_path = report["rank"], run_dir / LOG_DIR / f"rank-{report['rank']}.log"
        cls = _ERROR_TYPES.get(report["type"])
        if cls is not None:
            return cls(_one_line(f"{report['message']} (rank {rank}; log: {log_path})"))
        detail = f"{report['type']}: {report['message']}"
    else:
        rank, log_path = culprit.rank, culprit.log_path
        code = culprit.process.returncode
        detail = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    tail = " | ".join(last_log_lines(log_path))
    who = f"rank {rank}" if rank is not None else "the rank launcher (deepspeed or torchrun)"
    return TrainingFailedError(
        _one_line(f"{who} failed: {detail}; last log lines: {tail}; full log: {log_path}")
    )


def _one_line(text: str, limit: int = 2000) -> str:
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- rank entry point: python -m svd_core.training.launch --job JOB ---------------------------------------


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout/stderr (file descriptors, so native logs too) to its rank log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _write_error_report(run_dir: Path, rank: int, exc: BaseException) -> None:
    report = {"rank": rank, "type": type(exc).__name__, "message": str(exc), "time": time.time()}
    path = run_dir / LOG_DIR / f"rank-{rank}.error.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{path.name}"
    tmp.write_text(json.dumps(report))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    from svd_core.training.trainer import train

    parser = argparse.ArgumentParser(description="One rank of an svd training run (started by launch()).")
    parser.add_argument("--job", required=True, type=Path, help="job.json written by launch()")
    parser.add_argument(
        "--redirect-logs", action="store_true", help="write output to run_dir/logs/rank-R.log"
    )
    args = parser.parse_args(argv)
    job = json.loads(args.job.read_text())
    run_dir, rank = Path(job["run_dir"]), int(os.environ.get("RANK", "0"))
    if args.redirect_logs:
        _redirect_output(run_dir / LOG_DIR / f"rank-{rank}.log")
    starter = "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "svd launcher or deepspeed"
    print(f"rank {rank} of {os.environ.get('WORLD_SIZE', '1')} started by {starter}", flush=True)
    try:
        cfg = TrainerConfig.model_validate(job["cfg"])
        train(job["task_factory"], job["task_config"], cfg, run_dir)
    except BaseException as exc:
        _write_error_report(run_dir, rank, exc)
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
