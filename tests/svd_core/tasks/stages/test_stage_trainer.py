"""The stages under the real DeepSpeed trainer: two CPU ranks, ZeRO-3, export loadable by diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from svd_core.config import validate_config
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import train_stage
from tests.svd_core.data.test_video_dataset import write_lvd

pytestmark = pytest.mark.integration


def test_video_stage_trains_on_two_zero3_ranks_and_exports_an_svd_pipeline(tmp_path: Path) -> None:
    clips = [
        {"num_frames": 24, "fps": 24, "flow_score": 1.0},
        {"num_frames": 30, "fps": 30, "flow_score": 2.0},
    ]
    uri = write_lvd(tmp_path / "lvd", clips)
    cfg = validate_config(
        TrainStageConfig,
        {
            "preset": "tiny",
            "num_frames": 4,
            "height": 32,
            "width": 48,
            "data": {"table_uri": uri},
            "trainer": {
                "max_steps": 2,
                "warmup_steps": 0,
                "micro_batch_size": 1,
                "num_workers": 1,
                "ranks": 2,
                "zero_stage": 3,
                "device": "cpu",
                "log_every": 1,
            },
        },
    )
    result = train_stage(cfg, tmp_path / "run")
    assert result.finished and result.world_size == 2 and result.zero_stage == 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    pipe = StableVideoDiffusionPipeline.from_pretrained(result.export_dir, local_files_only=True)
    assert pipe.unet.config.in_channels == 8 and pipe.unet.config.num_frames == 4
    assert all(torch.isfinite(p).all() for p in pipe.unet.parameters())
