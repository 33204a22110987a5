"""TrainStageConfig: cross-field checks fail before any process starts, naming the field."""

from __future__ import annotations

import pytest

from svd_core.config import apply_overrides, load_config, validate_config
from svd_core.errors import ConfigError
from svd_core.tasks.stages.config import TrainStageConfig


def _cfg(**fields) -> TrainStageConfig:
    return validate_config(TrainStageConfig, fields)


def test_defaults_are_the_paper_video_pretraining_shape() -> None:
    cfg = _cfg()
    assert (cfg.stage, cfg.num_frames, cfg.height, cfg.width) == ("video", 14, 256, 384)
    assert (cfg.objective.p_mean, cfg.objective.p_std) == (0.7, 1.6)
    assert (cfg.objective.cond_aug_mean, cfg.objective.cond_aug_std) == (-3.0, 0.5)
    assert (cfg.data.fps_min, cfg.data.fps_max) == (3, 30)


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"height": 100}, r"height: 100 is not divisible by 16 .* use 96 or 112"),
        ({"preset": "svd", "width": 400}, r"width: 400 is not divisible by 64"),
        ({"stage": "image"}, r"num_frames: stage image trains on single frames"),
        ({"num_frames": 1}, r"num_frames: stage video needs at least 2"),
        ({"num_frames": 200}, r"num_frames"),
        ({"stage": "finetune"}, r"init.kind: stage finetune starts from a parent"),
        ({"init": {"kind": "pipeline"}}, r"init.pipeline_uri: required"),
        ({"init": {"kind": "inflate"}}, r"init.image_unet_uri: required"),
        ({"stage": "image", "num_frames": 1, "init": {"kind": "inflate", "image_unet_uri": "x"}}, r"inflate"),
        ({"data": {"fps_min": 20, "fps_max": 10}}, r"data.fps_min \(20\) exceeds"),
        ({"preset": "huge"}, r"preset: 'huge' is unknown"),
        ({"preset": "svd", "conditioning": "text"}, r"released CLIP tokenizer"),
        ({"objective": {"drop_both": 0.6, "drop_context_only": 0.6}}, r"exceeds 1"),
        ({"objective": {"p_sdt": 1.0}}, r"objective.p_sdt: unknown field"),
    ],
)
def test_bad_configs_raise_config_errors_naming_the_field(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _cfg(**fields)


def test_shipped_configs_load_and_overrides_apply() -> None:
    cfg = load_config(TrainStageConfig, "configs/train/video.yaml", ["trainer.max_steps=30", "height=32"])
    assert cfg.trainer.max_steps == 30 and cfg.height == 32 and cfg.init.kind == "inflate"
    paper = load_config(TrainStageConfig, "configs/train/paper/video.yaml")
    assert (paper.preset, paper.num_frames, paper.height, paper.width) == ("svd", 14, 256, 384)
    assert paper.trainer.global_batch_size == 1536
    assert paper.trainer.gradient_checkpointing is True


@pytest.mark.parametrize(
    ("path", "batch", "frames", "size"),
    [
        ("configs/train/paper/video.yaml", 1536, 14, (256, 384)),
        ("configs/train/paper/finetune.yaml", 768, 14, (320, 576)),
        ("configs/train/paper/finetune-576x1024-14.yaml", 768, 14, (576, 1024)),
        ("configs/train/paper/finetune-576x1024-25.yaml", 768, 25, (576, 1024)),
        ("configs/train/paper/text-to-video-576x1024.yaml", 768, 14, (576, 1024)),
    ],
)
def test_paper_presets_keep_their_global_batch_on_any_number_of_ranks(path, batch, frames, size) -> None:
    paper = load_config(TrainStageConfig, path)
    assert (paper.num_frames, (paper.height, paper.width)) == (frames, size)
    assert paper.trainer.gradient_checkpointing and paper.trainer.ema_warmup
    for ranks in (paper.trainer.ranks, 8, 16):  # the header's --ranks 8 used to shrink 1536 to 64
        cfg = load_config(TrainStageConfig, path, [f"trainer.ranks={ranks}"])
        assert cfg.trainer.total_batch_size == batch
        # re-validating the dumped config with other ranks (what `--ranks` does) re-derives accumulation
        again = validate_config(TrainStageConfig, apply_overrides(cfg.to_dict(), ["trainer.ranks=4"]))
        assert again.trainer.total_batch_size == batch
    with pytest.raises(ConfigError, match=f"global_batch_size={batch} is not a multiple"):
        load_config(TrainStageConfig, path, ["trainer.ranks=7"])
    with pytest.raises(ConfigError, match="width"):
        load_config(TrainStageConfig, "configs/train/finetune.yaml", ["width=100"])


def test_a_bad_stream_setting_names_its_field() -> None:
    with pytest.raises(ConfigError, match=r"data\.stream\.cache_bytes"):
        load_config(TrainStageConfig, "configs/train/video.yaml", ["data.stream.cache_bytes=-1"])
    cfg = load_config(TrainStageConfig, "configs/train/video.yaml", ["data.stream.cache_bytes=512MiB"])
    assert cfg.data.stream.cache_bytes == 512 * 2**20
