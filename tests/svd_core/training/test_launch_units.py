"""Launcher checks that need no training: validation before any process, failure reports, no orphans."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time

import psutil
import pytest

from svd_core.errors import ConfigError, StorageError
from svd_core.training import launch as launch_mod
from svd_core.training.config import TrainerConfig
from svd_core.training.launch import _Rank, launch, parse_hostfile, validate_launch
from svd_core.training.testing import TASK_FACTORY
from svd_core.training.trainer import TrainingDivergedError, TrainingFailedError


def test_hostfile_parsing(tmp_path):
    good = tmp_path / "hosts"
    good.write_text("# two nodes\nworker-0 slots=8\n\nworker-1 slots=8  # second\n")
    assert parse_hostfile(good, 16) == {"worker-0": 8, "worker-1": 8}
    with pytest.raises(ConfigError, match="offers 16 slots but ranks=8"):
        parse_hostfile(good, 8)
    bad = tmp_path / "bad"
    bad.write_text("worker-0 gpus=8\n")
    with pytest.raises(ConfigError, match="line 1"):
        parse_hostfile(bad, 8)
    bad.write_text("a slots=1\na slots=1\n")
    with pytest.raises(ConfigError, match="twice"):
        parse_hostfile(bad, 2)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_hostfile(tmp_path / "missing", 1)


@pytest.mark.parametrize(
    ("factory", "task_config", "cfg", "error", "needle"),
    [
        ("nope:task", {}, {}, ConfigError, "cannot be imported"),
        (TASK_FACTORY, {"height": object()}, {}, ConfigError, "JSON"),
        (TASK_FACTORY, {"bogus": 1}, {}, ConfigError, "unknown config keys"),
        (TASK_FACTORY, {}, {"hostfile": "/no/such/hostfile", "ranks": 2}, ConfigError, "hostfile"),
    ],
)
def test_bad_launches_fail_before_any_process(tmp_path, factory, task_config, cfg, error, needle):
    run_dir = tmp_path / "run"
    with pytest.raises(error, match=needle):
        launch(factory, task_config, TrainerConfig(device="cpu", **cfg), run_dir)
    assert not (run_dir / "launch").exists() and not (run_dir / "logs").exists()


def test_cuda_without_a_gpu_is_refused(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        validate_launch(TASK_FACTORY, {}, TrainerConfig(device="cuda"), tmp_path)


def test_resuming_at_another_zero_stage_is_refused_before_any_process(tmp_path):
    """Other ranks resume (ZeRO-3 through a universal checkpoint); another stage never does."""
    from svd_core.training import checkpoint as ckpt

    root = ckpt.checkpoint_root(tmp_path)
    (root / "step-4").mkdir(parents=True)
    ckpt.publish(root, ckpt.make_info(4, world_size=2, zero_stage=3, position=ckpt.DataPosition()), 3)
    with pytest.raises(Exception, match="resume with zero_stage=3"):
        launch(TASK_FACTORY, {}, TrainerConfig(device="cpu", ranks=1, zero_stage=2), tmp_path)
    assert not (tmp_path / "logs").exists()


def test_unwritable_run_dir_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="not writable"):
        validate_launch(TASK_FACTORY, {}, TrainerConfig(device="cpu"), blocker / "run")


def test_a_second_launch_into_a_busy_run_dir_is_refused(tmp_path):
    with (tmp_path / ".launch.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(Exception, match="another launch is training"):
            launch(TASK_FACTORY, {}, TrainerConfig(device="cpu"), tmp_path)


def _child(tmp_path, rank, code):
    log = tmp_path / "logs" / f"rank-{rank}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Rank(rank, proc, log)


SLEEPER = (  # a rank with a child of its own (like DataLoader workers)
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"
)


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_failing_rank_is_reported_in_one_line_and_the_others_are_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(launch_mod, "_GRACE_S", 0.5)
    sleeper = _child(tmp_path, 0, SLEEPER)
    time.sleep(0.5)
    grandchildren = [c.pid for c in psutil.Process(sleeper.process.pid).children()]
    failer = _child(
        tmp_path, 1, "print('loading shard 3'); print('disk full', flush=True); raise SystemExit(3)"
    )
    with pytest.raises(TrainingFailedError) as info:
        launch_mod._supervise([sleeper, failer], tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "rank 1 failed: exited with code 3" in message and "disk full" in message
    assert sleeper.process.poll() is not None
    assert grandchildren and all(_gone(pid) for pid in grandchildren)  # the whole process group


def test_a_killed_rank_is_the_culprit_even_when_its_peer_reports_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(launch_mod, "_GRACE_S", 0.5)
    report = tmp_path / "logs" / "rank-0.error.json"
    code = (
        "import json, sys, time; time.sleep(0.3); "
        "report = {'rank': 0, 'type': 'RuntimeError', 'message': 'Connection reset by peer', "
        "'time': time.time()}; "
        "open(sys.argv[1], 'w').write(json.dumps(report)); sys.exit(1)"
    )
    log = tmp_path / "logs" / "rank-0.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(report)], stdout=fh, stderr=subprocess.STDOUT
        )
    peer = _Rank(0, proc, log)
    killed = _child(tmp_path, 1, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(TrainingFailedError, match="rank 1 failed: killed by SIGKILL"):
        launch_mod._supervise([peer, killed], tmp_path)


def test_an_svd_error_report_keeps_its_type(tmp_path, monkeypatch):
    monkeypatch.setattr(launch_mod, "_GRACE_S", 0.2)
    report = tmp_path / "logs" / "rank-1.error.json"
    report.parent.mkdir()
    report.write_text(
        json.dumps({"rank": 1, "type": "TrainingDivergedError", "message": "loss became nan", "time": 1.0})
    )
    failer = _child(tmp_path, 1, "raise SystemExit(1)")
    with pytest.raises(TrainingDivergedError, match="loss became nan \\(rank 1; log: "):
        launch_mod._supervise([failer], tmp_path)


def test_ctrl_c_in_the_launcher_kills_every_rank(tmp_path, monkeypatch):
    spawned = []

    def fake_spawn(job, cfg, run_dir):
        spawned.extend(_child(run_dir, rank, SLEEPER) for rank in range(2))
        return spawned

    def interrupted(children, run_dir, **kwargs):
        time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(launch_mod, "_spawn_local", fake_spawn)
    monkeypatch.setattr(launch_mod, "_supervise", interrupted)
    with pytest.raises(KeyboardInterrupt):
        launch(TASK_FACTORY, {}, TrainerConfig(device="cpu", ranks=2), tmp_path)
    assert len(spawned) == 2 and all(c.process.poll() is not None for c in spawned)
