"""Two CPU ranks over gloo: ZeRO-3 sharding (with activation checkpointing), export vs a ZeRO-0 run, NaN stop,
exact resume.

Four launches of a 1.8M-parameter diffusers SVD UNet (6 steps each) share module fixtures.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from svd_core.training import checkpoint as ckpt
from svd_core.training.config import TrainerConfig
from svd_core.training.launch import launch
from svd_core.training.metrics import read_metrics
from svd_core.training.testing import TASK_FACTORY
from svd_core.training.trainer import TrainingDivergedError, TrainResult

pytestmark = pytest.mark.integration

BASE = {
    "max_steps": 6,
    "warmup_steps": 2,
    "checkpoint_every": 2,
    "keep_last": 2,
    "log_every": 1,
    "num_workers": 0,
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 2,
    "lr": 1e-3,
    "ranks": 2,
    "device": "cpu",
    "seed": 3,
    "param_persistence_threshold": 0,  # shard every tensor of the tiny UNet
    # Buckets ~1/18 of the model (the defaults are 1/30 of SVD's UNet): several reduce-scatters per step,
    # and a preallocated bucket does not dominate the measured per-rank memory.
    "reduce_bucket_size": 100_000,
    "allgather_bucket_size": 100_000,
    "ema_decay": 0.5,  # so the exported EMA is visibly not the final weights after 6 steps
    # Adam's m/sqrt(v) turns the rounding noise of near-zero gradients (biases before GroupNorm) into
    # +-lr steps, so ZeRO-0 and ZeRO-3 (different reduction orders) would drift apart by ~lr; a large eps
    # keeps updates proportional to the gradients and the two runs comparable at fp32 precision.
    "adam_eps": 1e-3,
}


def _run(run_dir: Path, zero_stage: int, task_config: dict | None = None) -> TrainResult:
    return launch(TASK_FACTORY, task_config or {}, TrainerConfig(zero_stage=zero_stage, **BASE), run_dir)


PROGRESS: list[dict] = []


@pytest.fixture(scope="module")
def zero3(tmp_path_factory) -> TrainResult:
    # ZeRO-3 re-gathers parameters while checkpointed layers recompute: the same losses as zero0 prove it
    cfg = TrainerConfig(zero_stage=3, gradient_checkpointing=True, **BASE)
    return launch(TASK_FACTORY, {}, cfg, tmp_path_factory.mktemp("zero3"), on_metrics=PROGRESS.append)


@pytest.fixture(scope="module")
def zero0(tmp_path_factory) -> TrainResult:
    return _run(tmp_path_factory.mktemp("zero0"), zero_stage=0)


def _exported(result: TrainResult) -> dict[str, torch.Tensor]:
    return load_file(Path(result.export_dir) / "unet" / "diffusion_pytorch_model.safetensors")


def _metrics(result: TrainResult) -> list[dict]:
    return read_metrics(Path(result.run_dir) / "metrics.jsonl")


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].detach().float() - b[k].detach().float()).abs().max()) for k in a)


def test_zero3_gives_each_rank_about_half_of_the_parameters(zero3):
    total = zero3.param_numel_total
    assert (zero3.world_size, zero3.zero_stage, zero3.finished) == (2, 3, True)
    for held in (zero3.param_numel_per_rank, zero3.master_numel_per_rank, zero3.ema_numel_per_rank):
        shares = [n / total for n in held]
        print(f"ZeRO-3 per-rank elements {held} of {total}: shares {shares}")
        assert all(0.5 <= s <= 0.51 for s in shares)  # half, plus padding to equal partitions
    # Model state per rank in fp32: (4 weights + 4 masters + 4 grads + 8 Adam + 4 EMA) / 2 ranks = 12 bytes
    # per model parameter, against 20 unsharded (ZeRO-0, below).
    per_param = [m["state_bytes"] / total for m in zero3.memory_per_rank]
    print(f"ZeRO-3 model-state bytes per parameter per rank: {per_param}")
    assert all(11 < b < 14 for b in per_param)
    rows = _metrics(zero3)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(math.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in rows)
    assert all(r["grad_norm"] is not None and r["grad_norm"] > 0 for r in rows)
    assert [r["lr"] for r in rows[:3]] == pytest.approx([5e-4, 1e-3, 1e-3])  # warm-up over 2 steps
    assert rows == PROGRESS  # the launcher streamed every row while the ranks trained


def test_zero3_and_zero0_train_the_same_model(zero3, zero0):
    losses3 = [r["loss"] for r in _metrics(zero3)]
    losses0 = [r["loss"] for r in _metrics(zero0)]
    assert losses3 == pytest.approx(losses0, rel=1e-5, abs=1e-6)
    assert zero3.checkpointed_layers > 0 and zero0.checkpointed_layers == 0  # zero3 recomputed its layers
    assert zero0.param_numel_per_rank == [zero0.param_numel_total] * 2  # plain data parallel
    per_param = [m["state_bytes"] / zero0.param_numel_total for m in zero0.memory_per_rank]
    assert all(19.5 < b < 21 for b in per_param)  # 4 weights + 4 grads + 8 Adam + 4 EMA


def test_zero3_export_gathers_the_same_weights_as_zero0(zero3, zero0):
    """EMA exports (gathered from 2 shards vs read whole) agree; final weights agree too, via DeepSpeed's
    own offline consolidation of the ZeRO-3 checkpoint, an independent path to the same numbers."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ema3, ema0 = _exported(zero3), _exported(zero0)
    diff = _max_abs_diff(ema3, ema0)
    print(f"max |EMA export ZeRO-3 - ZeRO-0| = {diff:.3g}")
    assert diff < 1e-6

    root3 = ckpt.checkpoint_root(Path(zero3.run_dir))
    final3 = get_fp32_state_dict_from_zero_checkpoint(str(root3), tag="step-6")
    final0 = torch.load(
        ckpt.checkpoint_root(Path(zero0.run_dir)) / "step-6" / "mp_rank_00_model_states.pt",
        map_location="cpu",
        weights_only=False,
    )["module"]
    assert _max_abs_diff(final3, final0) < 1e-6
    assert _max_abs_diff(ema3, final3) > 1e-4  # the export really is the EMA, not the final weights


