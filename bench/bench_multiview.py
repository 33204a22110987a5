"""Multi-view fine-tune in miniature: SVD-MV (from the video model) vs SD2.1-MV (same recipe from the image
model), plus the wall time of a `tiny` multi-view run, all through the platform in one run.

Run: .venv/bin/python bench/bench_multiview.py [--objects 10] [--views 8] [--size 32] [--steps 30]

What it does, in a throwaway SVD_HOME (embedded MLflow):
1. Renders `--objects` orbits (`svd data orbits`; `--held-out` of them are the evaluation objects) and, as
   video data, turntable clips of OTHER procedural objects (disjoint seeds) written as an LVD-style table.
2. Pretrains the tiny VAE on the clips' frames (`--vae-steps`; the stages train only the UNet, and with a
   random VAE every decoded view is noise, so pixel metrics would compare noise with noise), then trains and
   registers the tiny base chain from it: stage I image model on single frames (`svd-image/1`), then the
   stage-II image-to-video model inflated from it on the clips (`svd-video/1`).
3. Runs the multi-view recipe twice with identical settings: from `svd-video/1` (SVD-MV) and from
   `svd-image/1` inflated with identity temporal layers (`init.base_kind=image_stage`, SD2.1-MV), each
   registered and evaluated on the same held-out objects (PSNR, SSIM; LPIPS / CLIP-S only with weights).
Miniature settings (both arms alike): lr 1e-4 and no EMA, because 30 steps at the paper's lr 1e-5 with EMA
0.99 would leave both arms at their initialisation. The paper's gap (PSNR 16.83 vs 15.06, CLIP-S 0.89 vs
0.83) comes from 12k steps on 150K objects after full video pretraining; at this scale expect noise-level
differences, and read the printed numbers as a smoke test of the comparison, not as a reproduction.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from svd_core.tasks.multiview.config import OrbitRenderConfig
from svd_core.tasks.multiview.orbits import Camera, render_view
from svd_core.tasks.multiview.shapes import random_object
from svd_core.video.writer import write_mp4

ROOT = Path(__file__).resolve().parents[1]


def turntable_table(out: Path, clips: int, frames: int, size: int, seed: int) -> str:
    """`clips` MP4 turntables (8 fps, 12 degrees per frame) of procedural objects, as an LVD-style table."""
    rows = []
    for i in range(clips):
        rng = np.random.default_rng([seed, i])
        scene = random_object(rng)
        elevation, start = float(rng.uniform(-5, 30)), float(rng.uniform(0, 360))
        video = np.stack(
            [
                render_view(scene, Camera(start + 12.0 * k, elevation, 3.2, 40.0, size), 1)
                for k in range(frames)
            ]
        )
        path = write_mp4(video, out / f"turntable_{i:03d}.mp4", fps=8)
        rows.append(
            {
                "clip_id": f"t{i}",
                "video_id": f"t{i}",
                "source_uri": f"file://{path}",
                "clip_uri": f"file://{path}",
                "fps": 8.0,
                "num_frames": frames,
                "duration_s": frames / 8,
                "width": size,
                "height": size,
                "flow_score": 1.0,
                "caption": "a rotating object",
            }
        )
    table = out / "lvd.parquet"
    pd.DataFrame(rows).to_parquet(table)
    return f"file://{table}"


def clip_frames(table: str) -> np.ndarray:
    from svd_core.video.writer import read_frames

    paths = pd.read_parquet(table.removeprefix("file://"))["clip_uri"]
    return np.concatenate([read_frames(p.removeprefix("file://"))[0] for p in paths])


def pretrain_vae(frames: np.ndarray, steps: int, seed: int = 0) -> torch.nn.Module:
    """The tiny VAE fitted to reconstruct `frames` (uint8 (N, H, W, 3)): MSE plus a small KL term."""
    from svd_core.model.build import build_vae
    from svd_core.model.config import TINY

    torch.manual_seed(seed)
    vae = build_vae(TINY, seed=seed).train()
    data = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = data[torch.randint(len(data), (8,))]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(), num_frames=1).sample
        loss = torch.nn.functional.mse_loss(recon, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mse = torch.nn.functional.mse_loss(recon.detach().clamp(-1, 1), batch).item() / 4  # in [0, 1] units
    print(
        f"VAE: {steps} steps, reconstruction PSNR on the last batch {10 * np.log10(1 / mse):.1f} dB",
        flush=True,
    )
    return vae.eval()


def initial_stage_one(folder: Path, vae: torch.nn.Module, size: int) -> str:
    """A stage-I pipeline folder: random tiny UNet and CLIP, the pretrained VAE (both arms share it)."""
    from svd_core.model.build import build_components
    from svd_core.model.config import TINY
    from svd_core.model.export import export_pipeline

    comp = build_components(TINY, "image", 1, sample_size=size // 8, image_unet=True)
    comp.vae = vae
    return str(export_pipeline(comp, folder, info={"stage": "image", "preset": "tiny"}))


def base_chain(table: str, start: str, args: argparse.Namespace) -> dict[str, str]:
    from flows import train_flow
    from svd_core.config import load_config
    from svd_core.tasks.stages.config import TrainStageConfig

    common = [
        f"height={args.size}",
        f"width={args.size}",
        f"trainer.max_steps={args.base_steps}",
        "trainer.warmup_steps=0",
        "trainer.num_workers=0",
        "trainer.ema=false",
        "trainer.lr=1e-4",
        f"trainer.checkpoint_every={args.base_steps}",
        "trainer.micro_batch_size=2",
        "data.fps_max=8",
    ]
    frames = {
        "image": ["num_frames=1", "init.kind=pipeline", f"init.pipeline_uri={start}"],
        "video": [f"num_frames={args.views}"],
    }
    configs = {
        stage: load_config(TrainStageConfig, ROOT / f"configs/train/{stage}.yaml", common + frames[stage])
        for stage in frames
    }
    return train_flow.step_train_all(configs, data=table)


def multiview_arm(
    base: str, kind: str, orbits: str, args: argparse.Namespace
) -> tuple[object, object, float, float]:
    from flows import multiview_flow
    from svd_core.config import load_config
    from svd_core.tasks.multiview.config import MultiViewConfig

    overrides = [
        f"num_views={args.views}",
        f"size={args.size}",
        f"data.held_out_objects={args.held_out}",
        f"init.base_kind={kind}",
        f"eval.num_inference_steps={args.eval_steps}",
        "trainer.lr=1e-4",
        "trainer.ema=false",
        "trainer.warmup_steps=0",
        "trainer.num_workers=0",
        f"trainer.checkpoint_every={args.steps}",
        f"trainer.micro_batch_size={args.batch}",
    ]
    if args.lpips_weights:
        overrides.append(f"eval.lpips_weights={args.lpips_weights}")
    if args.clip_model:
        overrides.append(f"eval.clip_model_uri={args.clip_model}")
    cfg = load_config(MultiViewConfig, ROOT / "configs/train/multiview.yaml", overrides)
    started = time.perf_counter()
    run = multiview_flow.step_train_multiview(cfg, base, data=orbits, max_steps=args.steps)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    scores = multiview_flow.step_evaluate_multiview(run)
    return run, scores, train_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10, help="orbit objects (train + held out)")
    parser.add_argument("--held-out", type=int, default=2, help="objects held out for evaluation")
    parser.add_argument("--views", type=int, default=8, help="views per orbit (paper: 21)")
    parser.add_argument(
        "--size", type=int, default=32, help="view size (paper: 576; tiny needs a multiple of 16)"
    )
    parser.add_argument(
        "--steps", type=int, default=30, help="multi-view optimizer steps per arm (paper: 12k)"
    )
    parser.add_argument("--batch", type=int, default=2, help="micro batch of the multi-view arms (paper: 16)")
    parser.add_argument("--base-steps", type=int, default=30, help="steps of each base stage (image, video)")
    parser.add_argument("--clips", type=int, default=12, help="turntable clips for the video stage")
    parser.add_argument("--eval-steps", type=int, default=10, help="sampler steps at evaluation (paper: 25)")
    parser.add_argument("--vae-steps", type=int, default=150, help="tiny VAE pretraining steps (batch 8)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/OMP threads per process (shared box: 1)"
    )
    parser.add_argument("--lpips-weights", default=None, help="LPIPS AlexNet state dict, if you have one")
    parser.add_argument("--clip-model", default=None, help="local CLIP vision model folder, if you have one")
    args = parser.parse_args()
    if args.threads:  # the rank processes inherit OMP_NUM_THREADS (svd_core.training.launch keeps a set one)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-mv-") as tmp:
        home = Path(tmp) / "home"
        os.environ["SVD_HOME"] = str(home)
        from flows import multiview_flow
        from svd_core.tasks.multiview.evaluate import results_table
        from svd_core.tasks.multiview.orbits import make_orbits

        t0 = time.perf_counter()
        orbits = str(Path(tmp) / "orbits")
        make_orbits(orbits, OrbitRenderConfig(objects=args.objects, views=args.views, size=args.size, seed=0))
        (Path(tmp) / "clips").mkdir()
        table = turntable_table(Path(tmp) / "clips", args.clips, 32, args.size, seed=1000)
        data_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        vae = pretrain_vae(clip_frames(table), args.vae_steps)
        start = initial_stage_one(Path(tmp) / "stage0", vae, args.size)
        vae_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        uris = base_chain(table, start, args)
        base_s = time.perf_counter() - t0
        print(
            f"data: {args.objects} orbits + {args.clips} turntable clips in {data_s:.1f} s; "
            f"VAE {vae_s:.1f} s; bases {uris} in {base_s:.1f} s",
            flush=True,
        )

        rows, times = [], []
        for label, base, kind in (
            ("SVD-MV (from video model)", uris["video"], "video"),
            ("SD2.1-MV recipe (from image model)", uris["image"], "image_stage"),
        ):
            run, scores, train_s, eval_s = multiview_arm(base, kind, orbits, args)
            rows.append((f"{label} {run.model.uri}", scores))
            times.append((label, train_s, eval_s))
            print(f"{label}: trained+registered in {train_s:.1f} s, evaluated in {eval_s:.1f} s", flush=True)

        print(
            f"\nmulti-view tiny runs: {args.views} views at {args.size}x{args.size}, {args.steps} steps, "
            f"batch {args.batch}, {args.objects - args.held_out} training / {args.held_out} held-out "
            f"objects, {args.eval_steps} sampler steps"
        )
        for label, train_s, eval_s in times:
            print(
                f"  wall time {label}: train+register {train_s:.1f} s "
                f"({train_s / args.steps:.2f} s/step incl. launch), evaluate {eval_s:.1f} s"
            )
        print("\n" + results_table(rows))
        video, image = rows[0][1], rows[1][1]
        print(
            f"PSNR video - image: {video.psnr - image.psnr:+.3f} dB; SSIM {video.ssim - image.ssim:+.4f} "
            "(paper at full scale: PSNR +1.77 dB, CLIP-S +0.06, LPIPS -0.04)"
        )
        del multiview_flow


if __name__ == "__main__":
    main()
