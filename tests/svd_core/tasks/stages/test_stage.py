"""SvdTrainTask with the tiny preset: stage I -> inflation -> stage II -> export -> diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from torch.utils.data import default_collate

from svd_core.config import validate_config
from svd_core.data.latent_cache import CachedLatentDataset
from svd_core.errors import ConfigError, InputError
from svd_core.model.pipeline_io import load_components, sample_text_to_video
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import SvdTrainTask, svd_train_task
from tests.svd_core.data.test_video_dataset import DirBackedStore, write_lvd

HEIGHT, WIDTH, FRAMES = 32, 48, 4


@pytest.fixture(scope="module")
def table_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    clips = [
        {"num_frames": 24, "fps": 24, "flow_score": 1.0, "caption": "a red ball bounces"},
        {"num_frames": 30, "fps": 30, "flow_score": 4.0, "caption": "waves"},
        {"num_frames": 20, "fps": 12, "flow_score": 2.0, "caption": "a car"},
        {"num_frames": 24, "fps": 24, "flow_score": 0.5, "caption": None},
    ]
    return write_lvd(tmp_path_factory.mktemp("lvd"), clips)


def make_task(table_uri: str, **fields) -> SvdTrainTask:
    config = {
        "preset": "tiny",
        "num_frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
        "data": {"table_uri": table_uri, **fields.pop("data", {})},
        "trainer": {"max_steps": 10, "warmup_steps": 0, "num_workers": 0, "seed": 3, "device": "cpu"},
        **fields,
    }
    return svd_train_task(validate_config(TrainStageConfig, config).to_dict())


def train_steps(
    task: SvdTrainTask, steps: int = 2, batch_size: int = 2
) -> tuple[torch.nn.Module, list[float]]:
    model = task.build_model()
    dataset = task.build_dataset()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(steps):
        batch = default_collate([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)])
        loss = task.compute_loss(model, batch, generator)
        assert loss.dtype == torch.float32 and loss.ndim == 0 and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def export(task: SvdTrainTask, model: torch.nn.Module, out: Path) -> Path:
    task.export({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    return out


@pytest.fixture(scope="module")
def image_stage_export(table_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = make_task(table_uri, stage="image", num_frames=1, objective={"p_mean": -1.2, "p_std": 1.2})
    before = {k: v.clone() for k, v in task.components.unet.state_dict().items()}
    model, _ = train_steps(task, steps=2)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    return export(task, model, tmp_path_factory.mktemp("runs") / "image")


def test_image_stage_export_is_a_stage_one_folder(image_stage_export: Path) -> None:
    index = json.loads((image_stage_export / "model_index.json").read_text())
    assert index["_class_name"] == "SvdImageStage" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    info = json.loads((image_stage_export / "svd_model.json").read_text())
    assert info["stage"] == "image" and info["video"] is False
    assert list(image_stage_export.rglob("*.safetensors"))


def test_video_stage_inflates_stage_one_and_exports_a_runnable_svd_pipeline(
    table_uri: str, image_stage_export: Path, tmp_path: Path
) -> None:
    task = make_task(table_uri, init={"kind": "inflate", "image_unet_uri": str(image_stage_export)})
    image_unet = load_components(image_stage_export).unet
    video_unet = task.components.unet
    conv_in = video_unet.state_dict()["conv_in.weight"]
    assert (
        torch.equal(conv_in[:, :4], image_unet.state_dict()["conv_in.weight"])
        and conv_in[:, 4:].abs().sum() == 0
    )
    key = "down_blocks.0.resnets.0.spatial_res_block.conv1.weight"
    assert torch.equal(
        video_unet.state_dict()[key], image_unet.state_dict()[key.replace(".spatial_res_block", "")]
    )
    model, _ = train_steps(task, steps=2)
    out = export(task, model, tmp_path / "video")
    pipe = StableVideoDiffusionPipeline.from_pretrained(out, local_files_only=True)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    frames = pipe(
        image,
        height=HEIGHT,
        width=WIDTH,
        num_frames=FRAMES,
        num_inference_steps=2,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape == (1, FRAMES, HEIGHT, WIDTH, 3) and np.isfinite(frames).all()
    for name, tensor in pipe.unet.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


@pytest.fixture(scope="module")
def text_stage_export(table_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = make_task(table_uri, conditioning="text")
    model, _ = train_steps(task, steps=2)
    return export(task, model, tmp_path_factory.mktemp("runs") / "text")


def test_text_stage_exports_a_folder_our_sampler_runs(text_stage_export: Path) -> None:
    index = json.loads((text_stage_export / "model_index.json").read_text())
    assert index["_class_name"] == "SvdTextToVideoPipeline"
    assert {"text_encoder", "tokenizer", "image_encoder", "vae", "unet", "scheduler"} <= set(index)
    comp = load_components(text_stage_export)
    runs = [
        sample_text_to_video(
            comp,
            ["a red ball"],
            FRAMES,
            HEIGHT,
            WIDTH,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(1),
        )
        for _ in range(2)
    ]
    assert runs[0].shape == (1, FRAMES, 3, HEIGHT, WIDTH) and torch.equal(runs[0], runs[1])
    assert runs[0].min() >= 0.0 and runs[0].max() <= 1.0


def test_finetune_from_a_text_parent_to_image_conditioning_widens_conv_in(
    table_uri: str, text_stage_export: Path
) -> None:
    parent = load_components(text_stage_export).unet
    task = make_task(
        table_uri, stage="finetune", init={"kind": "pipeline", "pipeline_uri": f"file://{text_stage_export}"}
    )
    unet = task.components.unet
    assert unet.config.in_channels == 8 and task.components.text_encoder is None
    assert (
        torch.equal(unet.conv_in.weight[:, :4], parent.conv_in.weight)
        and unet.conv_in.weight[:, 4:].abs().sum() == 0
    )
    _, losses = train_steps(task, steps=1)
    assert np.isfinite(losses).all()


def test_parent_pipeline_is_copied_from_a_remote_prefix(
    table_uri: str, text_stage_export: Path, tmp_path: Path
) -> None:
    from svd_core import storage as svd_io

    svd_io.register_store("fakes3", lambda: DirBackedStore(text_stage_export.parent))
    try:
        task = make_task(
            table_uri,
            stage="finetune",
            conditioning="text",
            init={
                "kind": "pipeline",
                "pipeline_uri": f"fakes3://{text_stage_export.name}",
                "cache_dir": str(tmp_path),
            },
        )
        local = load_components(text_stage_export).unet.state_dict()
        for name, tensor in task.components.unet.state_dict().items():
            assert torch.equal(tensor, local[name]), name
        assert len(list(tmp_path.glob("*/model_index.json"))) == 1
    finally:
        svd_io._FACTORIES.pop("fakes3", None)
        svd_io._INSTANCES.pop("fakes3", None)


def test_latent_cache_reproduces_the_uncached_loss(table_uri: str, tmp_path: Path) -> None:
    plain = make_task(table_uri)
    cached = make_task(table_uri, data={"latent_cache_uri": f"file://{tmp_path}/cache"})
    dataset = cached.build_dataset()
    assert isinstance(dataset, CachedLatentDataset) and "frames" not in dataset[0]
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == len(dataset)
    stamps = [f.stat().st_mtime_ns for f in files]
    cached.build_dataset()  # complete cache: nothing is re-encoded
    assert [f.stat().st_mtime_ns for f in files] == stamps
    batch_plain = default_collate([plain.build_dataset()[i] for i in range(2)])
    batch_cached = default_collate([dataset[i] for i in range(2)])
    model = plain.build_model()
    losses = [
        task.compute_loss(model, batch, torch.Generator().manual_seed(9)).item()
        for task, batch in ((plain, batch_plain), (cached, batch_cached))
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_export_refuses_weights_of_another_model(table_uri: str, tmp_path: Path) -> None:
    task = make_task(table_uri)
    with pytest.raises(InputError, match="do not fit"):
        task.export({"conv_in.weight": torch.zeros(1)}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_parent_of_another_size_is_a_config_error(table_uri: str, text_stage_export: Path) -> None:
    task = make_task(
        table_uri,
        preset="small",
        height=64,
        width=64,
        init={"kind": "pipeline", "pipeline_uri": str(text_stage_export)},
        stage="finetune",
    )
    with pytest.raises(ConfigError, match="preset: small"):
        task.components  # noqa: B018


class Spy(torch.nn.Module):
    """Records what compute_loss feeds the UNet."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet, self.seen = unet, {}

    def forward(self, sample, timestep, encoder_hidden_states, added_time_ids):
        self.seen = {
            "sample": sample,
            "timestep": timestep,
            "context": encoder_hidden_states,
            "ids": added_time_ids,
        }
        return self.unet(sample, timestep, encoder_hidden_states, added_time_ids)


