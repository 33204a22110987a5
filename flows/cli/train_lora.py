"""`svd train lora`: a camera-motion LoRA on a registered image-to-video base."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
DEFAULT_CONFIG = "configs/train/lora.yaml"
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    @app.command("lora", context_settings=EXTRA)
    def lora_command(
        ctx: typer.Context,
        base: str = typer.Option(
            ..., "--base", help="Registered image-to-video base, models:/NAME/N or models:/NAME@ALIAS."
        ),
        motion: str = typer.Option(
            ..., "--motion", help="Camera-motion class: static | horizontal | vertical | zoom_in | zoom_out."
        ),
        data: str = typer.Option(None, "--data", help="LVD-F table with camera_motion labels (path, s3://)."),
        config: str = typer.Option(DEFAULT_CONFIG, "--config", help="LoRA config YAML."),
        ranks: int = typer.Option(None, "--ranks", min=1, help="DeepSpeed ranks (processes)."),
        max_steps: int = typer.Option(None, "--max-steps", min=1, help="Optimizer steps (paper: 5000)."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `train_lora`."),
    ) -> None:
        """Train a camera-motion LoRA (rank 16 on the temporal attention, base frozen) on the clips of one
        motion class and register it as `svd-lora-<class>`, linked to the base version. Extra arguments are
        dotted overrides (e.g. lora.rank=8 trainer.lr=5e-5)."""
        from flows import lora_flow
        from svd_core.config import load_config
        from svd_core.tasks.lora.config import LoraTrainConfig

        cfg = load_config(LoraTrainConfig, config, ctx.args)
        if prefect:
            with console.status(f"training the {motion} LoRA (Prefect flow train_lora)..."):
                uri = lora_flow.train_lora(cfg, base, motion, data, ranks, max_steps)
            typer.echo(uri)
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"LoRA {motion}", total=max_steps or cfg.trainer.max_steps)

            def on_metrics(row: dict) -> None:
                progress.update(bar, completed=int(row.get("step", 0)))

            model = lora_flow.step_train_lora(
                cfg, base, motion, data, ranks, max_steps, on_metrics=on_metrics
            )
        typer.echo(model.uri)
