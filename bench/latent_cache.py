"""Training step time with on-the-fly encoding vs the latent cache (tiny preset, CPU), side by side.

Run: .venv/bin/python bench/latent_cache.py
Builds a small LVD table of synthetic clips, then times the same micro-batches both ways: fetch the items
(decode + resize, or read the cached latents) and one forward/backward of `SvdTrainTask.compute_loss`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_video_dataset import write_lvd

from svd_core.config import validate_config
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import svd_train_task

FRAMES, HEIGHT, WIDTH, BATCH, STEPS = 14, 64, 96, 2, 8


def make_task(table_uri: str, cache_uri: str | None):
    data = {"table_uri": table_uri, "latent_cache_uri": cache_uri}
    cfg = {
        "preset": "tiny",
        "num_frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
        "data": data,
        "trainer": {"warmup_steps": 0, "device": "cpu"},
    }
    return svd_train_task(validate_config(TrainStageConfig, cfg).to_dict())


def time_steps(task) -> float:
    model, dataset = task.build_model(), task.build_dataset()
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for step in range(STEPS):
        batch = default_collate([dataset[(step * BATCH + i) % len(dataset)] for i in range(BATCH)])
        task.compute_loss(model, batch, gen).backward()
    return (time.perf_counter() - started) / STEPS


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        clips = [
            {"num_frames": 40, "fps": 24, "flow_score": float(i), "width": 320, "height": 240}
            for i in range(8)
        ]
        table = write_lvd(Path(tmp) / "lvd", clips)
        plain = time_steps(make_task(table, None))
        fill_started = time.perf_counter()
        cached_task = make_task(table, f"file://{tmp}/cache")
        cached_task.build_dataset()
        fill = time.perf_counter() - fill_started
        cached = time_steps(cached_task)
    print(f"tiny preset, {FRAMES} frames {HEIGHT}x{WIDTH}, batch {BATCH}, source clips 320x240, CPU")
    print(f"on-the-fly encoding: {plain * 1000:8.1f} ms/step")
    print(f"latent cache:        {cached * 1000:8.1f} ms/step  (one-off fill of 8 items: {fill:.2f} s)")
    print(f"speed-up: {plain / cached:.2f}x")


if __name__ == "__main__":
    main()
