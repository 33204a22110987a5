"""Camera-motion LoRA through the platform: a tiny registered base -> `svd train lora` -> registered adapter
linked to its base version, pyfunc sampling, reuse, and bad inputs refused before anything starts."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from flows import lora_flow, train_flow
from flows.cli import train_lora as cli_lora
from flows.integrations import registry, tracking
from flows.integrations.pyfunc import SvdVideoModel
from svd_core.config import load_config
from svd_core.errors import InputError
from svd_core.evaluation.config import SamplingConfig
from svd_core.evaluation.evalsets import EvalItem
from svd_core.evaluation.sampling import load_generator
from svd_core.model import lora_io
from svd_core.tasks.lora.config import LoraTrainConfig
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.video.writer import read_frames, write_mp4
from tests.svd_core.tasks.lora.test_lora import export_base, load_unet, write_motion_lvd

pytestmark = pytest.mark.integration

FAST = ["trainer.max_steps=1", "trainer.checkpoint_every=1", "trainer.warmup_steps=0", "trainer.num_workers=0",
        "trainer.micro_batch_size=1", "num_frames=4", "height=32", "width=48"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("lora_home")
        mp.setenv("SVD_HOME", str(root))
        mp.setenv("OMP_NUM_THREADS", "1")  # rank processes: no OpenMP spin-waiting on a shared box
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield root
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    labels = ["horizontal", "zoom_in", "horizontal", "static"]
    return write_motion_lvd(tmp_path_factory.mktemp("lvd_f"), labels, frames=[24, 24, 30, 2])


@pytest.fixture(scope="module")
def base(home: Path, table: str) -> str:
    """A tiny image-to-video base: stage II from scratch, one step, registered as `svd` and promoted."""
    cfg = load_config(TrainStageConfig, "configs/train/video.yaml", [*FAST, "init.kind=scratch"])
    model = train_flow.step_train_stage(cfg, data=table, model_name="svd")
    registry.promote(model.name, model.version, {"reason": "test"})
    return model.uri


def lora_app() -> typer.Typer:
    app = typer.Typer()
    cli_lora.register(app)

    @app.command("noop")  # a second command keeps `lora` a sub-command, as in the `svd train` group
    def noop() -> None: ...

    return app


@pytest.fixture(scope="module")
def trained(base: str, table: str) -> tuple[str, float]:
    """`svd train lora --base models:/svd@champion --motion horizontal ...`; returns (URI, wall seconds)."""
    args = ["lora", "--base", "models:/svd@champion", "--motion", "horizontal", "--data", table,
            "--max-steps", "2", *FAST[1:], "lora.rank=8"]  # fmt: skip
    started = time.perf_counter()
    result = CliRunner().invoke(lora_app(), args)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, (result.output, result.exception)
    uri = result.output.strip().splitlines()[-1]
    print(f"\nLoRA stage (tiny, 2 steps, CLI end to end): {elapsed:.1f} s")
    return uri, elapsed


def test_registered_adapter_points_at_its_base_version(trained: tuple[str, float], base: str) -> None:
    uri, _ = trained
    assert uri == "models:/svd-lora-horizontal/1"
    model = registry.resolve(uri)
    assert model.tags["svd.parent_model_version"] == base == "models:/svd/1"  # the alias, pinned
    assert model.tags["svd.stage"] == "lora" and model.tags["svd.motion_class"] == "horizontal"
    assert (
        model.tags["svd.lora_rank"] == "8" and "temporal_transformer_blocks" in model.tags["svd.lora_targets"]
    )
    run = mlflow.get_run(model.run_id)
    assert run.data.tags["svd.registered_model"] == uri and run.data.params["num_clips"] == "2"
    assert "loss" in run.data.metrics
    adapter = lora_io.read_adapter(lora_flow.download_adapter(uri))
    assert adapter.info["base_model"] == base and adapter.spec.rank == 8
    result = mlflow.artifacts.load_dict(f"runs:/{model.run_id}/train_result.json")
    assert result["step"] == 2 and result["zero_stage"] == 0
    # DeepSpeed's optimizer holds the adapter alone: its fp32 masters are exactly the LoRA parameters
    assert result["master_numel_per_rank"] == [adapter.info["num_parameters"]]
    assert adapter.info["num_parameters"] < result["param_numel_total"] / 10


def test_base_weights_are_unchanged_by_training(trained: tuple[str, float], base: str) -> None:
    adapter = lora_io.read_adapter(lora_flow.download_adapter(trained[0]))
    base_unet = load_unet(registry.download_pipeline(base))
    independent = lora_io.base_weights_sha256(base_unet.state_dict())
    assert adapter.info["base_sha256"] == adapter.info["base_sha256_after_training"] == independent


def test_pyfunc_generates_a_video_and_scale_zero_is_the_base(
    trained: tuple[str, float], base: str, tmp_path: Path
) -> None:
    image = tmp_path / "cond.png"
    Image.new("RGB", (48, 32), (200, 40, 40)).save(image)
    frame = pd.DataFrame({"image": [str(image)], "seed": [3]})
    lora = mlflow.pyfunc.load_model(trained[0])
    adapted = lora.predict(frame, params={"num_inference_steps": 2, "out_dir": str(tmp_path / "a")})
    off = lora.predict(
        frame, params={"num_inference_steps": 2, "out_dir": str(tmp_path / "b"), "lora_scale": 0.0}
    )
    frames, fps = read_frames(Path(adapted["video_path"][0]))
    assert frames.shape[0] == 4 and fps == 7.0
    generate, _ = load_generator(registry.download_pipeline(base), SamplingConfig(num_inference_steps=2))
    item = EvalItem(prompt_id="p", prompt="", image_uri=str(image), seed=3)
    plain = read_frames(write_mp4(generate(item), tmp_path / "plain.mp4", fps=7))[0]
    assert np.array_equal(read_frames(Path(off["video_path"][0]))[0], plain)  # scale 0: exactly the base
    assert not np.array_equal(frames, plain)  # two LoRA steps already move the pixels


def test_rerun_reuses_the_registered_adapter(trained: tuple[str, float], table: str, home: Path) -> None:
    cfg = load_config(LoraTrainConfig, "configs/train/lora.yaml", [*FAST[1:], "lora.rank=8"])
    runs = sorted((home / "runs" / "lora").rglob("*"))
    again = lora_flow.step_train_lora(cfg, "models:/svd/1", "horizontal", table, max_steps=2)
    assert again.uri == trained[0] and sorted((home / "runs" / "lora").rglob("*")) == runs


def test_bad_inputs_fail_before_any_run_or_process(base: str, table: str, home: Path, tmp_path: Path) -> None:
    stage_one = export_base(tmp_path / "stage1", stage_one=True)
    with tracking.run("registry-fixtures", "stage-image"):
        registry.register_pipeline(stage_one, "svd-image", {"svd.stage": "image"}, SvdVideoModel())
    cfg = load_config(LoraTrainConfig, "configs/train/lora.yaml", FAST[1:])
    experiment = mlflow.get_experiment_by_name("training")
    runs_before = len(mlflow.search_runs([experiment.experiment_id]))
    dirs_before = sorted((home / "runs").rglob("*"))
    with pytest.raises(InputError, match="is a stage-I image model"):
        lora_flow.step_train_lora(cfg, "models:/svd-image/1", "horizontal", table)
    with pytest.raises(InputError, match="no clip has camera_motion=vertical"):
        lora_flow.step_train_lora(cfg, base, "vertical", table)
    with pytest.raises(InputError, match="models:/svd/99"):
        lora_flow.step_train_lora(cfg, "models:/svd/99", "horizontal", table)
    result = CliRunner().invoke(lora_app(), ["lora", "--base", base, "--motion", "diagonal", "--data", table])
    assert result.exit_code != 0 and "motion_class" in str(result.exception)
    assert len(mlflow.search_runs([experiment.experiment_id])) == runs_before
    assert sorted((home / "runs").rglob("*")) == dirs_before
