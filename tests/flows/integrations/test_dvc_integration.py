"""The DVC pipeline end to end: a fresh clone regenerates data/raw, `dvc repro` rebuilds LVD -> LVD-F ->
LVD-10M/-F -> validation, `dvc metrics show` prints the funnels, and the DVC cache round-trips through the
local stack's S3 (push, wipe, pull, every file identical).

The clone is the repository's committed HEAD when every pipeline file is committed and unmodified, and
otherwise a snapshot of the working tree (tracked plus untracked, not ignored, files) in a fresh git repo,
so the test checks what a new checkout would get either way. Commands run as a user would: the `svd` and
`dvc` entry points of this virtualenv, with PYTHONPATH pointing at the clone so its code is what runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, RunningStack

# slow: rebuilds the whole sample dataset in a fresh copy (~3 min CPU, 12 min on a loaded box); opt-in.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

VENV_BIN = Path(sys.executable).parent
PIPELINE_PATHS = ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", ".dvc", "configs", "svd_core", "flows")
DATA_DIRS = ("data/raw", "data/lvd", "data/curated", "data/validation")
STAGES = ("data.dvc", "lvd", "lvd_f", "subsets", "validation")
FUNNEL_KEYS = ("kept_fraction", "input_rows", "kept_rows", "filters.flow_score.removed_in_order_rows")


@dataclass
class Clone:
    root: Path
    env: dict[str, str]
    how: str
    """"git clone" or "working-tree snapshot"."""
    raw_hashes: tuple[dict[str, Any], dict[str, Any]]
    """data/raw's entry in data.dvc as committed, and as DVC hashed the regenerated folder."""
    seconds: dict[str, float]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _committed_and_clean() -> bool:
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "dvc.yaml", "params.yaml", "data.dvc"], cwd=ROOT,
        capture_output=True,
    )  # fmt: skip
    return tracked.returncode == 0 and _git("status", "--porcelain", "--", *PIPELINE_PATHS, cwd=ROOT) == ""


def _make_clone(dest: Path) -> str:
    if _committed_and_clean():
        _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest), cwd=ROOT)
        return "git clone"
    dest.mkdir(parents=True)
    listed = _git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT).split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():  # listed but deleted in the working tree: a clone would not have it either
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    _git("init", "--quiet", cwd=dest)
    _git("add", "--all", cwd=dest)
    _git(
        "-c",
        "user.name=svd-test",
        "-c",
        "user.email=svd-test@localhost",
        "commit",
        "-qm",
        "snapshot",
        cwd=dest,
    )
    return "working-tree snapshot"


def _env(root: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SVD_", "MLFLOW_", "PREFECT_API", "AWS_"))
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(root),  # the clone's code, not the editable install's
        SVD_HOME=str(root / ".svd"),
        COLUMNS="400",  # `dvc metrics show` prints a wide table; keep it on one line per file
    )
    return env


