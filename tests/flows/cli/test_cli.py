"""The `svd` entry point: help everywhere, settings output, one-line errors with non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import svd_cli


def test_config_show_json_resolves_embedded_default_and_masks_secrets(tmp_path: Path) -> None:
    env = {
        "SVD_HOME": str(tmp_path / "h"),
        "SVD_MLFLOW_DB_URL": "postgresql://alice:s3cret@127.0.0.1:5432/mlflow",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    }
    out = svd_cli("config", "show", "--json", env=env).stdout
    data = json.loads(out)
    assert data["tracking_uri"] == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert data["artifact_root"] == f"file://{tmp_path / 'h' / 'artifacts'}"
    assert data["s3_endpoint_url"] is None and data["prefect_api_url"] is None
    assert data["mlflow_db_url"] == "postgresql://alice:****@127.0.0.1:5432/mlflow"
    assert "s3cret" not in out and "AKIAEXAMPLEKEY" not in out


def test_settings_file_and_env_precedence(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.env").write_text("SVD_ARTIFACT_ROOT=s3://team-bucket/svd\nSVD_DEVICE=cpu\n")
    env = {"SVD_HOME": str(home), "SVD_DEVICE": "cuda"}
    data = json.loads(svd_cli("config", "show", "--json", env=env).stdout)
    assert data["artifact_root"] == "s3://team-bucket/svd"
    assert data["device"] == "cuda"  # the environment wins over the file


@pytest.mark.parametrize(
    "args", [["--help"], ["stack", "--help"], ["stack", "up", "--help"], ["config", "show", "--help"]]
)
def test_help_everywhere(args: list[str]) -> None:
    assert "Usage" in svd_cli(*args).stdout


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    proc = svd_cli(
        "config", "validate", str(tmp_path / "missing.yaml"), check=False, env={"SVD_HOME": str(tmp_path)}
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config file") and "Traceback" not in proc.stderr


def test_non_loopback_stack_host_is_refused(tmp_path: Path) -> None:
    proc = svd_cli(
        "config", "show", check=False, env={"SVD_HOME": str(tmp_path), "SVD_STACK_HOST": "0.0.0.0"}
    )
    assert proc.returncode != 0
    assert "not a loopback address" in proc.stderr


# --- an instant CLI: `--help` imports no heavy library ----------------------------------------------------
HEAVY = ("torch", "diffusers", "peft", "transformers", "mlflow", "prefect", "pandas", "numpy", "pyarrow",
         "scipy", "boto3", "great_expectations", "deepspeed", "sqlalchemy", "fastapi", "cv2", "av",
         "pydantic_settings", "yaml")  # fmt: skip
"""What `svd --help` must not import (torch alone took 8 s of an 8.9 s `svd --help`; typer itself imports
pydantic for its adapters, so pydantic is not listed, but no pydantic config or settings class is built)."""
HELP_PROBE = """
import sys
from flows.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY", heavy, len(sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["data", "--help"],
        ["train", "--help"],
        ["train", "lora", "--help"],
        ["eval", "--help"],
        ["eval", "analyze", "--help"],
        ["models", "--help"],
        ["stack", "--help"],
        ["config", "show", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_imports_no_heavy_module_and_creates_nothing(args: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", HELP_PROBE.format(heavy=HEAVY), *args],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("SVD_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Usage" in proc.stdout, proc.stderr[-2000:]
    assert "HEAVY [] " in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "svd --help must create nothing (no .svd/)"


def test_lora_help_lists_the_motion_classes_of_its_config() -> None:
    from svd_core.tasks.lora.config import CAMERA_MOTION_CLASSES

    out = " ".join(svd_cli("train", "lora", "--help").stdout.split())
    assert " | ".join(CAMERA_MOTION_CLASSES) in out.replace("│ ", "").replace(" │", "")


# --- settings: the tools' own variables win; config show says where each value came from --------------
def test_config_show_names_sources_and_creates_nothing(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://mlflow.team:5000", "PREFECT_PROFILES_PATH": str(tmp_path / "none")}
    out = svd_cli("config", "show", env=env, cwd=tmp_path).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("tracking_uri"))
    assert "http://mlflow.team:5000" in line and "[env MLFLOW_TRACKING_URI]" in line
    assert "[default" in next(ln for ln in out.splitlines() if ln.startswith("artifact_root"))
    data = json.loads(svd_cli("config", "show", "--json", env=env, cwd=tmp_path).stdout)
    assert data["sources"]["tracking_uri"] == "env MLFLOW_TRACKING_URI"
    assert list(tmp_path.iterdir()) == [], "config show must create nothing (no .svd/)"


# --- every command works from any directory ---------------------------------------------------------------
def test_shipped_configs_resolve_from_any_directory(tmp_path: Path) -> None:
    out = svd_cli("config", "validate", "configs/demo.yaml", "seed=3", cwd=tmp_path).stdout
    assert "seed: 3" in out and "workdir: demo" in out
    assert "stage: image" in svd_cli("config", "validate", "train/image.yaml", cwd=tmp_path).stdout
    # A file in the working directory wins over the shipped one of the same name.
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("# schema: flows.demo_flow:DemoConfig\nseed: 7\n")
    assert "seed: 7" in svd_cli("config", "validate", "configs/demo.yaml", cwd=tmp_path).stdout
    assert "Usage" in svd_cli("demo", "--help", cwd=tmp_path).stdout
    missing = svd_cli("config", "validate", "configs/nope.yaml", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "shipped configs" in missing.stderr


def test_a_real_command_runs_from_another_directory(tmp_path: Path) -> None:
    """`svd data orbits` (a numpy renderer, seconds) from a folder that is not the repository."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"SVD_HOME": str(tmp_path / "home")}
    args = ["data", "orbits", "--out", "orbits", "--objects", "1", "--views", "2", "--size", "16"]
    svd_cli(*args, "--supersample", "1", env=env, cwd=work)
    views = sorted(p.name for p in (work / "orbits").rglob("*.png"))
    assert len(views) == 2, views


REGISTER_TWO = """
import mlflow
from flows.integrations import registry, tracking

class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input

for n in (1, 2):
    folder = __import__("pathlib").Path("pipe%d" % n)
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    with tracking.run("team-exp", "stage"):
        registry.register_pipeline(folder, "team-svd", {"svd.stage": "finetune"}, Echo())
    registry.promote("team-svd", str(n), {"reason": "test"})
"""


@pytest.mark.integration
def test_every_command_uses_mlflow_tracking_uri(tmp_path: Path) -> None:
    """A team that sets only MLFLOW_TRACKING_URI gets its runs, models and aliases there, not in .svd/."""
    import subprocess
    import sys

    import mlflow

    from tests.helpers import ROOT

    team_db = tmp_path / "team" / "mlflow.db"
    team_db.parent.mkdir()
    uri = f"sqlite:///{team_db}"
    env = {"MLFLOW_TRACKING_URI": uri, "SVD_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    work = tmp_path / "work"
    work.mkdir()
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SVD_", "MLFLOW_"))}
    proc = subprocess.run(
        [sys.executable, "-c", REGISTER_TWO], cwd=work, env={**clean, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = svd_cli("models", "export", "models:/team-svd@champion", "--out", "exported", env=env, cwd=work)
    assert (work / "exported" / "model_index.json").is_file(), out.stdout
    assert "version 1" in svd_cli("eval", "rollback", "--model", "team-svd", env=env, cwd=work).stdout

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("team-svd", "champion").version) == "1"
    runs = client.search_runs([client.get_experiment_by_name("team-exp").experiment_id])
    assert len(runs) == 2 and all(r.data.tags.get("mlflow.source.git.commit") for r in runs)
    assert not (tmp_path / "home" / "mlflow.db").exists(), "nothing may go to the embedded store"
