"""`TrainerConfig`: how the generic DeepSpeed trainer runs (optimiser, precision, ZeRO, EMA, checkpoints).

What is trained (model, data, objective) is a `TrainTask`'s business; this config only says how. Defaults
follow the SVD paper's image-to-video finetune (arXiv 2311.15127, section 4 and appendix D): AdamW at lr 3e-5,
EMA 0.9999. The global batch (`global_batch_size`, paper: 768) is the unit; accumulation is derived from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from svd_core.config import StageConfig


class TrainerConfig(StageConfig):
    """Settings of one training run; every rank reads the same resolved copy."""

    # --- schedule -------------------------------------------------------------------------------------
    max_steps: int = Field(50_000, ge=1)
    """Optimizer steps to train for (paper: 50k for each image-to-video finetune, 12k for SVD-MV)."""

    global_batch_size: int | None = Field(None, ge=1)
    """Samples per optimizer step over all ranks: the unit of the recipe (paper: 1536 video pretraining,
    768 finetunes, 16 SVD-MV). Accumulation is derived as global / (micro_batch_size * ranks), so changing
    `ranks` keeps the recipe; a global batch that is not a multiple of micro * ranks is an error. None:
    micro_batch_size * gradient_accumulation_steps * ranks (small runs where the batch does not matter)."""

    micro_batch_size: int = Field(1, ge=1)
    """Samples per rank per forward/backward: what fits one GPU (bench/bench_activation_memory.py)."""

    gradient_accumulation_steps: int | None = Field(None, ge=1)
    """Micro-batches accumulated per optimizer step. None: derived from `global_batch_size` (1 without
    it); set it only without a global batch, or to the same value (else the mismatch is an error)."""

    # --- optimiser (AdamW) ----------------------------------------------------------------------------
    lr: float = Field(3e-5, gt=0)
    """Peak learning rate. Paper: 3e-5 image/text-to-video finetunes, 1e-5 SVD-MV, 1e-4 interpolation."""

    adam_beta1: float = Field(0.9, ge=0, lt=1)
    """AdamW beta1 (not published in the paper; torch's default)."""

    adam_beta2: float = Field(0.999, ge=0, lt=1)
    """AdamW beta2 (not published in the paper; torch's default)."""

    adam_eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""

    weight_decay: float = Field(0.01, ge=0)
    """AdamW decoupled weight decay (torch's default; the paper does not publish one)."""

    warmup_steps: int = Field(1_000, ge=0)
    """Linear warm-up from 0 to `lr` over this many steps (generative-models' configs warm up linearly)."""

    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """After warm-up: constant (generative-models' default), or cosine / linear decay to `min_lr_ratio`."""

    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """Final lr as a fraction of `lr` for the cosine and linear schedules."""

    grad_clip: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping."""

    # --- precision and ZeRO ---------------------------------------------------------------------------
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`auto`: bf16 mixed precision on GPU, fp32 on CPU. fp16 is not offered: SVD users report fp16 NaNs."""

    zero_stage: int = Field(2, ge=0, le=3)
    """DeepSpeed ZeRO stage: 0 plain data parallel, 1 shards optimizer states, 2 also gradients, 3 also
    parameters (per rank 16psi/N bytes with Adam in mixed precision; psi = 1.5B for SVD's UNet). With one
    rank, stages 1-3 only add buffer copies (measured 0.67x the speed of stage 0 on CPU): use 0 there."""

    offload_optimizer: Literal["none", "cpu"] = "none"
    """Keep optimizer states in CPU memory (ZeRO-Offload, stage >= 1; uses DeepSpeed's CPU Adam)."""

    offload_param: Literal["none", "cpu"] = "none"
    """Keep parameter partitions in CPU memory between uses (stage 3 only)."""

    reduce_bucket_size: int = Field(50_000_000, ge=1)
    """Elements per gradient reduce bucket. Explicit because accelerate's `auto` needs `hidden_size`,
    which UNets lack; 5e7 elements is 100 MB in bf16, large enough to keep links busy, small enough to fit."""

    allgather_bucket_size: int = Field(50_000_000, ge=1)
    """Elements per parameter all-gather bucket (ZeRO 1/2) and per prefetch (ZeRO-3)."""

    param_persistence_threshold: int = Field(100_000, ge=0)
    """ZeRO-3 keeps parameters with fewer elements than this gathered on every rank (saves tiny
    all-gathers of norms and biases at a small memory cost); 0 partitions every parameter."""

    gradient_checkpointing: bool = False
    """Activation checkpointing over every spatial and temporal resnet/transformer layer of the UNet
    (`svd_core.training.activation_checkpointing`): each layer keeps only its inputs and is recomputed in
    backward, about one extra forward of compute. Measured (bench/bench_activation_memory.py) it keeps the
    paper presets inside 80 GB per GPU; off by default because the tiny CPU presets fit without it and run
    faster, on in every `svd`-preset config."""

    # --- EMA ------------------------------------------------------------------------------------------
    ema: bool = True
    """Keep an exponential moving average of the weights (paper: EMA 0.9999 for the high-res finetunes).
    Each rank averages only the fp32 master weights it owns, so under ZeRO-3 the EMA is sharded too."""

    ema_decay: float = Field(0.9999, gt=0, lt=1)
    """EMA decay per optimizer step (paper: 0.9999)."""

    ema_warmup: bool = True
    """Warm the EMA up as generative-models' LitEma does: the decay of update t is min(ema_decay,
    (1 + t) / (10 + t)), so the average follows the weights early instead of staying near the initial
    model for ~1/(1 - 0.9999) = 10k steps."""

    export_weights: Literal["auto", "final", "ema"] = "auto"
    """Which weights `export` writes: the EMA (`auto` when `ema` is on) or the final optimizer weights."""

    # --- checkpoints ----------------------------------------------------------------------------------
    checkpoint_every: int = Field(1_000, ge=1)
    """Save a resumable checkpoint every N optimizer steps (and always after the last step)."""

    keep_last: int = Field(3, ge=1)
    """Complete checkpoints to keep; older ones are deleted once a newer one is complete."""

    resume: bool = True
    """Continue from the run directory's latest complete checkpoint when there is one."""

    max_restarts: int = Field(0, ge=0)
    """Elastic restarts: when a rank crashes or is killed (not on NaN/divergence or a config/input error),
    the launcher starts all ranks again, on a fresh rendezvous port, from the newest complete checkpoint, up
    to this many times (torchrun's `--max-restarts`, done by our launcher because torchrun's restarted ranks
    failed gloo's rendezvous on CPU). Needs `resume=true`. A run restarted by hand with another `ranks`
    resumes too (ZeRO-3 through a universal checkpoint)."""

    stop_after: int | None = Field(None, ge=1)
    """Stop cleanly (with a checkpoint) after this many steps in this invocation, for time-boxed jobs on
    preemptible machines; run again with the same run directory to continue. None: run to `max_steps`."""

    # --- run ------------------------------------------------------------------------------------------
    seed: int = 0
    """Seed of data order, noise and model init; a resumed run restores every rank's RNG states instead."""

    num_workers: int = Field(2, ge=0)
    """DataLoader worker processes per rank (0 loads in the rank process)."""

    ranks: int = Field(1, ge=1)
    """Total number of training processes (GPUs, or CPU processes on a CPU machine) across all nodes."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` trains on CUDA when a GPU is visible, else on CPU (gloo); `cuda` fails fast without one."""

    log_every: int = Field(10, ge=1)
    """Append a metrics row (loss, lr, grad_norm, samples_per_s, step_time_s) every N steps."""

    launcher: Literal["local", "torchrun"] = "local"
    """How one machine's ranks start. `local`: the launcher spawns one process per rank itself (own log and
    process group per rank). `torchrun`: PyTorch's launcher (`torch.distributed.run --standalone`) starts
    them; ranks still write their own logs and error reports. Restarts after a crash: `max_restarts` (our
    launcher restarts torchrun too; torchrun's own restarted ranks failed to rendezvous on CPU/gloo)."""

    hostfile: Path | None = None
    """DeepSpeed hostfile (`host slots=N` per line) for multi-node runs, launched with `deepspeed
    --hostfile`; the run directory must be on storage every node sees. None: all ranks on this machine."""

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainerConfig:
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError(f"offload_param={self.offload_param} needs zero_stage=3 (got {self.zero_stage})")
        if self.offload_optimizer != "none" and self.zero_stage == 0:
            raise ValueError(
                "offload_optimizer needs zero_stage >= 1; set zero_stage=2 or offload_optimizer=none"
            )
        if self.export_weights == "ema" and not self.ema:
            raise ValueError("export_weights=ema needs ema=true; set ema=true or export_weights=final")
        self._check_batch()
        if self.launcher == "torchrun" and self.hostfile is not None:
            raise ValueError(
                "launcher=torchrun starts one machine's ranks; with a hostfile use launcher=local"
            )
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds max_steps={self.max_steps}; lower it")
        return self

    def _check_batch(self) -> None:
        per_pass = self.micro_batch_size * self.ranks
        if self.global_batch_size is None:
            return
        if self.global_batch_size % per_pass:
            lower = max(per_pass, self.global_batch_size // per_pass * per_pass)
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is not a multiple of micro_batch_size="
                f"{self.micro_batch_size} x ranks={self.ranks} = {per_pass}; use global_batch_size={lower} or "
                f"{(self.global_batch_size // per_pass + 1) * per_pass}, or change micro_batch_size/ranks"
            )
        derived = self.global_batch_size // per_pass
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps != derived:
            raise ValueError(
                f"gradient_accumulation_steps={self.gradient_accumulation_steps} but global_batch_size="
                f"{self.global_batch_size} / (micro_batch_size={self.micro_batch_size} x ranks={self.ranks}) "
                f"= {derived}; drop gradient_accumulation_steps (it is derived) or fix global_batch_size"
            )

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step: set, derived from the global batch, or 1."""
        if self.gradient_accumulation_steps is not None:
            return self.gradient_accumulation_steps
        if self.global_batch_size is not None:
            return self.global_batch_size // (self.micro_batch_size * self.ranks)
        return 1

    @property
    def total_batch_size(self) -> int:
        """Samples per optimizer step over all ranks (the global batch, given or implied)."""
        return self.micro_batch_size * self.accumulation_steps * self.ranks

    @property
    def exports_ema(self) -> bool:
        return self.export_weights == "ema" or (self.export_weights == "auto" and self.ema)