def _run(clone_root: Path, env: dict[str, str], *argv: str, timeout: float = 600) -> str:
    proc = subprocess.run(argv, cwd=clone_root, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _dvc(clone: Clone, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    return _run(clone.root, env or clone.env, str(VENV_BIN / "dvc"), *args, timeout=timeout)


def _raw_hash(root: Path) -> dict[str, Any]:
    (out,) = yaml.safe_load((root / "data.dvc").read_text())["outs"]
    return {key: out[key] for key in ("md5", "size", "nfiles")}


def _file_digests(root: Path) -> dict[str, str]:
    digests = {}
    for folder in DATA_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                digests[path.relative_to(root).as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    root = tmp_path_factory.mktemp("dvc") / "repo"
    how = _make_clone(root)
    env = _env(root)
    seconds: dict[str, float] = {}
    seed = yaml.safe_load((root / "params.yaml").read_text())["sample"]["seed"]
    started = time.monotonic()
    _run(root, env, str(VENV_BIN / "svd"), "data", "sample", "--out", "data/raw", "--seed", str(seed))
    seconds["svd data sample"] = time.monotonic() - started
    partial = Clone(root, env, how, ({}, {}), seconds)
    # A fresh clone has no cache, so `dvc status` would only say "not in cache": commit the regenerated
    # folder into the cache and compare the hash DVC computes with the one data.dvc names.
    recorded = _raw_hash(root)
    _dvc(partial, "commit", "--force", "data.dvc")
    regenerated = _raw_hash(root)
    started = time.monotonic()
    _dvc(partial, "repro", timeout=2000)
    seconds["dvc repro"] = time.monotonic() - started
    yield Clone(root, env, how, (recorded, regenerated), seconds)
    print(f"\nDVC clone ({how}) timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))


def test_regenerated_raw_data_is_byte_identical_to_data_dvc(clone: Clone) -> None:
    recorded, regenerated = clone.raw_hashes
    assert regenerated == recorded, (
        f"`svd data sample` no longer writes the bytes data.dvc names ({recorded} != {regenerated}): if the sample "
        "generator changed on purpose, regenerate data/raw and run `dvc add data/raw` then `dvc push`"
    )


def test_repro_builds_every_stage_and_leaves_the_pipeline_up_to_date(clone: Clone) -> None:
    assert json.loads(_dvc(clone, "status", "--json") or "{}") == {}
    lock = yaml.safe_load((clone.root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES) - {"data.dvc"}
    for name in ("lvd_f", "lvd_10m", "lvd_10m_f"):
        pointer = json.loads((clone.root / "data/curated" / name / "CURRENT").read_text())
        assert (clone.root / "data/curated" / name / pointer["version"] / f"{name}.parquet").is_file()
    # A second repro has nothing to do: every stage is cached.
    assert "didn't change, skipping" in _dvc(clone, "repro")


def test_metrics_show_prints_the_funnels(clone: Clone) -> None:
    table = _dvc(clone, "metrics", "show")
    for key in (*FUNNEL_KEYS, "data/curated/lvd_f_metrics.json", "data/curated/lvd_10m_f_metrics.json"):
        assert key in table
    metrics = json.loads(_dvc(clone, "metrics", "show", "--json"))
    (entry,) = metrics.values()
    data = {path: value["data"] for path, value in entry["data"].items()}
    for name in ("lvd_f", "lvd_10m_f"):
        funnel = data[f"data/curated/{name}_metrics.json"]
        assert 0 < funnel["kept_rows"] <= funnel["input_rows"]
        assert funnel["kept_fraction"] == pytest.approx(funnel["kept_rows"] / funnel["input_rows"])
        assert set(funnel["filters"]) == {
            "flow_score",
            "text_area_ratio",
        }  # the filters the sample set can feed
        assert data[f"data/validation/{name}/{name}_validation.json"]["success"] is True
    # LVD-10M-F is LVD-10M filtered: its input is the subset.
    assert (
        data["data/curated/lvd_10m_f_metrics.json"]["input_rows"]
        == data["data/curated/lvd_10m_metrics.json"]["rows"]
    )


def test_dag_draws_the_lineage(clone: Clone) -> None:
    dot = _dvc(clone, "dag", "--dot")
    for upstream, downstream in [
        ("data.dvc", "lvd"),
        ("lvd", "lvd_f"),
        ("lvd_f", "subsets"),
        ("subsets", "validation"),
    ]:
        assert f'"{upstream}" -> "{downstream}"' in dot
    drawn = _dvc(clone, "dag")
    assert all(name in drawn for name in STAGES)


def test_s3_remote_round_trip_restores_every_file(clone: Clone, stack: RunningStack) -> None:
    endpoint = stack.urls["SVD_S3_ENDPOINT_URL"]
    env = {
        **clone.env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    prefix = f"s3://svd-dvc/cache-{uuid.uuid4().hex[:8]}"  # the session's moto is shared: a fresh prefix
    _dvc(clone, "remote", "add", "--default", "--force", "storage", prefix, env=env)
    _dvc(clone, "remote", "modify", "--local", "storage", "endpointurl", endpoint, env=env)
    assert endpoint not in (clone.root / ".dvc/config").read_text()  # the endpoint stays machine-local
    assert endpoint in (clone.root / ".dvc/config.local").read_text()

    before = _file_digests(clone.root)
    assert any(p.startswith("data/raw/") for p in before) and any(
        p.startswith("data/curated/") for p in before
    )
    _dvc(clone, "push", env=env)
    shutil.rmtree(clone.root / ".dvc/cache")
    for folder in DATA_DIRS:
        shutil.rmtree(clone.root / folder)
    _dvc(clone, "pull", env=env)
    assert _file_digests(clone.root) == before
    assert json.loads(_dvc(clone, "status", "--json", env=env) or "{}") == {}
