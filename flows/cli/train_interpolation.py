"""`svd train interpolation`: finetune a registered image-to-video model into a frame interpolator."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)
DEFAULT_CONFIG = "configs/train/interpolation.yaml"
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    @app.command("interpolation", context_settings=EXTRA)
    def interpolation_command(
        ctx: typer.Context,
        base: str = typer.Option(
            None,
            "--base",
            help="Image-to-video base: models:/NAME/N, models:/NAME@ALIAS or a pipeline folder.",
        ),
        data: str = typer.Option(
            None, "--data", help="LVD-F table or dataset folder (path, file:// or s3://)."
        ),
        config: str = typer.Option(DEFAULT_CONFIG, "--config", help="Interpolation config YAML."),
        max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
        prefect: bool = typer.Option(
            False, "--prefect", help="Run as the Prefect flow `train_interpolation`."
        ),
    ) -> None:
        """Frame interpolation (paper 4.5): 5-frame windows, first and last given, 3 predicted (4x fps).
        Extra arguments are dotted overrides (e.g. trainer.lr=1e-4 height=320). Prints the registered URI."""
        from flows import interpolation_flow
        from svd_core.config import load_config
        from svd_core.tasks.interpolation.config import InterpolationConfig

        cfg = load_config(InterpolationConfig, config, ctx.args)
        with console.status(f"training interpolation ({cfg.trainer.ranks} ranks)..."):
            if prefect:
                uri = interpolation_flow.train_interpolation(cfg, base, data, max_steps)
            else:
                uri = interpolation_flow.step_train_interpolation(cfg, base, data, max_steps).uri
        typer.echo(uri)
