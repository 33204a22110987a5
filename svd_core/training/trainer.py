"""The generic DeepSpeed trainer: one rank's training loop for any `TrainTask`.

`train()` runs inside each rank process (started by `svd_core.training.launch`, or in-process for a single
rank). Per optimizer step: `gradient_accumulation_steps` micro-batches through `task.compute_loss` and
`engine.backward`, one all-gather of the per-rank losses (for the metrics row and so that every rank sees
a NaN/inf on any rank and stops together, before the optimizer step touches the weights), then
`engine.step()` (clipping, AdamW, lr schedule) and the EMA update. Checkpoints are exact: the DeepSpeed
state plus each rank's RNG states, data position and EMA shard, so a resumed run repeats the same losses.
At `max_steps` the full fp32 weights (EMA or final) are gathered from the ZeRO shards and handed to
`task.export` on rank 0.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import random
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist

from svd_core.device import resolve_device
from svd_core.errors import ConfigError, InputError, SvdError
from svd_core.training import checkpoint as ckpt
from svd_core.training.activation_checkpointing import CHECKPOINTED_LAYERS, enable_activation_checkpointing
from svd_core.training.config import TrainerConfig
from svd_core.training.ds_config import (
    build_ds_config,
    make_lr_scheduler,
    resolve_precision,
    trainer_clips_gradients,
)
from svd_core.training.ema import ShardedEma, gather_full_state_dict, local_master_tensors
from svd_core.training.metrics import (  # TrainResult is re-exported: callers import it from here
    MetricsWriter,
    TrainResult,
    live_tensor_bytes,
    local_param_numel,
    peak_process_memory,
    truncate_after,
)

RESULT_FILE = "result.json"
EXPORT_DIR = "export"


@runtime_checkable
class TrainTask(Protocol):
    """What is trained. Built inside every rank from `task_factory(task_config)`; nothing crosses processes.

    - `build_model`: the trainable module, identical on every rank and deterministic from the config (the
      trainer seeds torch with `cfg.seed` first). Built before DeepSpeed, never under `zero.Init`.
    - `build_dataset`: map-style; item `i` is a dict of tensors and depends only on `i`.
    - `compute_loss`: scalar fp32 loss of one micro-batch. `model` is the DeepSpeed engine: call it like
      the module (its `.config` is DeepSpeed's; the module is `model.module`). The batch arrives on the
      training device as collated (fp32): cast model inputs to `model_dtype(model)` (bf16 under mixed
      precision). Draw all noise from `generator` (its state is checkpointed per rank).
    - `export`: write the full fp32 weights (keys as `module.state_dict()`) as a pipeline folder.
    """

    def build_model(self) -> torch.nn.Module: ...
    def build_dataset(self) -> torch.utils.data.Dataset: ...
    def compute_loss(
        self, model: torch.nn.Module, batch: dict, generator: torch.Generator
    ) -> torch.Tensor: ...
    def export(self, state_dict: dict[str, torch.Tensor], out_dir: Path) -> None: ...


class TrainingDivergedError(SvdError):
    """The loss became NaN/inf; the run stopped without saving and the last good checkpoint is kept."""


class TrainingFailedError(SvdError):
    """A rank process failed (the launcher reports it with the rank's last log lines)."""


def load_task(task_factory: str, task_config: dict[str, Any]) -> TrainTask:
    """`"package.module:function"` + config -> TrainTask (also used by the launcher to validate early)."""
    module_name, sep, func_name = task_factory.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"task_factory {task_factory!r} must look like 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"task_factory {task_factory!r} cannot be imported ({exc}); check the name"
        ) from exc
    try:
        task = factory(dict(task_config))
    except SvdError:
        raise
    except Exception as exc:  # a factory that validates with plain exceptions: still name the input
        raise ConfigError(
            f"task_factory {task_factory!r} rejected its config: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [m for m in ("build_model", "build_dataset", "compute_loss", "export") if not hasattr(task, m)]
    if missing:
        raise ConfigError(f"task_factory {task_factory!r} returned {type(task).__name__}, lacking {missing}")
    return task


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """dtype the module computes in (bf16 under DeepSpeed mixed precision); works on ZeRO-3 placeholders."""
    return next(model.parameters()).dtype


def rank_seed(seed: int, rank: int) -> int:
    """Distinct, reproducible seed per rank for noise (model init uses `seed` itself on every rank)."""
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2**63)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train(task_factory: str, task_config: dict[str, Any], cfg: TrainerConfig, run_dir: Path) -> TrainResult:
    """Run this process's rank of the training run in `run_dir` (resuming from its latest checkpoint)."""
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    with _single_rank_env(cfg), _distributed(cfg, device) as (rank, world):
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            device = torch.device("cuda", torch.cuda.current_device())
        run_dir.mkdir(parents=True, exist_ok=True)
        return _train_rank(task_factory, task_config, cfg, run_dir, device, rank, world)


@contextlib.contextmanager
def _single_rank_env(cfg: TrainerConfig) -> Iterator[None]:
    """Outside a launcher (no RANK in the environment) run as a world of one on a free loopback port."""
    if "RANK" in os.environ:
        yield
        return
    if cfg.ranks != 1:
        raise ConfigError(
            f"ranks={cfg.ranks} but train() runs one rank per process; start the ranks with "
            "svd_core.training.launch.launch(...) (or set ranks=1)"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_SIZE": "1"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _distributed(cfg: TrainerConfig, device: torch.device) -> Iterator[tuple[int, int]]:
    os.environ.setdefault("DS_ACCELERATOR", device.type)
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    if get_accelerator().device_name() != device.type:
        raise ConfigError(
            f"device={cfg.device} resolved to {device.type}, but DeepSpeed was loaded for "
            f"{get_accelerator().device_name()}; set DS_ACCELERATOR={device.type} before importing deepspeed"
        )
    # A process group left by an earlier train() in this process is reused: DeepSpeed caches its groups,
    # so destroying and re-creating it would break the second run (benchmarks call train() repeatedly).
    deepspeed.init_distributed(verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != cfg.ranks:
        raise ConfigError(f"the launcher started {world} ranks but the config says ranks={cfg.ranks}")
    try:
        yield rank, world
    finally:
        _remove_shm_buffers()


SHM_DIR = Path("/dev/shm")


def _remove_shm_buffers() -> None:
    """Unlink this rank's DeepSpeed CPU allreduce buffers (`/dev/shm/deepspeed_allreduce_buffer_*`, ~69 MB
    each): DeepSpeed never removes them, so every run leaked RAM-backed files. Mappings that are still open
    stay valid after the unlink, so a process group reused in this process keeps working."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port or not SHM_DIR.is_dir():
        return
    rank = os.environ.get("LOCAL_RANK", "0")
    for path in SHM_DIR.glob(f"deepspeed_allreduce_buffer_*_{addr}_{port}_{rank}"):
        path.unlink(missing_ok=True)


@dataclass
class _LoopState:
    step: int
    position: ckpt.DataPosition
    last_loss: float | None = None
    last_checkpoint: Path | None = None
    state_bytes: int | None = None
    checkpointed_layers: int = 0


def _train_rank(
    task_factory: str,
    task_config: dict[str, Any],
    cfg: TrainerConfig,
    run_dir: Path,
    device: torch.device,
    rank: int,
    world: int,
) -> TrainResult:
    import deepspeed

    task = load_task(task_factory, task_config)
    seed_everything(cfg.seed)  # identical init on every rank: ZeRO-3 keeps each rank's own slice
    model = task.build_model()
    checkpointed = enable_activation_checkpointing(model) if cfg.gradient_checkpointing else 0
    if cfg.gradient_checkpointing and checkpointed == 0:
        raise ConfigError(
            f"trainer.gradient_checkpointing=true but {type(model).__name__} has none of the layers it "
            f"checkpoints ({sorted(CHECKPOINTED_LAYERS)}); set trainer.gradient_checkpointing=false"
        )
    stream = ckpt.BatchStream(task.build_dataset(), cfg, rank, world, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    resume = _ResumePoint.find(run_dir, cfg, rank, world)
    ds_config = build_ds_config(cfg, world, device, num_params=sum(p.numel() for p in model.parameters()))
    if resume is not None and resume.universal is not None:
        ds_config["checkpoint"] = {"load_universal": True}
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=trainable,
        config=ds_config,
        lr_scheduler=make_lr_scheduler(cfg),
    )
    if world == 1 and cfg.zero_stage == 0:
        engine.enable_backward_allreduce = False  # an all-reduce over one rank only copies the gradients
    ema = ShardedEma(local_master_tensors(engine), cfg.ema_decay, cfg.ema_warmup) if cfg.ema else None
    generator = torch.Generator(device=device)
    generator.manual_seed(rank_seed(cfg.seed, rank))
    seed_everything(rank_seed(cfg.seed, rank))

    state = _LoopState(step=0, position=ckpt.DataPosition())
    resumed_from = _resume(engine, resume, rank, world, ema, generator, state)
    stream.seek(state.position)
    metrics = MetricsWriter(run_dir, enabled=rank == 0)
    if rank == 0 and resumed_from is not None:
        truncate_after(metrics.path, resumed_from)

    state.checkpointed_layers = checkpointed
    _run_steps(engine, task, stream, generator, ema, metrics, cfg, run_dir, state, rank, world)
    finished = state.step >= cfg.max_steps
    export_dir = _export(engine, task, ema, cfg, run_dir, rank) if finished else None
    result = _result(
        engine, cfg, run_dir, state, ema, resumed_from, export_dir, finished, device, rank, world
    )
    if rank == 0:
        ckpt.atomic_write_text(run_dir / RESULT_FILE, result.to_json())
    dist.barrier()
    return result


@dataclass(frozen=True)
class _ResumePoint:
    step_dir: Path
    info: ckpt.CheckpointInfo
    universal: Path | None
    """The universal form of `step_dir` when this run has a different number of ranks (ZeRO-3)."""

    @classmethod
    def find(cls, run_dir: Path, cfg: TrainerConfig, rank: int, world: int) -> _ResumePoint | None:
        """The checkpoint to resume from; converted (by rank 0, before DeepSpeed starts, so that its config
        can say `load_universal`) when it was written by another number of ranks at ZeRO-3."""
        from svd_core.training import universal

        step_dir = ckpt.find_resume_point(run_dir) if cfg.resume else None
        if step_dir is None:
            return None
        info = ckpt.read_info(step_dir)
        ckpt.check_compatible(info, step_dir, world, cfg.zero_stage)
        if info.world_size == world or cfg.zero_stage == 0:
            return cls(step_dir, info, None)
        if rank == 0:
            shards = None
            if cfg.ema:
                states = [ckpt.read_rank_state(step_dir, r) for r in range(info.world_size)]
                shards = None if states[0].get("ema") is None else [s["ema"]["shadow"] for s in states]
            universal.convert(step_dir, shards)
        dist.barrier()
        return cls(step_dir, info, universal.universal_root(step_dir))


def _resume(engine, point: _ResumePoint | None, rank, world, ema, generator, state: _LoopState) -> int | None:
    if point is None:
        return None
    step_dir, info = point.step_dir, point.info
    if point.universal is not None:
        _load_universal(engine, point, ema)
    else:
        load_path, _ = engine.load_checkpoint(str(step_dir.parent), tag=step_dir.name)
        if load_path is None:
            raise InputError(f"DeepSpeed could not load checkpoint {step_dir}; delete its `complete` file")
    # A rank the checkpoint did not have (more ranks than before) starts from rank 0's trainer state, with
    # its own RNG streams as a fresh run would seed them.
    own = rank < info.world_size
    rank_state = ckpt.read_rank_state(step_dir, rank if own else 0)
    if ema is not None and point.universal is None and rank_state.get("ema") is not None:
        ema.load_state_dict(rank_state["ema"])
    if own:
        ckpt.restore_rng_state(rank_state["rng"], generator)
    state.step = info.step
    batch = info.batch
    if info.world_size != world:
        from svd_core.training.universal import position_for_world

        batch = position_for_world(info.batch, info.world_size, world)
    state.position = ckpt.DataPosition(info.epoch, batch)
    state.last_checkpoint = step_dir
    if rank == 0:
        moved = f" written by {info.world_size} ranks, on {world}" if info.world_size != world else ""
        print(f"resumed from {step_dir} (step {state.step}){moved}", flush=True)
    return state.step


def _load_universal(engine, point: _ResumePoint, ema) -> None:
    """EMA first (loaded as the weights, then copied into this rank's EMA shards), then the real state."""
    from svd_core.training import universal

    assert point.universal is not None
    if ema is not None and (point.universal / universal.EMA_TAG).is_dir():
        engine.load_checkpoint(str(point.universal), tag=universal.EMA_TAG, load_optimizer_states=True)
        updates = ckpt.read_rank_state(point.step_dir, 0)["ema"]["num_updates"]
        ema.restart_from_masters(updates)
    load_path, _ = engine.load_checkpoint(str(point.universal), tag=universal.MODEL_TAG)
    if load_path is None:
        raise InputError(
            f"DeepSpeed could not load the universal form of {point.step_dir} ({point.universal})"
        )


def _run_steps(engine, task, stream, generator, ema, metrics, cfg, run_dir, state, rank, world) -> None:
    steps_this_run = 0
    remaining = min(cfg.max_steps - state.step, cfg.stop_after or cfg.max_steps)
    probe_at = 1 if remaining > 1 else 0  # step 2 has Adam's moments (made lazily at step 1) and grads
    while state.step < cfg.max_steps and (cfg.stop_after is None or steps_this_run < cfg.stop_after):
        started = time.perf_counter()
        lr = engine.get_lr()[0]
        losses = _accumulate_and_check(engine, task, stream, generator, cfg, state, run_dir, world)
        own_norm = _clip_plain_gradients(engine, cfg)
        if steps_this_run == probe_at:
            probe_started = time.perf_counter()
            state.state_bytes = live_tensor_bytes(local_master_tensors(engine))
            started += time.perf_counter() - probe_started  # keep the probe out of step_time_s
        engine.step()
        if stream.device.type == "cuda":
            torch.cuda.synchronize()
        state.step += 1
        steps_this_run += 1
        if ema is not None:
            ema.update()
        state.last_loss = sum(losses) / len(losses)
        metrics.add(state.last_loss, time.perf_counter() - started, cfg.total_batch_size)
        stopping = state.step >= cfg.max_steps or steps_this_run == cfg.stop_after
        if state.step % cfg.log_every == 0 or stopping:
            grad_norm = own_norm if own_norm is not None else _grad_norm(engine)
            row = metrics.flush_row(state.step, state.position.epoch, lr, grad_norm)
            if rank == 0 and row is not None:
                print(f"step {state.step}/{cfg.max_steps} loss {row['loss']:.6g} lr {lr:.3g}", flush=True)
        if state.step % cfg.checkpoint_every == 0 or stopping:
            _save(engine, run_dir, cfg, state, ema, generator, rank, world)


def _accumulate_and_check(engine, task, stream, generator, cfg, state, run_dir, world) -> list[float]:
    """Forward/backward all micro-batches; return each rank's mean loss, raising (on every rank) if any
    is not finite, before the boundary `engine.step()` could apply NaN gradients."""
    loss_sum = torch.zeros((), dtype=torch.float32, device=stream.device)
    for micro in range(cfg.accumulation_steps):
        batch = stream.next_batch()
        loss = task.compute_loss(engine, batch, generator)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"compute_loss must return a scalar tensor, got {type(loss).__name__}")
        engine.backward(loss)
        loss_sum += loss.detach().float()
        if micro < cfg.accumulation_steps - 1:
            engine.step()  # not a boundary: DeepSpeed only counts the micro-step
    state.position = stream.position
    gathered = [torch.zeros_like(loss_sum) for _ in range(world)]
    dist.all_gather(gathered, loss_sum / cfg.accumulation_steps)
    losses = [float(t) for t in gathered]
    bad = [r for r, value in enumerate(losses) if not math.isfinite(value)]
    if bad:
        last_good = ckpt.find_resume_point(run_dir)
        raise TrainingDivergedError(
            f"loss became {losses[bad[0]]} at step {state.step + 1} on rank(s) {bad}; training stopped "
            f"before the optimizer step and saved nothing. Last good checkpoint: {last_good or 'none'}. "
            f"Fix the cause (e.g. lower lr={cfg.lr}, grad_clip={cfg.grad_clip}, check the data) and run "
            "again with the same run directory to resume from it"
        )
    return losses


def _clip_plain_gradients(engine, cfg: TrainerConfig) -> float | None:
    """Stage 0 in fp32: DeepSpeed's clipping here computes the norm and drops it, so the trainer clips
    instead (`trainer_clips_gradients`: DeepSpeed's clipping is off) and keeps the pre-clip norm."""
    if not trainer_clips_gradients(cfg, "bf16" if engine.bfloat16_enabled() else "fp32"):
        return None
    grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
    if not grads:
        return None
    norm = torch.nn.utils.get_total_norm(grads)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grads_with_norm_(engine.module.parameters(), cfg.grad_clip, norm)
    return float(norm)


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    if norm is None:
        return None
    return float(norm.item() if isinstance(norm, torch.Tensor) else norm)


def _save(engine, run_dir, cfg, state: _LoopState, ema, generator, rank, world) -> None:
    root = ckpt.checkpoint_root(run_dir)
    if rank == 0:
        ckpt.prepare_step_dir(root, state.step)
    dist.barrier()
    position = asdict(state.position)
    client_state = {"svd_trainer": {"step": state.step, **position, "world_size": world}}
    engine.save_checkpoint(
        str(root), tag=ckpt.step_tag(state.step), client_state=client_state, save_latest=False
    )
    step_dir = root / ckpt.step_tag(state.step)
    rank_state = {"rng": ckpt.capture_rng_state(generator), "ema": ema.state_dict() if ema else None}
    ckpt.write_rank_state(step_dir, rank, rank_state)
    dist.barrier()  # every rank's files are in place before the marker says so
    if rank == 0:
        info = ckpt.make_info(state.step, world, cfg.zero_stage, state.position)
        ckpt.publish(root, info, cfg.keep_last)
    dist.barrier()
    state.last_checkpoint = step_dir


def _export(engine, task, ema, cfg, run_dir: Path, rank: int) -> str:
    """Gather full fp32 weights (EMA or final, per config) and publish `run_dir/export` atomically."""
    use_ema = ema is not None and cfg.exports_ema
    with ema.swapped_in() if use_ema else contextlib.nullcontext():
        state = gather_full_state_dict(engine, rank)
    out_dir = run_dir / EXPORT_DIR
    if rank == 0:
        staging = run_dir / ".export-staging"  # leftovers of a crashed export are cleared first
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        task.export(state, staging)
        ckpt.replace_dir(staging, out_dir)
        print(f"exported {'EMA' if use_ema else 'final'} weights to {out_dir}", flush=True)
    dist.barrier()
    return str(out_dir)


def _result(engine, cfg, run_dir, state, ema, resumed_from, export_dir, finished, device, rank, world):
    local, total = local_param_numel(engine.module)
    memory = {"state_bytes": state.state_bytes, **peak_process_memory()}
    mine = (local, sum(m.numel() for m in local_master_tensors(engine)), ema.numel() if ema else 0, memory)
    everyone: list[Any] = [None] * world
    dist.all_gather_object(everyone, mine)
    return TrainResult(
        run_dir=str(run_dir),
        step=state.step,
        finished=finished,
        last_loss=state.last_loss,
        checkpoint=str(state.last_checkpoint) if state.last_checkpoint else None,
        export_dir=export_dir,
        resumed_from_step=resumed_from,
        world_size=world,
        zero_stage=cfg.zero_stage,
        precision=resolve_precision(cfg, device),
        device=device.type,
        param_numel_total=total,
        param_numel_per_rank=[e[0] for e in everyone],
        master_numel_per_rank=[e[1] for e in everyone],
        ema_numel_per_rank=[e[2] for e in everyone],
        memory_per_rank=[e[3] for e in everyone],
        checkpointed_layers=state.checkpointed_layers,
    )
