"""`svd data orbits`: render a synthetic multi-view dataset (orbits of procedural textured objects) on the
CPU, in the layout `svd train multiview` reads."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add `orbits` to the given group (mounted under `svd data`)."""

    @app.command("orbits")
    def orbits_command(
        out: str = typer.Option(
            ..., "--out", help="Output folder (local or s3://); one sub-folder per object."
        ),
        objects: int = typer.Option(16, "--objects", help="Number of objects (paper: 150K Objaverse)."),
        views: int = typer.Option(21, "--views", help="Views per 360-degree orbit (paper: 21)."),
        size: int = typer.Option(576, "--size", help="Square view size in pixels (paper: 576)."),
        elevation_min: float = typer.Option(-5.0, "--elevation-min", help="Lowest elevation, degrees."),
        elevation_max: float = typer.Option(30.0, "--elevation-max", help="Highest elevation, degrees."),
        supersample: int = typer.Option(2, "--supersample", help="Rays per pixel side (anti-aliasing)."),
        seed: int = typer.Option(0, "--seed", help="Dataset seed; object i is drawn from (seed, i)."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `make_orbits`."),
    ) -> None:
        """Render orbit views (PNG) + cameras.json per object with a numpy ray caster (no GPU, no OpenGL).
        Elevation is drawn per object uniformly in [--elevation-min, --elevation-max] (paper: [-5, 30]).
        Finished objects are kept, so an interrupted run continues where it stopped."""
        from flows import multiview_flow
        from svd_core.config import validate_config
        from svd_core.tasks.multiview.config import OrbitRenderConfig

        cfg = validate_config(
            OrbitRenderConfig,
            {
                "objects": objects,
                "views": views,
                "size": size,
                "elevation_min": elevation_min,
                "elevation_max": elevation_max,
                "supersample": supersample,
                "seed": seed,
            },
            "svd data orbits options",
        )
        if prefect:
            folders = multiview_flow.make_orbits(out, cfg)
        else:
            columns = (
                TextColumn("orbits {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("", total=cfg.objects)

                def on_object(name: str, rendered: bool) -> None:
                    progress.update(
                        bar, advance=1, description=f"{name} ({'rendered' if rendered else 'kept'})"
                    )

                folders = multiview_flow.step_make_orbits(out, cfg, on_object)
        typer.echo(f"{len(folders)} orbit folders ({cfg.views} views, {cfg.size}x{cfg.size}) under {out}")