@pytest.mark.parametrize("conditioning", ["image", "text"])
def test_compute_loss_feeds_the_unet_what_the_pipeline_feeds(table_uri: str, conditioning: str) -> None:
    task = make_task(table_uri, conditioning=conditioning)
    spy = Spy(task.build_model())
    dataset = task.build_dataset()
    batch = default_collate([dataset[0], dataset[1]])
    task.compute_loss(spy, batch, torch.Generator().manual_seed(0))
    ids, sample = spy.seen["ids"], spy.seen["sample"]
    assert torch.equal(ids[:, 0], batch["fps_id"]) and torch.equal(ids[:, 1], batch["motion_bucket_id"])
    assert (
        spy.seen["timestep"].shape == (2,) and spy.seen["timestep"].unique().numel() == 2
    )  # per-sample sigma
    if conditioning == "image":
        assert torch.equal(ids[:, 2], batch["cond_aug"])
        assert sample.shape == (2, FRAMES, 8, HEIGHT // 8, WIDTH // 8) and spy.seen["context"].shape == (
            2,
            1,
            32,
        )
        cond = sample[:, :, 4:]
        assert torch.equal(cond[:, 0], cond[:, -1])  # the same conditioning latent on every frame
    else:
        assert ids[:, 2].abs().sum() == 0
        assert sample.shape == (2, FRAMES, 4, HEIGHT // 8, WIDTH // 8) and spy.seen["context"].shape == (
            2,
            77,
            32,
        )
