"""Parameter + optimizer memory per rank, ZeRO-0 vs ZeRO-3, two ranks, measured side by side in one run.

Run: .venv/bin/python bench/bench_zero_memory.py [--precision fp32 bf16] [--unet small|tiny]

Each configuration trains a diffusers SVD UNet (`SMALL_UNET`, 28M parameters) for two steps through the
real launcher and trainer. Every rank measures its model state after the second step's backward (live
tensor storages: weights, gradients, fp32 masters, Adam moments, EMA, DeepSpeed buffers; on GPU the
trainer also reports the CUDA peak). Target: ZeRO-3 <= 0.6x ZeRO-0 per rank.

Expected per rank with N=2 ranks (psi parameters, Adam, EMA on):
  fp32: ZeRO-0 = 4 weights + 4 grads + 8 moments + 4 EMA = 20 psi; ZeRO-3 = (4 weights + 4 masters + 4 grads
        + 8 + 4) / N = 12 psi -> 0.60 (ZeRO-3 keeps separate fp32 masters even when weights are fp32)
  bf16: ZeRO-0 = 2 + 2 + 4 masters + 8 + 4 = 20 psi; ZeRO-3 = 20 psi / N = 10 psi -> 0.50 (the GPU default)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from diffusers import UNetSpatioTemporalConditionModel

from svd_core.training.config import TrainerConfig
from svd_core.training.launch import launch
from svd_core.training.testing import SMALL_UNET, TASK_FACTORY, TINY_UNET

MIB = 2**20


def measure(stage: int, precision: str, unet: dict, unet_size: int, workdir: Path) -> dict:
    cfg = TrainerConfig(
        max_steps=2,
        warmup_steps=1,
        checkpoint_every=1000,
        num_workers=0,
        micro_batch_size=1,
        ranks=2,
        zero_stage=stage,
        precision=precision,
        device="auto",
        param_persistence_threshold=0,
        log_every=1,
        # Buckets in proportion to the model as the defaults are to SVD's UNet (5e7 of 1.5e9 elements, 3%);
        # DeepSpeed allocates them up front, so model-sized buckets would dominate a small model's footprint.
        reduce_bucket_size=max(1, unet_size // 30),
        allgather_bucket_size=max(1, unet_size // 30),
    )
    task = {"unet": unet, "height": 16, "width": 16, "dataset_size": 8}
    result = launch(TASK_FACTORY, task, cfg, workdir / f"zero{stage}-{precision}")
    return {
        "psi": result.param_numel_total,
        "state": [m["state_bytes"] for m in result.memory_per_rank],
        "rss": [m["peak_rss_bytes"] for m in result.memory_per_rank],
        "cuda": [m["peak_cuda_bytes"] for m in result.memory_per_rank],
        "params": result.param_numel_per_rank,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--unet", default="small", choices=["small", "tiny"])
    args = parser.parse_args()
    unet = SMALL_UNET if args.unet == "small" else TINY_UNET
    size = sum(p.numel() for p in UNetSpatioTemporalConditionModel(**unet).parameters())
    with tempfile.TemporaryDirectory(prefix="bench-zero-") as tmp:
        for precision in args.precision:
            runs = {stage: measure(stage, precision, unet, size, Path(tmp)) for stage in (0, 3)}
            psi = runs[0]["psi"]
            print(f"\n{precision}: UNet with {psi / 1e6:.1f}M parameters, 2 ranks")
            for stage, run in runs.items():
                per_rank = ", ".join(f"{b / MIB:.0f} MiB ({b / psi:.1f} B/param)" for b in run["state"])
                rss = ", ".join(f"{b / MIB:.0f}" for b in run["rss"])
                print(f"  ZeRO-{stage}: model state per rank {per_rank}; peak RSS MiB {rss}")
                if run["cuda"][0] is not None:
                    print(f"           peak CUDA MiB {[round(b / MIB) for b in run['cuda']]}")
            ratio = max(runs[3]["state"]) / max(runs[0]["state"])
            verdict = "meets" if ratio <= 0.6 else "misses"
            print(f"  ratio ZeRO-3 / ZeRO-0 (model state per rank): {ratio:.3f} ({verdict} target <= 0.6)")
            if runs[0]["cuda"][0] is not None:
                print(f"  ratio (CUDA peak): {max(runs[3]['cuda']) / max(runs[0]['cuda']):.3f}")
            print(
                f"  ratio (peak RSS, includes the full model built before sharding and libraries): "
                f"{max(runs[3]['rss']) / max(runs[0]['rss']):.3f}"
            )


if __name__ == "__main__":
    main()
