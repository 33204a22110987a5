"""`run_dir/metrics.jsonl`: one JSON object per logged step, appended by rank 0.

Rows: `step, loss, lr, grad_norm, samples_per_s, step_time_s, epoch, time`. `loss` is the mean over all
ranks and micro-batches of the steps since the previous row; `samples_per_s` counts every rank's samples.
The integration layer tails this file (MLflow). On resume, rows after the checkpoint's step are dropped
(the file is rewritten atomically), so the file always holds one history; a tailer that sees the file
shrink or change inode should re-read it from the start.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import resource
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All rows of a metrics file (a torn last line from a crash is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_after(path: Path, step: int) -> int:
    """Keep only rows with `step <= step` (atomic rewrite); returns how many rows were dropped."""
    rows = read_metrics(path)
    kept = [row for row in rows if row.get("step", 0) <= step]
    if len(kept) == len(rows) and path.is_file() and path.read_text().endswith("\n"):
        return 0
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
    os.replace(tmp, path)
    return len(rows) - len(kept)


class MetricsTail:
    """Reads the rows appended to a metrics file since the last call (follows the atomic rewrite on resume).

    For consumers that follow a run while it trains: the launcher's progress callback, an MLflow logger.
    A rewrite (new inode, or a shorter file) restarts from the top, and rows already returned are skipped
    by step, so every step is delivered once, with the values of the run's final history.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._inode: int | None = None
        self._last_step = 0

    def new_rows(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset = stat.st_ino, 0
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a torn last line waits for the next call
        self._offset += len(complete)
        rows = []
        for line in complete.decode().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if row.get("step", 0) > self._last_step:
                    rows.append(row)
                    self._last_step = row["step"]
        return rows


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN/inf; a missing value reads better downstream than a string.
    return value if value is not None and math.isfinite(value) else None


@dataclass
class MetricsWindow:
    """Accumulates per-step numbers between two logged rows."""

    losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    samples: int = 0

    def add(self, loss: float, step_time_s: float, samples: int) -> None:
        self.losses.append(loss)
        self.step_times.append(step_time_s)
        self.samples += samples

    def row(self, step: int, epoch: int, lr: float, grad_norm: float | None) -> dict[str, Any]:
        total_time = sum(self.step_times)
        return {
            "step": step,
            "loss": sum(self.losses) / len(self.losses),
            "lr": lr,
            "grad_norm": _finite_or_none(grad_norm),
            "samples_per_s": self.samples / total_time if total_time > 0 else None,
            "step_time_s": total_time / len(self.step_times),
            "epoch": epoch,
            "time": time.time(),
        }


class MetricsWriter:
    """Appends rows to `run_dir/metrics.jsonl`; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.window = MetricsWindow()

    def add(self, loss: float, step_time_s: float, samples: int) -> None:
        self.window.add(loss, step_time_s, samples)

    def flush_row(self, step: int, epoch: int, lr: float, grad_norm: float | None) -> dict[str, Any] | None:
        if not self.window.losses:
            return None
        row = self.window.row(step, epoch, lr, grad_norm)
        self.window = MetricsWindow()
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
        return row


def live_tensor_bytes(extra: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct tensor storages alive in this process (all devices).

    Taken inside a training step after backward, this is the model state a rank holds: weights, gradients,
    fp32 masters, optimizer moments, EMA and DeepSpeed's buffers (views and aliases counted once).
    Gradients are reached through parameters (their Python objects may not exist yet); pass the optimizer's
    master tensors as `extra` so their `.grad` is seen too.
    """
    sizes: dict[tuple[str, int], int] = {}

    def visit(tensor: object) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.is_meta:
            return
        storage = tensor.untyped_storage()
        if storage.data_ptr() != 0:
            key = (str(tensor.device), storage.data_ptr())
            sizes[key] = max(sizes.get(key, 0), storage.nbytes())

    with warnings.catch_warnings():  # isinstance on deprecated proxies (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            with contextlib.suppress(Exception):  # exotic proxies may fail isinstance/attribute access
                if isinstance(obj, torch.Tensor):
                    visit(obj)
                    if isinstance(obj, torch.nn.Parameter):
                        visit(obj.grad)
    for tensor in extra:
        visit(tensor)
        visit(tensor.grad)
    return sum(sizes.values())


def peak_process_memory() -> dict[str, int | None]:
    """High-water marks: resident set size of this process, and CUDA allocations when on GPU."""
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    return {"peak_rss_bytes": int(rss_kib) * 1024, "peak_cuda_bytes": cuda}


@dataclass
class TrainResult:
    """What a finished (or `stop_after`-paused) run reports; also written to `run_dir/result.json`."""

    run_dir: str
    step: int
    finished: bool
    last_loss: float | None
    checkpoint: str | None
    export_dir: str | None
    resumed_from_step: int | None
    world_size: int
    zero_stage: int
    precision: str
    device: str
    param_numel_total: int
    param_numel_per_rank: list[int]
    master_numel_per_rank: list[int]
    ema_numel_per_rank: list[int]
    memory_per_rank: list[dict[str, int | None]]
    """Per rank: `state_bytes` (live tensors after backward of this invocation's 2nd step: weights, grads,
    masters, Adam moments, EMA), `peak_rss_bytes` (process high-water mark), `peak_cuda_bytes` (GPU only)."""
    checkpointed_layers: int = 0
    """Layers under activation checkpointing (`trainer.gradient_checkpointing`); 0 when it is off."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        return cls(**json.loads(text))


def local_param_numel(module: torch.nn.Module) -> tuple[int, int]:
    """(elements this rank holds, elements in the model): ZeRO-3 partitions vs the full parameters."""
    local = total = 0
    for param in module.parameters():
        if hasattr(param, "ds_tensor"):  # a ZeRO-3 partition: DeepSpeed adds ds_tensor and ds_numel
            zero_param: Any = param
            local += zero_param.ds_tensor.numel()
            total += zero_param.ds_numel
        else:
            local += param.numel()
            total += param.numel()
    return local, total
