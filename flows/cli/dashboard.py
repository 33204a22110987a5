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
) -> None:
    """Build the team dashboard from MLflow: dataset versions and funnels, score histograms, GX status,
    training curves per stage, registry lineage (champion/previous), preference leaderboards, ablations.

    The site needs no network: plots are local PNG files, the lineage graph is inline SVG.
    """
    from flows.apps.dashboard import build_site, make_server

    with console.status("building the dashboard...") as status:
        summary = build_site(out, on_step=lambda msg: status.update(f"dashboard: {msg}..."))
    typer.echo(
        f"wrote {summary.index} ({summary.builds} dataset builds, {summary.training_runs} training runs, "
        f"{summary.models} registered models, {summary.studies} studies, {summary.ablations} ablations)"
    )
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
