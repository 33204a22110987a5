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
    signature = mlflow.models.get_model_info(stages["finetune"]).signature
    declared = {p.name for p in signature.params}
    assert {"num_frames", "fps", "num_inference_steps", "motion_bucket_id"} <= declared
    assert {"num_frames", "fps", "num_inference_steps"} <= set(signature.inputs.input_names())
    # a per-row column and a param both reach the sampler (MLflow drops what the signature lacks)
    rows = pd.DataFrame({"image": [str(image)], "seed": [3], "num_frames": [3], "fps": [5]})
    by_row = model.predict(rows, params={"num_inference_steps": 1, "out_dir": str(tmp_path / "p1")})
    frames, fps = read_frames(Path(by_row["video_path"][0]))
    assert (frames.shape[0], fps) == (3, 5.0)
    by_param = model.predict(
        pd.DataFrame({"image": [str(image)]}),
        params={"num_inference_steps": 1, "num_frames": 2, "out_dir": str(tmp_path / "p2")},
    )
    assert read_frames(Path(by_param["video_path"][0]))[0].shape[0] == 2


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


def test_a_moved_champion_alias_trains_a_new_version(stages: dict[str, str], table: str) -> None:
    cfg = _configs()["finetune"]
    first = registry.set_alias(stages["finetune"], "champion")
    child = train_flow.step_train_stage(cfg, table, parent="models:/svd@champion")
    assert child.tags["svd.parent_model_version"] == first.uri  # pinned, never the alias
    registry.set_alias(child.uri, "champion")  # the alias moves
    grandchild = train_flow.step_train_stage(cfg, table, parent="models:/svd@champion")
    assert grandchild.version not in (first.version, child.version)  # trained, not the stale reuse
    assert grandchild.tags["svd.parent_model_version"] == child.uri
    again = train_flow.step_train_stage(cfg, table, parent="models:/svd@champion")
    assert again.version == grandchild.version  # alias unchanged: the same lineage key reuses it


def test_kill_and_resume_leave_exactly_one_metric_per_step_in_mlflow(home: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from flows.integrations import tracking
    from svd_core.training.config import TrainerConfig
    from svd_core.training.launch import launch
    from svd_core.training.metrics import read_metrics
    from svd_core.training.testing import TASK_FACTORY
    from svd_core.training.trainer import TrainingFailedError

    cfg = TrainerConfig(max_steps=8, checkpoint_every=4, log_every=1, warmup_steps=0, num_workers=0,
                        device="cpu", zero_stage=0, lr=1e-3)  # fmt: skip
    run_dir = tmp_path / "run"
    run_ids = []
    for task_config in ({"fail_at_call": 7, "fail_kind": "kill"}, {}):  # SIGKILL at step 7, then resume
        with tracking.run("training", "kill-resume") as active:
            run_ids.append(active.info.run_id)
            with tracking.MetricsTail(run_dir / "metrics.jsonl", active.info.run_id, poll_s=0.1):
                if task_config:
                    with pytest.raises(TrainingFailedError):
                        launch(TASK_FACTORY, task_config, cfg, run_dir)
                else:
                    result = launch(TASK_FACTORY, task_config, cfg, run_dir)
    assert result.resumed_from_step == 4 and result.finished
    final = {row["step"]: row["loss"] for row in read_metrics(run_dir / "metrics.jsonl")}
    history = MlflowClient().get_metric_history(run_ids[1], "loss")
    assert sorted(m.step for m in history) == list(range(1, 9))  # every step exactly once
    assert {m.step: m.value for m in history} == pytest.approx(final)  # the resumed run's values
    crashed = MlflowClient().get_metric_history(run_ids[0], "loss")
    assert sorted(m.step for m in crashed) == list(range(1, 7))  # the killed attempt logged what it did
