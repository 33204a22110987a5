"""Multi-view fine-tune through the platform: a registered tiny image-to-video base -> DeepSpeed fine-tune on
rendered orbits -> registered `svd-mv` with lineage -> PSNR/SSIM on held-out objects logged on its run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import typer
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows import multiview_flow
from flows.integrations import registry, tracking
from flows.integrations.pyfunc import SvdVideoModel
from svd_core.config import load_config
from svd_core.errors import InputError
from svd_core.model.build import build_components
from svd_core.model.config import TINY
from svd_core.model.export import export_pipeline
from svd_core.tasks.multiview.config import MultiViewConfig, OrbitRenderConfig
from svd_core.tasks.multiview.evaluate import MultiViewScores
from svd_core.tasks.multiview.orbits import CAMERAS_FILE, make_orbits
from svd_core.tasks.multiview.pipeline import load_multiview_pipeline

pytestmark = pytest.mark.integration
Trained = tuple[multiview_flow.MultiViewRun, MultiViewScores]

CONFIG = "configs/train/multiview.yaml"
FAST = ["num_views=4", "size=32", "data.held_out_objects=1", "eval.num_inference_steps=2",
        "trainer.max_steps=2", "trainer.warmup_steps=0", "trainer.checkpoint_every=2",
        "trainer.num_workers=0", "trainer.micro_batch_size=1"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("mv_home")
        mp.setenv("SVD_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def orbits(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("orbits")
    make_orbits(str(root), OrbitRenderConfig(objects=4, views=4, size=32, supersample=1, seed=2))
    return str(root)


def _register_tiny(tmp: Path, name: str, image_unet: bool) -> str:
    """A tiny random-weight pipeline registered like a trained stage (the registry path under test)."""
    stage = "image" if image_unet else "finetune"
    comp = build_components(TINY, "image", 4, sample_size=4, seed=0, image_unet=image_unet)
    folder = export_pipeline(comp, tmp / name, info={"stage": stage, "preset": "tiny", "num_frames": 4})
    with tracking.run("training", f"tiny-{name}", {"svd.kind": "train", "svd.stage": stage}):
        return registry.register_pipeline(folder, name, {"svd.stage": stage}, SvdVideoModel()).uri


@pytest.fixture(scope="module")
def bases(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bases")
    return {"video": _register_tiny(tmp, "svd", False), "image": _register_tiny(tmp, "svd-image", True)}


@pytest.fixture(scope="module")
def trained(bases: dict[str, str], orbits: str) -> Trained:
    cfg = load_config(MultiViewConfig, CONFIG, FAST)
    run = multiview_flow.step_train_multiview(cfg, bases["video"], data=orbits)
    return run, multiview_flow.step_evaluate_multiview(run)


def test_fine_tune_registers_with_lineage_and_logs_psnr_ssim(
    trained: Trained, bases: dict[str, str], orbits: str
) -> None:
    run, scores = trained
    assert run.model.uri == "models:/svd-mv/1" and not run.reused
    model = registry.resolve(run.model.uri)
    assert model.tags["svd.parent_model_version"] == bases["video"] == "models:/svd/1"
    assert model.tags["svd.stage"] == "multiview" and model.tags["svd.dataset_uri"] == orbits
    assert (
        model.tags["svd.dataset_version"].startswith("sha256:") and len(model.tags["svd.config_hash"]) == 16
    )
    mlrun = mlflow.get_run(run.run_id)
    assert mlrun.data.tags["svd.kind"] == "train" and mlrun.data.tags["svd.stage"] == "multiview"
    assert mlrun.data.tags["svd.registered_model"] == run.model.uri
    assert "loss" in mlrun.data.metrics
    assert mlrun.data.metrics["mv_psnr"] == pytest.approx(scores.psnr) and 0 < scores.psnr < 100
    assert mlrun.data.metrics["mv_ssim"] == pytest.approx(scores.ssim) and -1 < scores.ssim < 1
    assert "mv_lpips" not in mlrun.data.metrics and "mv_clip_s" not in mlrun.data.metrics  # no weights: none
    assert scores.objects == 1 and scores.views_per_object == 3  # one held-out object, 3 novel views
    table = mlflow.artifacts.load_text(f"runs:/{run.run_id}/{multiview_flow.TABLE_ARTIFACT}")
    assert "| Method | LPIPS ↓ | PSNR ↑ | CLIP-S ↑" in table and f"{scores.psnr:.2f}" in table
    version_tags = MlflowClient().get_model_version("svd-mv", "1").tags
    assert float(version_tags["svd.mv_psnr"]) == pytest.approx(scores.psnr, rel=1e-5)


def test_export_is_a_multiview_pipeline(trained: Trained, tmp_path: Path) -> None:
    run, _ = trained
    folder = registry.download_pipeline(run.model.uri)
    info = json.loads((folder / "svd_model.json").read_text())
    assert info["stage"] == "multiview" and info["multiview"]["num_views"] == 4
    pipe = load_multiview_pipeline(folder)
    assert pipe.unet.config.num_frames == 4 and pipe.unet.config.projection_class_embeddings_input_dim == 32
    image = tmp_path / "view.png"
    Image.new("RGB", (32, 32), (30, 160, 90)).save(image)
    model = mlflow.pyfunc.load_model(run.model.uri)
    out = model.predict(pd.DataFrame({"image": [str(image)], "elevation": [12.0]}),
                        params={"num_inference_steps": 2, "out_dir": str(tmp_path / "pred")})  # fmt: skip
    views = sorted(Path(out["views_dir"][0]).glob("*.png"))
    assert len(views) == 4 and Image.open(views[0]).size == (32, 32)


def test_cli_rerun_reuses_the_registered_version(
    trained: Trained, bases: dict[str, str], orbits: str
) -> None:
    from flows.cli import train_multiview as cli_multiview

    app = typer.Typer()
    cli_multiview.register(app)
    app.command("noop")(lambda: None)
    args = ["multiview", "--base", bases["video"], "--data", orbits, "--config", CONFIG, *FAST]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "models:/svd-mv/1"
    assert "reused models:/svd-mv/1" in result.output and "| Method |" in result.output


def test_bad_inputs_fail_before_training_starts(
    trained: Trained, bases: dict[str, str], orbits: str, home: Path, tmp_path: Path
) -> None:
    import shutil

    cfg = load_config(MultiViewConfig, CONFIG, FAST)
    runs = sorted((home / "runs").rglob("*"))
    with pytest.raises(InputError, match=r"models:/svd/42: no such version"):
        multiview_flow.step_train_multiview(cfg, "models:/svd/42", data=orbits)
    with pytest.raises(InputError, match=r"models:/svd-image/1 is not an image-to-video model"):
        multiview_flow.step_train_multiview(cfg, bases["image"], data=orbits)
    broken = Path(shutil.copytree(orbits, tmp_path / "broken"))
    (broken / "obj_000002" / CAMERAS_FILE).unlink()
    with pytest.raises(InputError, match=r"obj_000002 has no cameras\.json"):
        multiview_flow.step_train_multiview(cfg, bases["video"], data=str(broken))
    shutil.rmtree(broken / "obj_000002")
    (broken / "obj_000001" / "002.png").unlink()
    with pytest.raises(InputError, match=r"obj_000001: view file 002\.png"):
        multiview_flow.step_train_multiview(cfg, bases["video"], data=str(broken))
    assert sorted((home / "runs").rglob("*")) == runs  # nothing was launched
