"""`svd train image|video|finetune|all` and `svd models export`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
DEFAULT_CONFIGS = {s: f"configs/train/{s}.yaml" for s in ("image", "video", "finetune")}
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _stage_command(app: typer.Typer, stage: str, summary: str) -> None:
    @app.command(stage, context_settings=EXTRA, help=summary)
    def command(
        ctx: typer.Context,
        config: str = typer.Option(DEFAULT_CONFIGS[stage], "--config", help="Stage config YAML."),
        data: str = typer.Option(None, "--data", help="LVD or LVD-F table (path, file:// or s3://)."),
        parent: str = typer.Option(
            None, "--parent", help="Parent registered version, models:/NAME/N or @alias."
        ),
        ranks: int = typer.Option(None, "--ranks", min=1, help="DeepSpeed ranks (processes)."),
        max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `train_stage`."),
    ) -> None:
        from flows import train_flow
        from svd_core.config import load_config
        from svd_core.tasks.stages.config import TrainStageConfig

        cfg = load_config(TrainStageConfig, config, ctx.args)
        if cfg.stage != stage:
            raise typer.BadParameter(
                f"{config} is a stage-{cfg.stage} config, not {stage}", param_hint="--config"
            )
        with console.status(f"training stage {stage} ({cfg.trainer.ranks} ranks)..."):
            if prefect:
                uri = train_flow.train_stage(cfg, data, parent, ranks, max_steps)
            else:
                uri = train_flow.step_train_stage(cfg, data, parent, ranks, max_steps).uri
        typer.echo(uri)


def register(app: typer.Typer) -> None:
    _stage_command(app, "image", "Stage I: train the image UNet (or import one) for later inflation.")
    _stage_command(app, "video", "Stage II: video pretraining (paper: 14 frames, 256x384) from stage I.")
    _stage_command(app, "finetune", "Stage III: high-quality finetune (paper: 320x576) from stage II.")

    @app.command("all", context_settings=EXTRA)
    def all_command(
        ctx: typer.Context,
        image_config: str = typer.Option(DEFAULT_CONFIGS["image"], help="Stage I config."),
        video_config: str = typer.Option(DEFAULT_CONFIGS["video"], help="Stage II config."),
        finetune_config: str = typer.Option(DEFAULT_CONFIGS["finetune"], help="Stage III config."),
        data: str = typer.Option(None, "--data", help="LVD-F table for every stage."),
        ranks: int = typer.Option(None, "--ranks", min=1, help="DeepSpeed ranks (processes)."),
        max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop each stage after N steps."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `train_all`."),
    ) -> None:
        """Stages I -> II -> III, each starting from the previous stage's registered version. Extra
        arguments are dotted overrides applied to every stage (e.g. trainer.zero_stage=3)."""
        from flows import train_flow
        from svd_core.config import load_config
        from svd_core.tasks.stages.config import TrainStageConfig

        paths = {"image": image_config, "video": video_config, "finetune": finetune_config}
        configs = {stage: load_config(TrainStageConfig, path, ctx.args) for stage, path in paths.items()}
        with console.status("training stages I -> II -> III..."):
            if prefect:
                uris = train_flow.train_all(configs, data, ranks, max_steps)
            else:
                uris = train_flow.step_train_all(configs, data, ranks, max_steps)
        typer.echo(json.dumps(uris, indent=2))


def register_models(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        model_uri: str = typer.Argument(..., help="models:/NAME/N or models:/NAME@ALIAS"),
        out: str = typer.Option(..., "--out", help="Folder for the diffusers pipeline."),
    ) -> None:
        """Write a registered version as a diffusers pipeline folder (`DiffusionPipeline.from_pretrained`)."""
        from flows.integrations import registry

        folder = registry.download_pipeline(model_uri)
        dest = Path(out)
        if dest.exists() and any(dest.iterdir()):
            raise typer.BadParameter(
                f"{dest} exists and is not empty; choose a new folder", param_hint="--out"
            )
        shutil.copytree(folder, dest, dirs_exist_ok=True)
        typer.echo(str(dest))

    @app.command("alias")
    def alias_command(
        model_uri: str = typer.Argument(..., help="The version to point at: models:/NAME/N (or @ALIAS)."),
        alias: str = typer.Argument(
            "candidate", help="Alias to set; `candidate` is what the weekly study challenges @champion with."
        ),
    ) -> None:
        """Point an alias at a version: `svd models alias models:/svd/7 candidate` makes it the challenger.

        champion and previous move only with evidence, through `svd eval promote` and `svd eval rollback`."""
        from flows.integrations import registry
        from svd_core.errors import InputError

        if alias in (registry.CHAMPION, registry.PREVIOUS):
            raise InputError(
                f"alias {alias!r} moves only with evidence: use `svd eval promote` or `svd eval rollback`"
            )
        model = registry.set_alias(model_uri, alias)
        typer.echo(f"models:/{model.name}@{alias} -> version {model.version}")
