"""fp32 master weights under DeepSpeed: a ZeRO-sharded EMA, and gathering full weights for export.

Why not diffusers' `EMAModel`: it keeps a full fp32 copy of every parameter on every rank and reads the
module's parameters, which under ZeRO-3 are empty placeholders between forwards (and bf16 when they are
not). `ShardedEma` instead averages the fp32 master tensors the optimizer itself updates on this rank:
at ZeRO-1/2/3 that is the rank's 1/N partition (so the EMA costs 4 psi / N bytes per rank, sharded like
the optimizer state), at stage 0 it is the full set (as in plain data parallel). The EMA is never
materialised in full during training; for export it is swapped into the master tensors, gathered with the
same per-parameter routine as the final weights, and swapped back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from svd_core.errors import InputError


def local_master_tensors(engine: Any) -> list[torch.Tensor]:
    """The fp32 tensors this rank's optimizer steps: its ZeRO partition, or all weights at stage 0."""
    from deepspeed.runtime.bf16_optimizer import BF16_Optimizer
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer
    from deepspeed.runtime.zero.stage3 import DeepSpeedZeroOptimizer_Stage3
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    opt = engine.optimizer
    if isinstance(opt, DeepSpeedZeroOptimizer_Stage3):
        return list(opt.fp32_partitioned_groups_flat)
    if isinstance(opt, DeepSpeedZeroOptimizer):
        return list(opt.single_partition_of_fp32_groups)
    if isinstance(opt, BF16_Optimizer):
        return list(opt.fp32_groups_flat_partition)
    if isinstance(opt, FP16_Optimizer):  # stage 0 with bf16 weights: full flat fp32 copies
        return list(opt.fp32_groups_flat)
    return [p for group in opt.param_groups for p in group["params"]]  # stage 0 fp32: the weights


def _stage0_master_views(engine: Any) -> dict[int, torch.Tensor]:
    """Stage 0 + bf16 keeps full flat fp32 masters; map each parameter to its view in them."""
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer

    opt = engine.optimizer
    if not isinstance(opt, FP16_Optimizer):
        return {}
    views = {}
    for params, flat in zip(opt.fp16_groups, opt.fp32_groups_flat, strict=True):
        for param, view in zip(params, torch._utils._unflatten_dense_tensors(flat, params), strict=True):
            views[id(param)] = view
    return views


def _full_fp32(param: torch.nn.Parameter, stage0_views: dict[int, torch.Tensor]) -> torch.Tensor:
    """The full fp32 value of one parameter; a collective for ZeRO-sharded parameters (call on every rank)."""
    from deepspeed import zero
    from deepspeed.utils import safe_get_full_fp32_param

    if param.requires_grad:
        value = safe_get_full_fp32_param(param)  # ZeRO-3 all-gather / ZeRO-1,2 all-reduce of fragments
        if value is not None:
            return value
        if id(param) in stage0_views:
            return stage0_views[id(param)]
    if hasattr(param, "ds_id"):  # frozen ZeRO-3 parameter: gather the module's own copy
        with zero.GatheredParameters([param], modifier_rank=None):
            return param.data.float().clone()
    return param.data.float()


def gather_full_state_dict(engine: Any, rank: int) -> dict[str, torch.Tensor]:
    """Full fp32 weights (plus buffers) of the wrapped module, keyed like `module.state_dict()`.

    Collective: every rank must call it. Parameters are gathered one at a time, so peak extra memory is one
    full parameter on each rank plus the CPU copy on rank 0; other ranks get an empty dict.
    """
    module = engine.module
    stage0_views = _stage0_master_views(engine)
    state: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        value = _full_fp32(param, stage0_views)
        if rank == 0:
            state[name] = value.detach().to("cpu", copy=True)
    if rank == 0:
        param_names = set(state)
        for name, value in module.state_dict().items():
            if name not in param_names:  # persistent buffers (not partitioned by ZeRO)
                state[name] = value.detach().to("cpu", copy=True)
    return state


class ShardedEma:
    """EMA of this rank's fp32 master tensors: `shadow = decay * shadow + (1 - decay) * master`."""

    def __init__(self, masters: list[torch.Tensor], decay: float, warmup: bool = False) -> None:
        self.masters = masters
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = [m.detach().to(torch.float32, copy=True) for m in masters]

    def current_decay(self) -> float:
        """Decay of the next update: `decay`, or with warm-up min(decay, (1 + t) / (10 + t)) at update t
        (generative-models' LitEma with use_num_updates; t counts from 1)."""
        if not self.warmup:
            return self.decay
        t = self.num_updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        current = [m.detach().float() for m in self.masters]
        torch._foreach_lerp_(self.shadow, current, 1.0 - self.current_decay())
        self.num_updates += 1

    def numel(self) -> int:
        return sum(t.numel() for t in self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [t.detach().cpu() for t in self.shadow],
        }

    @torch.no_grad()
    def restart_from_masters(self, num_updates: int) -> None:
        """Take the current master tensors as the shadow (after an EMA checkpoint was loaded into them, on
        a resume with a different number of ranks) and continue the update count."""
        for mine, master in zip(self.shadow, self.masters, strict=True):
            mine.copy_(master.detach().float())
        self.num_updates = int(num_updates)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        sizes = [t.numel() for t in shadow]
        expected = [t.numel() for t in self.shadow]
        if sizes != expected:
            raise InputError(
                f"EMA shard in the checkpoint has tensor sizes {sizes[:4]}... but this rank's optimizer "
                f"partition has {expected[:4]}...; resume with the same model, ranks and zero_stage"
            )
        for mine, saved in zip(self.shadow, shadow, strict=True):
            mine.copy_(saved.view_as(mine))
        self.num_updates = int(state["num_updates"])

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Temporarily put the EMA into the optimizer's master tensors (one temporary tensor at a time)."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def _swap(self) -> None:
        for master, shadow in zip(self.masters, self.shadow, strict=True):
            held = master.detach().clone()
            master.copy_(shadow.view_as(master))
            shadow.copy_(held.view_as(shadow))
