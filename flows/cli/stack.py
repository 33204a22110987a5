"""`svd stack up|down|status`: the local stack on loopback (S3, MLflow server, Prefect server)."""

from __future__ import annotations

import json
import os

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def _port_env(s3_port: int | None, mlflow_port: int | None, prefect_port: int | None) -> None:
    for key, value in (
        ("SVD_STACK_S3_PORT", s3_port),
        ("SVD_STACK_MLFLOW_PORT", mlflow_port),
        ("SVD_STACK_PREFECT_PORT", prefect_port),
    ):
        if value is not None:
            os.environ[key] = str(value)


def register(app: typer.Typer) -> None:
    @app.command("up")
    def stack_up(
        s3_port: int = typer.Option(None, help="S3 (moto) port [SVD_STACK_S3_PORT, default 9100]."),
        mlflow_port: int = typer.Option(None, help="MLflow port [SVD_STACK_MLFLOW_PORT, default 5500]."),
        prefect_port: int = typer.Option(None, help="Prefect port [SVD_STACK_PREFECT_PORT, default 4400]."),
        mlflow_db: str = typer.Option(None, help="MLflow backend DB URL (postgresql://...); default SQLite."),
        prefect_db: str = typer.Option(
            None, help="Prefect DB URL (postgresql+asyncpg://...); default SQLite."
        ),
    ) -> None:
        """Start the local stack (what is not running yet) and write its URLs to .svd/stack.env."""
        from flows.integrations import stack
        from flows.settings import load_settings

        _port_env(s3_port, mlflow_port, prefect_port)
        if mlflow_db:
            os.environ["SVD_MLFLOW_DB_URL"] = mlflow_db
        if prefect_db:
            os.environ["SVD_PREFECT_DB_URL"] = prefect_db
        s = load_settings()
        with console.status("starting the local stack...") as status:
            urls = stack.up(s, progress=lambda msg: status.update(msg))
        for key, value in urls.items():
            typer.echo(f"{key}={value}")
        typer.echo(f"stack is up; URLs written to {s.home / 'stack.env'} (used by every svd command)")

    @app.command("down")
    def stack_down() -> None:
        """Stop exactly the processes `svd stack up` started."""
        from flows.integrations import stack
        from flows.settings import load_settings

        stopped = stack.down(load_settings())
        typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")

    @app.command("status")
    def stack_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Report each stack service: running, stopped, unhealthy or stale."""
        from flows.integrations import stack
        from flows.settings import load_settings

        rows = stack.status(load_settings())
        if as_json:
            typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
            return
        table = Table("service", "state", "pid", "url", "detail")
        for r in rows:
            table.add_row(r.name, r.state, str(r.pid or ""), r.url, r.detail)
        Console().print(table)
