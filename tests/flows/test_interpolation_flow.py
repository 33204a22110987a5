"""Interpolation through the platform: finetune a registered tiny image-to-video model with the launched
DeepSpeed trainer, register it with lineage, then `svd interpolate` and the pyfunc with the registered URI."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows import interpolation_flow
from flows.cli.interpolate import register as register_interpolate
from flows.cli.train_interpolation import register as register_train
from flows.integrations import registry, tracking
from flows.integrations.pyfunc import SvdVideoModel
from svd_core.config import load_config
from svd_core.errors import InputError
from svd_core.model.build import build_components
from svd_core.model.config import TINY
from svd_core.model.export import export_pipeline
from svd_core.tasks.interpolation.config import InterpolationConfig
from svd_core.video.writer import read_frames
from tests.svd_core.data.test_video_dataset import standard_clips, write_lvd
from tests.svd_core.tasks.interpolation.test_interpolation import CONFIG, _video

pytestmark = pytest.mark.integration

FAST = ["trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.warmup_steps=0", "trainer.num_workers=0",
        "trainer.micro_batch_size=1", "height=32", "width=48"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("interp_home")
        mp.setenv("SVD_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_lvd(tmp_path_factory.mktemp("interp_lvd_f"), standard_clips())


@pytest.fixture(scope="module")
def base(home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny image-to-video pipeline registered as `svd` the way a training stage registers its export."""
    folder = tmp_path_factory.mktemp("base") / "pipeline"
    comp = build_components(TINY, "image", 4, sample_size=2, seed=0)
    export_pipeline(comp, folder, info={"stage": "finetune", "num_frames": 4, "height": 32, "width": 48})
    with tracking.run("training", "stage-finetune", {"svd.kind": "train", "svd.stage": "finetune"}):
        lineage = {"svd.stage": "finetune", "svd.conditioning": "image", "svd.parent_model_version": ""}
        return registry.register_pipeline(folder, "svd", lineage, SvdVideoModel()).uri


def _app(register) -> typer.Typer:  # type: ignore[no-untyped-def]
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


@pytest.fixture(scope="module")
def trained(base: str, table: str) -> tuple[str, float]:
    """`svd train interpolation --base models:/svd/1 --data TABLE --max-steps 2 ...`: (URI, wall seconds)."""
    started = time.perf_counter()
    args = ["interpolation", "--base", base, "--data", table, "--config", CONFIG, "--max-steps", "2", *FAST]
    result = CliRunner().invoke(_app(register_train), args)
    wall = time.perf_counter() - started
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    print(f"\ninterpolation tiny run (2 steps, launch + register): {wall:.1f} s wall")
    return result.stdout.strip().splitlines()[-1], wall


def test_training_registers_a_version_linked_to_its_base(
    trained: tuple[str, float], base: str, table: str
) -> None:
    uri, _ = trained
    assert uri == "models:/svd-interpolation/1"
    model = registry.resolve(uri)
    assert model.tags["svd.stage"] == "interpolation"
    assert model.tags["svd.parent_model_version"] == base
    assert model.tags["svd.dataset_uri"] == table and model.tags["svd.dataset_version"].startswith("sha256:")
    assert model.tags["svd.interpolation_factor"] == "4" and len(model.tags["svd.config_hash"]) == 16
    run = mlflow.get_run(model.run_id)
    assert run.data.tags["svd.registered_model"] == uri and run.data.tags["svd.stage"] == "interpolation"
    assert "loss" in run.data.metrics
    assert run.data.params["trainer.lr"] == "0.0001"


def test_svd_interpolate_with_the_registered_model(trained: tuple[str, float], tmp_path: Path) -> None:
    originals = _video(tmp_path / "in.mp4", 3, fps=7.0)
    out = tmp_path / "out.mp4"
    args = ["interpolate", str(tmp_path / "in.mp4"), "--model", trained[0], "--out", str(out), "--steps", "1"]
    result = CliRunner().invoke(_app(register_interpolate), args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    frames, fps = read_frames(out)
    assert len(frames) == 4 * (len(originals) - 1) + 1 and fps == 28.0


def test_pyfunc_interpolates_a_video(trained: tuple[str, float], tmp_path: Path) -> None:
    _video(tmp_path / "in.mp4", 2, fps=6.0)
    model = mlflow.pyfunc.load_model(trained[0])
    out = model.predict(pd.DataFrame({"video": [str(tmp_path / "in.mp4")], "num_inference_steps": [1]}))
    frames, fps = read_frames(out["video_path"][0])
    assert len(frames) == 5 and fps == 24.0


def test_rerun_reuses_the_registered_version(trained: tuple[str, float], base: str, table: str) -> None:
    cfg = load_config(InterpolationConfig, CONFIG, FAST)
    again = interpolation_flow.step_train_interpolation(cfg, base, table, max_steps=2)
    assert again.uri == trained[0]


def test_bad_bases_fail_before_any_run_starts(trained: tuple[str, float], home: Path, table: str) -> None:
    cfg = load_config(InterpolationConfig, CONFIG, FAST)
    before = sorted((home / "runs").rglob("*"))
    with pytest.raises(InputError, match="is already an interpolation model"):
        interpolation_flow.step_train_interpolation(cfg, trained[0], table)
    with pytest.raises(InputError, match=r"models:/svd/99: no such version or alias of 'svd'"):
        interpolation_flow.step_train_interpolation(cfg, "models:/svd/99", table)
    assert sorted((home / "runs").rglob("*")) == before
