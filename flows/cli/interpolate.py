"""`svd interpolate VIDEO --model URI --out OUT`: 4x the frame rate of a video with an interpolation model."""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def register(app: typer.Typer) -> None:
    @app.command("interpolate")
    def interpolate_command(
        video: str = typer.Argument(..., help="Input video (MP4/WebM; path, file:// or s3://), >= 2 frames."),
        model: str = typer.Option(
            ...,
            "--model",
            help="Interpolation model: models:/NAME/N, models:/NAME@ALIAS or a pipeline folder.",
        ),
        out: str = typer.Option(..., "--out", help="Output MP4 (path or s3:// URI)."),
        steps: int = typer.Option(25, "--steps", min=1, help="Euler steps per window (SVD: 25)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Noise seed."),
        batch_size: int = typer.Option(4, "--batch-size", min=1, help="Windows denoised together."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda[:N]."),
    ) -> None:
        """Generate the frames between every pair of consecutive frames (an N-frame video becomes
        4(N-1)+1 frames at 4x the rate); the original frames are kept unchanged at every 4th position."""
        from flows import interpolation_flow
        from svd_core.tasks.interpolation.config import InterpolateConfig

        cfg = InterpolateConfig(num_inference_steps=steps, seed=seed, batch_size=batch_size, device=device)
        columns = (TextColumn("interpolating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True) as bar:
            job = bar.add_task("windows", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(job, completed=done, total=total)

            summary = interpolation_flow.step_interpolate(video, model, out, cfg, progress)
        typer.echo(json.dumps(summary))