def test_export_loads_through_diffusers(zero3):
    from diffusers import UNetSpatioTemporalConditionModel

    unet = UNetSpatioTemporalConditionModel.from_pretrained(Path(zero3.export_dir) / "unet")
    ema = _exported(zero3)
    assert all(torch.equal(value, ema[name]) for name, value in unet.state_dict().items())


def test_nan_stops_every_rank_keeps_the_last_good_checkpoint_and_resume_is_exact(zero3, tmp_path):
    run_dir = tmp_path / "run"
    # Step 5's first micro-batch is compute_loss call 9; only rank 1 sees NaN, both must stop.
    with pytest.raises(TrainingDivergedError) as info:
        _run(run_dir, zero_stage=3, task_config={"fail_at_call": 9, "fail_on_rank": 1, "fail_kind": "nan"})
    message = str(info.value)
    assert "\n" not in message and "step 5 on rank(s) [1]" in message and "step-4" in message
    assert ckpt.find_resume_point(run_dir) == run_dir / "checkpoints" / "step-4"
    assert not (run_dir / "checkpoints" / "step-6").exists()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-4"
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]
    assert not (run_dir / "export").exists()

    resumed = _run(run_dir, zero_stage=3)
    assert (resumed.resumed_from_step, resumed.step, resumed.finished) == (4, 6, True)
    rows, reference = read_metrics(run_dir / "metrics.jsonl"), _metrics(zero3)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for mine, ref in zip(rows, reference, strict=True):
        for key in ("loss", "grad_norm", "lr"):
            assert abs(mine[key] - ref[key]) <= 1e-6, (mine["step"], key, mine[key], ref[key])
    exact = all(m["loss"] == r["loss"] for m, r in zip(rows, reference, strict=True))
    print(f"resumed losses bitwise equal to the uninterrupted run: {exact}")
    assert _max_abs_diff(_exported(resumed), _exported(zero3)) <= 1e-6
    remaining = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert remaining == ["step-4", "step-6"]  # keep_last=2


def test_a_two_rank_checkpoint_resumes_on_one_rank_through_a_universal_checkpoint(tmp_path):
    """2 ranks train 4 steps (ZeRO-3, EMA on); one rank resumes from step-4 with the same global batch.
    Resumed without training, its export (the EMA, resharded by DeepSpeed's universal conversion) equals the
    2-rank export; trained on, it finishes with one metrics row per step."""
    two = {**BASE, "max_steps": 4}
    first = launch(TASK_FACTORY, {}, TrainerConfig(zero_stage=3, **two), tmp_path / "run")
    one = {**two, "ranks": 1, "gradient_accumulation_steps": 4}  # global batch 2 x 2 x 2 = 2 x 4 x 1
    same = launch(TASK_FACTORY, {}, TrainerConfig(zero_stage=3, **one), tmp_path / "run")
    assert (same.resumed_from_step, same.step, same.finished) == (4, 4, True)
    assert (tmp_path / "run" / "checkpoints" / "step-4" / "universal" / "ema").is_dir()
    assert _max_abs_diff(_exported(same), _exported(first)) <= 1e-6

    on = launch(TASK_FACTORY, {}, TrainerConfig(zero_stage=3, **{**one, "max_steps": 6}), tmp_path / "run")
    assert (on.resumed_from_step, on.step, on.finished) == (4, 6, True)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7)) and all(math.isfinite(r["loss"]) for r in rows)


def test_a_checkpoint_from_another_zero_stage_is_refused(tmp_path):
    run = tmp_path / "run"
    launch(TASK_FACTORY, {}, TrainerConfig(zero_stage=3, **{**BASE, "max_steps": 2}), run)
    with pytest.raises(Exception, match="resume with zero_stage=3"):
        launch(TASK_FACTORY, {}, TrainerConfig(zero_stage=0, **{**BASE, "max_steps": 4}), run)


def test_a_killed_rank_restarts_the_ranks_from_the_last_checkpoint(tmp_path):
    """Elastic restart: rank 1 is SIGKILLed during step 5; with max_restarts=1 the launcher starts both ranks
    again, they resume from step-4 and finish; the restart is recorded with its cause."""
    from svd_core.training.launch import LOG_DIR, RESTARTS_FILE

    run = tmp_path / "run"
    cfg = TrainerConfig(zero_stage=3, max_restarts=1, **BASE)
    result = launch(TASK_FACTORY, {"fail_at_call": 9, "fail_on_rank": 1, "fail_kind": "kill"}, cfg, run)
    assert (result.resumed_from_step, result.step, result.finished) == (4, 6, True)
    restarts = (run / LOG_DIR / RESTARTS_FILE).read_text().splitlines()
    assert len(restarts) == 1 and "SIGKILL" in restarts[0]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, 7))
