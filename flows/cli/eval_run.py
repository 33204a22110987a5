"""`svd eval run|promote|rollback`: studies over registered versions and registry promotion."""

from __future__ import annotations

import json

import typer
from rich.console import Console

console = Console(stderr=True)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
DEFAULT = "configs/eval/evaluate.yaml"


def register(app: typer.Typer) -> None:
    @app.command("run", context_settings=EXTRA)
    def run_cmd(
        ctx: typer.Context,
        models: list[str] = typer.Option(..., "--model", help="models:/NAME/N or @ALIAS; give two or more."),
        config: str = typer.Option(DEFAULT, "--config", help="Evaluation config YAML."),
        study_id: str = typer.Option("study", "--study", help="Study id."),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `evaluate_models`."),
    ) -> None:
        """Sample each model on the eval set, design the study and (with synthetic.enabled=true) rate,
        analyse and log it. Without the synthetic rater, prints the design for `svd eval create-study`."""
        from flows import eval_flow
        from svd_core.config import load_config
        from svd_core.evaluation.config import EvaluateConfig

        cfg = load_config(EvaluateConfig, config, ctx.args)
        if prefect:
            typer.echo(json.dumps(eval_flow.evaluate_models(models, cfg, study_id), indent=2, default=str))
            return
        with console.status("sampling and rating..."):
            result, design = eval_flow.run_study(models, cfg, study_id)
        if result is None:
            typer.echo(
                f"study {design.study_id}: {len(design.tasks)} tasks; design written under the artifact "
                "root (studies/<id>/design.json); create it for raters with `svd eval create-study`"
            )
            return
        if result.synthetic:
            typer.echo(
                f"SYNTHETIC votes (automatic rater {cfg.synthetic.proxy!r}, not humans): "
                f"leaderboard of study {design.study_id}"
            )
        typer.echo(result.leaderboard.assign(synthetic=result.synthetic).to_string(index=False))

    @app.command("promote", context_settings=EXTRA)
    def promote_cmd(
        ctx: typer.Context,
        challenger: str = typer.Option(..., "--challenger", help="models:/NAME/N to compare with @champion."),
        config: str = typer.Option(DEFAULT, "--config", help="Evaluation config YAML."),
        votes: str = typer.Option(
            None, "--votes", help="Votes (CSV/Parquet in the vote schema) to decide on."
        ),
    ) -> None:
        """Study challenger vs @champion; move `champion` (keeping `previous`) only if the rule holds."""
        from flows import eval_flow
        from flows.cli.eval_stats import print_rejected
        from svd_core.config import load_config
        from svd_core.evaluation.config import EvaluateConfig
        from svd_core.evaluation.imports import check_rejected, load_votes

        cfg = load_config(EvaluateConfig, config, ctx.args)
        table = None
        if votes:
            loaded = load_votes(votes)
            print_rejected(loaded.rejected, votes, console)
            check_rejected(loaded, votes, cfg.analysis.max_rejected_share)
            table = loaded.votes
        with console.status("running the promotion study..."):
            outcome = eval_flow.run_promotion(challenger, cfg, table)
        outcome.pop("design", None)
        typer.echo(json.dumps(outcome, indent=2, default=str))

    @app.command("rollback")
    def rollback_cmd(
        model: str = typer.Option(..., "--model", help="Registered model name, e.g. svd."),
    ) -> None:
        """Move `champion` back to `previous`."""
        from flows.integrations import registry

        version = registry.rollback(model)
        typer.echo(f"models:/{model}@champion -> version {version}")
