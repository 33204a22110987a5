"""Training through the platform: I -> II -> III registered with lineage, pyfunc predict, export, reuse."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from PIL import Image

from flows import train_flow
from flows.integrations import registry
from svd_core.config import load_config
from svd_core.errors import InputError
from svd_core.tasks.stages.config import TrainStageConfig
from tests.helpers import svd_cli
from tests.svd_core.data.test_video_dataset import standard_clips, write_lvd

pytestmark = pytest.mark.integration

FAST = ["trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.warmup_steps=0", "trainer.num_workers=0",
        "trainer.micro_batch_size=1", "height=32", "width=48"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("train_home")
        mp.setenv("SVD_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_lvd(tmp_path_factory.mktemp("lvd_f"), standard_clips())


def _configs() -> dict[str, TrainStageConfig]:
    frames = {"image": ["num_frames=1"], "video": ["num_frames=4"], "finetune": ["num_frames=4", "width=64"]}
    return {s: load_config(TrainStageConfig, f"configs/train/{s}.yaml", FAST + frames[s]) for s in frames}


@pytest.fixture(scope="module")
def stages(home: Path, table: str) -> dict[str, str]:
    return train_flow.step_train_all(_configs(), data=table)


def test_three_stages_register_three_linked_versions(stages: dict[str, str], table: str) -> None:
    assert list(stages) == ["image", "video", "finetune"]
    image, video, final = (registry.resolve(stages[s]) for s in ("image", "video", "finetune"))
    assert image.tags["svd.parent_model_version"] == ""
    assert video.tags["svd.parent_model_version"] == image.uri
    assert final.tags["svd.parent_model_version"] == video.uri
    for model in (image, video, final):
        assert model.tags["svd.dataset_version"].startswith("sha256:")
        assert model.tags["svd.dataset_uri"] == table
        assert len(model.tags["svd.config_hash"]) == 16 and model.tags["svd.git_commit"]
    run = mlflow.get_run(final.run_id)
    assert run.data.tags["svd.registered_model"] == final.uri
    assert "loss" in run.data.metrics and "train_config.yaml" in str(
        mlflow.artifacts.list_artifacts(run_id=final.run_id)
    )
    assert run.inputs.dataset_inputs[0].dataset.digest == final.tags["svd.dataset_version"][:36]


def test_pyfunc_predict_turns_an_image_into_a_video(stages: dict[str, str], tmp_path: Path) -> None:
    image = tmp_path / "cond.png"
    Image.new("RGB", (64, 32), (200, 40, 40)).save(image)
    model = mlflow.pyfunc.load_model(stages["finetune"])
    out = model.predict(pd.DataFrame({"image": [str(image)], "seed": [3]}),
                        params={"num_inference_steps": 2, "out_dir": str(tmp_path / "pred")})  # fmt: skip
    video = Path(out["video_path"][0])
    from svd_core.video.writer import read_frames

    frames, fps = read_frames(video)
    assert frames.shape[0] == 4 and fps == 7.0


def test_export_loads_with_diffusers(stages: dict[str, str], tmp_path: Path, home: Path) -> None:
    from diffusers import DiffusionPipeline, StableVideoDiffusionPipeline

    out = tmp_path / "exported"
    svd_cli("models", "export", stages["finetune"], "--out", str(out), env={"SVD_HOME": str(home)})
    pipe = DiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    assert isinstance(pipe, StableVideoDiffusionPipeline)


def test_rerun_reuses_the_registered_versions(stages: dict[str, str], table: str) -> None:
    again = train_flow.step_train_all(_configs(), data=table)
    assert again == stages


def test_bad_inputs_fail_before_any_process_starts(home: Path, table: str, tmp_path: Path) -> None:
    cfg = _configs()["video"]
    before = sorted((home / "runs").rglob("*"))
    with pytest.raises(
        InputError,
        match=r"models:/svd-image/99: no (registered model named|such version or alias of) 'svd-image'",
    ):
        train_flow.step_train_stage(cfg, table, parent="models:/svd-image/99")
    with pytest.raises(InputError, match="cannot read it"):
        train_flow.step_train_stage(cfg, str(tmp_path / "missing.parquet"))
    assert sorted((home / "runs").rglob("*")) == before  # nothing was launched
