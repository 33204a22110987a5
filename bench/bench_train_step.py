"""Training throughput: our DeepSpeed trainer's step vs a plain diffusers + torch loop, in one run.

Run: .venv/bin/python bench/bench_train_step.py [--unet tiny|small] [--steps 12] [--rounds 2]

Both train the same diffusers `UNetSpatioTemporalConditionModel` on the same data, batch, loss
(`svd_core.training.testing.denoising_loss`) and AdamW with gradient clipping, one process, fp32. The
plain loop is what a diffusers user writes: DataLoader, forward, backward, clip, step, zero_grad. Ours is
`train()` (DeepSpeed engine, loss all-gather and NaN check, lr schedule, metrics); its per-step wall time
comes from its own metrics.jsonl. Rounds alternate plain / ours so machine load hits both alike; the
first `--skip` steps of every round are warm-up and not counted. Target: ours >= 0.9x the plain loop.

Clock: on CPU (`--clock cpu`, the default there) both sides time each step in process CPU seconds with one
torch thread, so other processes on a shared machine do not skew the ratio (wall time on a busy box varied
7x between identical steps); the trainer's step clock is pointed at `time.process_time` for the run. On a
GPU use `--clock wall`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from pathlib import Path

import torch

from svd_core.device import resolve_device
from svd_core.training import trainer as trainer_module
from svd_core.training.config import TrainerConfig
from svd_core.training.metrics import read_metrics
from svd_core.training.testing import SMALL_UNET, TASK_FACTORY, TINY_UNET, tiny_unet_task
from svd_core.training.trainer import train


def trainer_config(args: argparse.Namespace, zero_stage: int, ema: bool) -> TrainerConfig:
    return TrainerConfig(
        max_steps=args.steps,
        warmup_steps=0,
        micro_batch_size=args.batch,
        num_workers=0,
        ranks=1,
        zero_stage=zero_stage,
        ema=ema,
        precision="fp32",
        checkpoint_every=10**6,  # the one final checkpoint is written after the timed steps
        log_every=1,
        device=args.device,
    )


CLOCK = time.perf_counter


def use_clock(kind: str) -> None:
    """Time steps in wall seconds or in this process's CPU seconds (both here and inside the trainer)."""
    global CLOCK
    CLOCK = time.process_time if kind == "cpu" else time.perf_counter
    trainer_module.time = types.SimpleNamespace(perf_counter=CLOCK, time=time.time)
    if kind == "cpu":
        torch.set_num_threads(1)


def plain_loop_step_times(task_config: dict, cfg: TrainerConfig) -> list[float]:
    device = resolve_device(cfg.device)
    task = tiny_unet_task(task_config)
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(task.build_dataset(), batch_size=cfg.micro_batch_size, shuffle=True)
    generator = torch.Generator(device=device).manual_seed(0)
    batches, times = iter(loader), []
    for _ in range(cfg.max_steps):
        started = CLOCK()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = task.compute_loss(model, batch, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # what a loop logs; also synchronises a GPU
        times.append(CLOCK() - started)
    return times


def our_step_times(task_config: dict, cfg: TrainerConfig, run_dir: Path) -> list[float]:
    train(TASK_FACTORY, task_config, cfg, run_dir)
    return [row["step_time_s"] for row in read_metrics(run_dir / "metrics.jsonl")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--size", type=int, default=16, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps per round, not counted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--clock", choices=["cpu", "wall"], help="default: cpu on CPU, wall on GPU")
    args = parser.parse_args()
    clock = args.clock or ("wall" if resolve_device(args.device).type == "cuda" else "cpu")
    use_clock(clock)
    unet = TINY_UNET if args.unet == "tiny" else SMALL_UNET
    task_config = {"unet": unet, "height": args.size, "width": args.size, "dataset_size": 64}
    variants = {
        "plain loop": None,
        "ours ZeRO-0": (0, False),
        "ours ZeRO-2 (default stage)": (2, False),
        "ours ZeRO-0 + EMA": (0, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        for round_index in range(args.rounds):
            for name, variant in variants.items():
                if variant is None:
                    step_times = plain_loop_step_times(task_config, trainer_config(args, 0, False))
                else:
                    cfg = trainer_config(args, *variant)
                    run_dir = Path(tmp) / f"{name.replace(' ', '_')}-{round_index}"
                    step_times = our_step_times(task_config, cfg, run_dir)
                times[name] += step_times[args.skip :]
    samples = args.batch
    timed = args.steps - args.skip
    print(f"\nUNet {args.unet}, latents {args.size}x{args.size}, batch {samples}, "
          f"{args.rounds} rounds x {timed} "
          f"timed steps, {clock} clock; samples/s from the median and the fastest step")  # fmt: skip
    base_median = samples / statistics.median(times["plain loop"])
    base_best = samples / min(times["plain loop"])
    for name, values in times.items():
        median, best = samples / statistics.median(values), samples / min(values)
        print(f"  {name:28s} median {median:7.2f}/s (x{median / base_median:.3f})   "
              f"best {best:7.2f}/s (x{best / base_best:.3f})")  # fmt: skip
    plain, ours = times["plain loop"], times["ours ZeRO-0"]
    median_ratio = statistics.median(plain) / statistics.median(ours)
    print(f"ratio ours (ZeRO-0) / plain loop: median {median_ratio:.3f}, best {min(plain) / min(ours):.3f} "
          "(target >= 0.9)")  # fmt: skip


if __name__ == "__main__":
    main()
