"""`svd demo`: the whole loop on the embedded default (see flows/demo_flow.py)."""

from __future__ import annotations

import json
import os
import time

import typer
from rich.console import Console

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def demo_cmd(
        ctx: typer.Context,
        config: str = typer.Option("configs/demo.yaml", "--config", help="Demo config YAML."),
        prefect: bool = typer.Option(True, "--prefect/--no-prefect", help="Run the steps as Prefect flows."),
    ) -> None:
        """Sample videos -> LVD -> LVD-F (GX gate) -> stages I, II, III -> registry -> synthetic-rater
        study -> promotion -> dashboard, with the tiny model on this machine. A rerun reuses finished work."""
        from flows.demo_flow import DemoConfig, run_demo
        from flows.settings import load_settings
        from svd_core.config import load_config

        cfg = load_config(DemoConfig, config, ctx.args)
        settings = load_settings()
        started = time.perf_counter()
        with console.status("svd demo") as status:

            def say(message: str) -> None:
                status.update(message)
                console.print(message)

            result = run_demo(cfg, settings.home, say, prefect)
        total = time.perf_counter() - started
        typer.echo(json.dumps(result, indent=2, default=str))
        prefect_home = os.environ.get("PREFECT_HOME", str(settings.prefect_home))
        typer.echo(
            f"\nsvd demo finished in {total:.0f}s. Look at what it made:\n"
            f"  dashboard:  svd dashboard --serve   (static site: {result['dashboard']})\n"
            f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.resolved_tracking_uri} --port 5000\n"
            f"  Prefect UI: PREFECT_HOME={prefect_home} .venv/bin/prefect server start\n"
            f"  champion:   svd models export models:/svd@champion --out exported-pipeline"
        )
