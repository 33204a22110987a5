"""Frame interpolation: config, conditioning layout, base checks, one loss step, export, `svd interpolate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from flows.cli.interpolate import register as register_interpolate
from flows.cli.train_interpolation import register as register_train
from svd_core.config import load_config
from svd_core.errors import ConfigError, InputError
from svd_core.model.build import Components, build_components
from svd_core.model.config import TINY
from svd_core.model.export import export_pipeline
from svd_core.tasks.interpolation.config import InterpolateConfig, InterpolationConfig
from svd_core.tasks.interpolation.infer import interpolate_frames, load_interpolator, read_video
from svd_core.tasks.interpolation.model import (
    InterpolationUNet,
    export_interpolation_pipeline,
    inspect_base,
    widen_for_interpolation,
)
from svd_core.tasks.interpolation.task import InterpolationTask
from svd_core.video.writer import read_frames, write_mp4
from tests.svd_core.data.test_video_dataset import standard_clips, write_lvd

CONFIG = "configs/train/interpolation.yaml"


@pytest.fixture(scope="module")
def base_components() -> Components:
    return build_components(TINY, "image", 4, sample_size=3, seed=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, base_components: Components) -> dict[str, Path]:
    """A tiny image-to-video base, an interpolation export of it (non-zero mask embedding), a text-mode
    and a stage-I folder."""
    root = tmp_path_factory.mktemp("interp_models")
    comp = base_components
    export_pipeline(comp, root / "base", info={"stage": "finetune", "num_frames": 4})
    model = InterpolationUNet(widen_for_interpolation(comp.unet, 5, 3), torch.tensor([0.5, -0.25, 0.1, 0.0]))
    info = {"num_frames": 5, "height": 32, "width": 48, "fps_range": [3, 30]}
    export_interpolation_pipeline(comp, model, root / "interp", info)
    export_pipeline(build_components(TINY, "text", 4, seed=1), root / "text", info={"stage": "finetune"})
    export_pipeline(
        build_components(TINY, "image", 1, seed=2, image_unet=True), root / "image", {"stage": "image"}
    )
    return {"base": root / "base", "interp": root / "interp", "text": root / "text", "image": root / "image"}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_lvd(tmp_path_factory.mktemp("interp_lvd"), standard_clips())


def _video(path: Path, num_frames: int, fps: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(num_frames)
    frames = rng.integers(0, 256, (num_frames, 32, 48, 3), dtype=np.uint8)
    write_mp4(frames, path, fps)
    return read_frames(path)[0]


# --- config ---------------------------------------------------------------------------------------------
def test_defaults_are_the_papers_and_a_partial_trainer_keeps_them() -> None:
    cfg = InterpolationConfig()
    assert (cfg.num_frames, cfg.frames_between, cfg.height, cfg.width) == (5, 3, 576, 1024)
    assert (cfg.objective.p_mean, cfg.objective.p_std) == (1.0, 1.2)
    assert (cfg.trainer.lr, cfg.trainer.ema_decay, cfg.trainer.max_steps) == (1e-4, 0.9999, 10_000)
    partial = load_config(InterpolationConfig, None, ["trainer.micro_batch_size=2"])
    assert partial.trainer.lr == 1e-4 and partial.trainer.micro_batch_size == 2
    shipped = load_config(InterpolationConfig, CONFIG)
    assert shipped.num_frames == 5 and shipped.trainer.lr == 1e-4
    with pytest.raises(ConfigError, match=r"data.fps_min \(20\) exceeds data.fps_max \(10\)"):
        load_config(InterpolationConfig, CONFIG, ["data.fps_min=20", "data.fps_max=10"])


# --- model ----------------------------------------------------------------------------------------------
def test_conv_in_is_widened_by_one_zero_channel_and_starts_as_the_base(base_components: Components) -> None:
    base = base_components.unet.eval()
    model = InterpolationUNet(widen_for_interpolation(base, 5, 3)).eval()
    weight = model.unet.conv_in.weight
    assert weight.shape[1] == 9 and torch.equal(weight[:, :8], base.conv_in.weight)
    assert torch.count_nonzero(weight[:, 8]) == 0 and torch.count_nonzero(model.mask_embedding) == 0

    gen = torch.Generator().manual_seed(0)
    x, ends = torch.randn(2, 5, 4, 3, 4, generator=gen), torch.randn(2, 2, 4, 3, 4, generator=gen)
    context, ids = torch.randn(2, 2, 32, generator=gen), torch.tensor([[6.0, 127.0, 0.02]] * 2)
    # The base saw [noisy, conditioning latent]; zero mask embedding = the base's "no frame" in the middle.
    cond8 = torch.cat([ends[:, :1], torch.zeros(2, 3, 4, 3, 4), ends[:, 1:]], dim=1)
    with torch.no_grad():
        want = base(torch.cat([x, cond8], 2), 1.0, encoder_hidden_states=context, added_time_ids=ids).sample
        got = model(x, torch.tensor(1.0), context, ids, ends).sample
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_conditioning_puts_end_latents_mask_embedding_and_mask_bit_in_their_slots(
    base_components: Components,
) -> None:
    embedding = torch.tensor([1.0, 2.0, 3.0, 4.0])
    model = InterpolationUNet(widen_for_interpolation(base_components.unet, 5, 3), embedding)
    ends = torch.randn(1, 2, 4, 3, 4)
    cond = model.conditioning(ends, 5).detach()
    assert cond.shape == (1, 5, 5, 3, 4)
    assert torch.equal(cond[0, 0, :4], ends[0, 0]) and torch.equal(cond[0, 4, :4], ends[0, 1])
    for slot in (1, 2, 3):
        assert torch.equal(cond[0, slot, :4], embedding.view(4, 1, 1).expand(4, 3, 4))
    assert cond[0, :, 4].flatten(1).amax(1).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert cond[0, :, 4].flatten(1).amin(1).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_only_an_image_to_video_base_is_accepted(folders: dict[str, Path], tmp_path: Path) -> None:
    spec = inspect_base(folders["base"])
    assert (spec.latent_channels, spec.pixel_factor) == (4, 16)
    with pytest.raises(
        InputError, match="is a text-to-video model; interpolation finetunes an image-to-video"
    ):
        inspect_base(folders["text"])
    with pytest.raises(InputError, match="has a UNet2DConditionModel UNet"):
        inspect_base(folders["image"])
    with pytest.raises(InputError, match="is already an interpolation model"):
        inspect_base(folders["interp"])
    with pytest.raises(InputError, match="is not a pipeline folder"):
        inspect_base(tmp_path)


# --- training task (in process; the launched run is in test_interpolation_flow.py) ----------------------
def test_one_loss_step_trains_the_mask_embedding_and_channel_and_exports(
    folders: dict[str, Path], table: str, tmp_path: Path
) -> None:
    overrides = [f"base_uri={folders['base']}", f"data.table_uri={table}", "height=32", "width=48"]
    task = InterpolationTask(load_config(InterpolationConfig, CONFIG, overrides))
    model = task.build_model()
    dataset = task.build_dataset()
    assert dataset[0]["frames"].shape == (5, 3, 32, 48)
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    loss = task.compute_loss(model, batch, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.count_nonzero(model.mask_embedding.grad) > 0
    assert torch.count_nonzero(model.unet.conv_in.weight.grad[:, 8]) > 0  # the mask channel learns too
    with torch.no_grad():
        model.mask_embedding.add_(0.5)
    task.export({k: v.detach() for k, v in model.state_dict().items()}, tmp_path / "export")
    loaded = load_interpolator(tmp_path / "export", "cpu")
    assert torch.equal(loaded.model.mask_embedding, model.mask_embedding.detach())
    assert torch.equal(loaded.model.unet.conv_in.weight, model.unet.conv_in.weight.detach())
    assert (loaded.num_frames, loaded.factor, loaded.fps_range) == (5, 4, (3, 30))
    index = json.loads((tmp_path / "export" / "model_index.json").read_text())
    assert index["_class_name"] == "SvdInterpolationPipeline"


def test_a_base_that_does_not_fit_fails_before_training(folders: dict[str, Path], table: str) -> None:
    for name, match in (("text", "text-to-video"), ("image", "UNet2DConditionModel")):
        cfg = load_config(
            InterpolationConfig, CONFIG, [f"base_uri={folders[name]}", f"data.table_uri={table}"]
        )
        with pytest.raises(InputError, match=match):
            InterpolationTask(cfg)
    cfg = load_config(InterpolationConfig, CONFIG, [f"base_uri={folders['base']}", "height=40"])
    with pytest.raises(InputError, match="height: 40 is not divisible by 16"):
        InterpolationTask(cfg)
    with pytest.raises(ConfigError, match="base_uri: not set"):
        InterpolationTask(load_config(InterpolationConfig, CONFIG))


def test_train_cli_rejects_a_text_base_before_anything_runs(
    folders: dict[str, Path], table: str, svd_home: Path
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register_train(app)
    args = ["interpolation", "--base", str(folders["text"]), "--data", table, "--max-steps", "1"]
    args.append("trainer.warmup_steps=0")
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputError), result.output
    assert "text-to-video" in str(result.exception)
    assert not (svd_home / "runs").exists()


# --- inference ------------------------------------------------------------------------------------------
def test_interpolation_keeps_the_originals_and_quadruples_the_rate(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    frames = _video(tmp_path / "in.mp4", 3)
    interp = load_interpolator(folders["interp"], "cpu")
    cfg = InterpolateConfig(num_inference_steps=1, batch_size=2)
    out, fps = interpolate_frames(interp, frames, 6.0, cfg)
    assert out.shape == (4 * 2 + 1, 32, 48, 3) and fps == 24.0
    for i, frame in enumerate(frames):
        assert np.array_equal(out[4 * i], frame)  # copied, not regenerated
    assert not any(np.array_equal(out[k], out[k - 1]) for k in range(1, len(out)))
    one_by_one, _ = interpolate_frames(interp, frames, 6.0, cfg.model_copy(update={"batch_size": 1}))
    assert np.abs(one_by_one.astype(int) - out.astype(int)).max() <= 1  # noise per window, not per batch


def _interpolate_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register_interpolate(app)
    return app


def test_svd_interpolate_writes_4n_minus_3_frames_at_4x_fps(folders: dict[str, Path], tmp_path: Path) -> None:
    _video(tmp_path / "in.mp4", 3, fps=5.0)
    out = tmp_path / "out.mp4"
    args = ["interpolate", str(tmp_path / "in.mp4"), "--model", str(folders["interp"]), "--out", str(out)]
    result = CliRunner().invoke(_interpolate_app(), [*args, "--steps", "1"])
    assert result.exit_code == 0, result.output
    frames, fps = read_frames(out)
    assert len(frames) == 4 * (3 - 1) + 1 and fps == 20.0
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["frames_in"], summary["frames_out"]) == (3, 9)


def test_bad_videos_fail_before_any_model_is_loaded(folders: dict[str, Path], tmp_path: Path) -> None:
    _video(tmp_path / "one.mp4", 1)
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail: the video check comes first
    cases = {"one.mp4": "has 1 frame; interpolation needs at least 2", "junk.mp4": "not a readable video"}
    for name, message in cases.items():
        args = [
            "interpolate",
            str(tmp_path / name),
            "--model",
            missing_model,
            "--out",
            str(tmp_path / "o.mp4"),
        ]
        result = CliRunner().invoke(_interpolate_app(), args)
        assert isinstance(result.exception, InputError) and message in str(result.exception), result.output
    with pytest.raises(InputError, match="cannot be read"):
        read_video(tmp_path / "absent.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_a_plain_image_to_video_model_is_not_an_interpolator(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="stage-finetune model; train one with `svd train interpolation"):
        load_interpolator(folders["base"], "cpu")
