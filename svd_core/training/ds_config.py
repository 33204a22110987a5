"""Translate a `TrainerConfig` into a DeepSpeed config dict, plus the learning-rate schedule.

Bucket sizes are written out explicitly: accelerate's `"auto"` values are derived from the model's
`hidden_size`, which diffusers' UNets do not have. The communication backend is not part of this dict:
DeepSpeed's accelerator picks nccl on CUDA and gloo on CPU (oneCCL is absent), and the launcher pins the
accelerator with `DS_ACCELERATOR` (see `launch.py`) so a CPU run on a GPU machine stays on CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from svd_core.device import resolve_device
from svd_core.training.config import TrainerConfig

# DeepSpeed prints its own step logs every `steps_per_print` steps; our metrics.jsonl replaces them.
_QUIET_STEPS = 10**9


def resolve_precision(cfg: TrainerConfig, device: torch.device) -> str:
    """`auto` -> bf16 on GPU (A100/H100 class), fp32 on CPU (bf16 matmuls on CPU are slow, not faster)."""
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if device.type == "cuda" else "fp32"


def trainer_clips_gradients(cfg: TrainerConfig, precision: str) -> bool:
    """Stage 0 in fp32: the trainer clips (and keeps the norm for metrics); DeepSpeed's clip is turned off,
    because there it computes the same norm a second time and discards it."""
    return cfg.zero_stage == 0 and precision == "fp32"


def comm_backend(device: torch.device) -> str:
    """The torch.distributed backend DeepSpeed ends up with on this device (for logs and checks)."""
    return "nccl" if device.type == "cuda" else "gloo"


def zero_section(cfg: TrainerConfig, num_params: int | None = None) -> dict[str, Any]:
    """The `zero_optimization` block for the configured stage and offloads.

    Buckets are capped at the model size (`num_params`): DeepSpeed allocates them up front, and a bucket
    larger than the model is memory that holds nothing (it dominated ZeRO-3's footprint on small models).
    """
    section: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage == 0:
        return section
    cap = max(1, num_params) if num_params else None
    reduce_bucket = min(cfg.reduce_bucket_size, cap) if cap else cfg.reduce_bucket_size
    gather_bucket = min(cfg.allgather_bucket_size, cap) if cap else cfg.allgather_bucket_size
    section.update(
        reduce_bucket_size=reduce_bucket,
        allgather_bucket_size=gather_bucket,
        overlap_comm=False,  # overlap needs side streams; on CPU/gloo it only adds copies
        contiguous_gradients=True,
    )
    if cfg.offload_optimizer != "none":
        section["offload_optimizer"] = {"device": cfg.offload_optimizer, "pin_memory": True}
    if cfg.zero_stage == 3:
        section.update(
            stage3_prefetch_bucket_size=gather_bucket,
            stage3_param_persistence_threshold=cfg.param_persistence_threshold,
            stage3_max_live_parameters=10 * cfg.allgather_bucket_size,
            stage3_max_reuse_distance=10 * cfg.allgather_bucket_size,
            # Export gathers weights ourselves (fp32 masters), so no 16-bit consolidation on save.
            stage3_gather_16bit_weights_on_model_save=False,
        )
        if cfg.offload_param != "none":
            section["offload_param"] = {"device": cfg.offload_param, "pin_memory": True}
    return section


def build_ds_config(
    cfg: TrainerConfig, world_size: int, device: torch.device | None = None, num_params: int | None = None
) -> dict[str, Any]:
    """The DeepSpeed config for `cfg` on `world_size` ranks (`num_params`, when known, caps the buckets)."""
    device = device if device is not None else resolve_device(cfg.device)
    precision = resolve_precision(cfg, device)
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.accumulation_steps,
        "train_batch_size": cfg.micro_batch_size * cfg.accumulation_steps * world_size,
        "gradient_clipping": 0.0 if trainer_clips_gradients(cfg, precision) else cfg.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": cfg.lr,
                "betas": [cfg.adam_beta1, cfg.adam_beta2],
                "eps": cfg.adam_eps,
                "weight_decay": cfg.weight_decay,
                # torch's AdamW needs no compiled op; with CPU offload DeepSpeed's CPU Adam is required.
                "torch_adam": cfg.offload_optimizer == "none",
            },
        },
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "zero_optimization": zero_section(cfg, num_params),
        "steps_per_print": _QUIET_STEPS,
        "wall_clock_breakdown": False,
    }


def lr_factor(step_index: int, cfg: TrainerConfig) -> float:
    """Multiplier of `cfg.lr` for the optimizer step with 0-based index `step_index`.

    Warm-up is linear and reaches 1.0 on step `warmup_steps` (step 1 already gets 1/warmup, unlike
    DeepSpeed's WarmupLR whose first step has lr 0); then constant, cosine or linear down to min_lr_ratio.
    """
    if step_index < cfg.warmup_steps:
        return (step_index + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step_index + 1 - cfg.warmup_steps) / decay_steps)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if cfg.lr_schedule == "cosine" else 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def make_lr_scheduler(cfg: TrainerConfig):
    """A callable DeepSpeed applies to its base optimizer: `deepspeed.initialize(lr_scheduler=...)`.

    The lambda is a closure on purpose: LambdaLR checkpoints the `__dict__` of callable objects and would
    restore the old config on resume, while a plain function keeps the current config (e.g. raised max_steps).
    """

    def build(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step_index: lr_factor(step_index, cfg))

    return build
