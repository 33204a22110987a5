"""`svd dashboard --out DIR [--serve]`: build the team dashboard (a static site) and optionally serve it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def dashboard_command(
    out: Path = typer.Option(
        ..., "--out", help="Folder for the site (index.html, plots/); replaced on each build."
    ),
    serve: bool = typer.Option(False, "--serve", help="After building, serve DIR over HTTP until Ctrl-C."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to serve on."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to serve on (0 picks a free one)."),
    mlflow_ui: str = typer.Option(
        None,
        "--mlflow-ui",
        help="URL of an MLflow UI on this store (e.g. one started with `mlflow ui`); default: the tracking "
        "URI when it is an MLflow server, else no links and the command that starts one.",
    ),
    prefect_ui: str = typer.Option(
        None,
        "--prefect-ui",
        help="URL of a Prefect UI (e.g. `prefect server start` on the embedded database); default: "
        "PREFECT_UI_URL, or derived from the configured PREFECT_API_URL. Flow runs are listed from its API.",
    ),
) -> None:
    """Build the team dashboard from MLflow and Prefect: dataset versions and funnels, score histograms,
    GX status, interactive training curves per stage, registry lineage (champion/previous) with each
    version's sample videos, preference leaderboards with the side-by-side pairs and their votes,
    ablations, recent flow runs; runs, models and flow runs link to the MLflow and Prefect UIs.

    The site needs no network: plots are local PNG/SVG files, videos are copied into DIR/media.
    """
    from flows.apps.dashboard import build_site, make_server

    with console.status("building the dashboard...") as status:
        summary = build_site(
            out,
            on_step=lambda msg: status.update(f"dashboard: {msg}..."),
            mlflow_ui=mlflow_ui,
            prefect_ui=prefect_ui,
        )
    typer.echo(
        f"wrote {summary.index} ({summary.builds} dataset builds, {summary.training_runs} training runs, "
        f"{summary.models} registered models, {summary.studies} studies, {summary.ablations} ablations, "
        f"{summary.videos} videos)"
    )
    links = summary.links
    if links is not None and links.mlflow_command:
        typer.echo(f"MLflow UI for this store: {links.mlflow_command}")
    if links is not None and links.prefect_command:
        typer.echo(f"Prefect UI for the embedded flow runs: {links.prefect_command}")
    if links is not None and links.rebuild_hint:
        typer.echo(f"then rebuild with links: {links.rebuild_hint.replace('DIR', str(out))}")
    for problem in summary.problems:
        console.print(f"[yellow]warning:[/yellow] {problem}", highlight=False)
    if not serve:
        return
    server = make_server(summary.index.parent, host, port)
    bound_host, bound_port = server.server_address[:2]
    if isinstance(bound_host, bytes | bytearray):  # typeshed allows bytes; an AF_INET server gives str
        bound_host = bound_host.decode()
    typer.echo(
        f"serving {summary.index.parent} at http://{bound_host}:{bound_port}/ (Ctrl-C to stop)", err=False
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add the top-level `dashboard` command to the root `svd` app."""
    app.command("dashboard")(dashboard_command)
