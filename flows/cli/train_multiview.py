"""`svd train multiview`: fine-tune a registered image-to-video model into a multi-view model (SVD-MV),
register it with lineage and evaluate it on held-out orbits."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
DEFAULT_CONFIG = "configs/train/multiview.yaml"
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    """Add `multiview` to the given group (mounted under `svd train`)."""

    @app.command("multiview", context_settings=EXTRA)
    def multiview_command(
        ctx: typer.Context,
        base: str = typer.Option(
            ..., "--base", help="Registered image-to-video base, models:/NAME/N or models:/NAME@ALIAS."
        ),
        data: str = typer.Option(
            None, "--data", help="Orbit folders (one per object: view PNGs + cameras.json); local or s3://."
        ),
        config: str = typer.Option(DEFAULT_CONFIG, "--config", help="Multi-view config YAML."),
        max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `train_multiview`."),
    ) -> None:
        """Multi-view fine-tune (paper: 21 views at 576x576, elevation conditioning, 12k steps, lr 1e-5),
        registered as svd-mv with the base as parent, then PSNR/SSIM (LPIPS, CLIP-S where weights are
        configured) on held-out objects. Extra arguments are dotted overrides (e.g. trainer.lr=1e-5)."""
        from flows import multiview_flow
        from svd_core.config import load_config
        from svd_core.tasks.multiview.config import MultiViewConfig
        from svd_core.tasks.multiview.evaluate import results_table

        cfg = load_config(MultiViewConfig, config, ctx.args)
        if prefect:
            result = multiview_flow.train_multiview(cfg, base, data, max_steps)
            typer.echo(result["model_uri"])
            return
        with console.status(f"multi-view fine-tune of {base} ({cfg.trainer.ranks} ranks)..."):
            run = multiview_flow.step_train_multiview(cfg, base, data, max_steps)
        console.print(f"{'reused' if run.reused else 'registered'} {run.model.uri}")
        columns = (
            TextColumn("evaluating {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("held-out orbits", total=None)
            scores = multiview_flow.step_evaluate_multiview(
                run, progress=lambda name: progress.update(bar, advance=1, description=name)
            )
        if scores is None:
            console.print(
                "no held-out objects: evaluation skipped (set data.held_out_objects or data.eval_uri)"
            )
        else:
            console.print(results_table([(multiview_flow.method_label(run), scores)]))
        typer.echo(run.model.uri)
