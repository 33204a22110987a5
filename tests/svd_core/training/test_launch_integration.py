"""Multi-node path on one machine: `deepspeed --hostfile` (localhost slots=2) starts the ranks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from svd_core.config import validate_config
from svd_core.errors import ConfigError
from svd_core.training.config import TrainerConfig
from svd_core.training.launch import launch
from svd_core.training.metrics import read_metrics
from svd_core.training.testing import TASK_FACTORY
from svd_core.training.trainer import TrainingFailedError

pytestmark = pytest.mark.integration


def _hostfile(tmp_path: Path) -> Path:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    return hostfile


def test_hostfile_launch_trains_zero2_in_bf16(tmp_path):
    hostfile = _hostfile(tmp_path)
    cfg = TrainerConfig(
        max_steps=2,
        warmup_steps=1,
        checkpoint_every=2,
        log_every=1,
        num_workers=0,
        micro_batch_size=2,
        ranks=2,
        zero_stage=2,
        precision="bf16",
        device="cpu",
        hostfile=hostfile,
    )
    run_dir = tmp_path / "run"
    result = launch(TASK_FACTORY, {}, cfg, run_dir)
    assert (result.world_size, result.zero_stage, result.precision, result.finished) == (2, 2, "bf16", True)
    total = result.param_numel_total
    assert result.param_numel_per_rank == [total, total]  # ZeRO-2 keeps whole bf16 weights on each rank
    assert all(0.5 <= n / total <= 0.51 for n in result.master_numel_per_rank)  # ...but shards fp32 masters
    # The ranks wrote their own logs (the deepspeed launcher only pipes its own output).
    assert "step 2/2" in (run_dir / "logs" / "rank-0.log").read_text()
    assert (run_dir / "logs" / "rank-1.log").is_file()
    assert (run_dir / "logs" / "launcher.log").is_file()
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    weights = load_file(Path(result.export_dir) / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())


def test_hostfile_launch_reports_the_failing_rank(tmp_path):
    cfg = TrainerConfig(max_steps=1, warmup_steps=0, num_workers=0, ranks=2, zero_stage=1, device="cpu")
    cfg = cfg.model_copy(update={"hostfile": _hostfile(tmp_path)})
    failing = {"fail_at_call": 1, "fail_on_rank": 1, "fail_kind": "raise"}
    with pytest.raises(TrainingFailedError) as info:
        launch(TASK_FACTORY, failing, cfg, tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message
    assert "rank 1 failed: RuntimeError: injected failure at compute_loss call 1" in message
    assert "rank-1.log" in message


def test_torchrun_starts_the_ranks(tmp_path):
    cfg = TrainerConfig(
        max_steps=2,
        warmup_steps=0,
        checkpoint_every=2,
        log_every=1,
        num_workers=0,
        ranks=2,
        zero_stage=1,
        device="cpu",
        launcher="torchrun",
    )
    run_dir = tmp_path / "run"
    result = launch(TASK_FACTORY, {}, cfg, run_dir)
    assert (result.world_size, result.finished) == (2, True)
    assert all(0.5 <= n / result.param_numel_total <= 0.51 for n in result.master_numel_per_rank)
    logs = [(run_dir / "logs" / f"rank-{rank}.log").read_text() for rank in (0, 1)]
    assert all(f"rank {r} of 2 started by torchrun" in log for r, log in enumerate(logs))
    assert "step 2/2" in logs[0]  # ranks log to their own files
    with pytest.raises(ConfigError, match="launcher=torchrun starts one machine"):
        validate_config(TrainerConfig, {"launcher": "torchrun", "hostfile": str(_hostfile(tmp_path))})
