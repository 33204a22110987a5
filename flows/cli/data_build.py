"""`svd data build`: every dataset stage in one command (the same steps as the `build_dataset` flow)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("build", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def build_cmd(
        ctx: typer.Context,
        config: str = typer.Option("configs/data/build.yaml", "--config", help="Dataset build config YAML."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `build_dataset`."),
    ) -> None:
        """Raw videos -> LVD -> LVD-F (+ LVD-10M/-F) behind the GX gate; logged to MLflow. Extra
        arguments are dotted overrides, e.g. `source=data/raw subset.fraction=0.5`."""
        from flows import dataset_flow
        from svd_core.config import load_config
        from svd_core.curation.config import DatasetBuildConfig

        cfg = load_config(DatasetBuildConfig, config, ctx.args)
        if prefect:
            result = dataset_flow.build_dataset(cfg)
        else:
            with console.status("building the dataset...") as status:
                result = dataset_flow.run_build(
                    cfg,
                    progress=lambda r, done, total: status.update(f"LVD: {done}/{total} videos"),
                    on_step=lambda msg: status.update(msg),
                )
        typer.echo(json.dumps(result, indent=2, default=str))
