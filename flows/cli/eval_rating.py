"""`svd eval serve | create-study | export-votes`: run the rating app and move studies and votes in and out."""

from __future__ import annotations

import csv
import io as stdio
import json
from pathlib import PurePosixPath
from typing import Any

import typer

from svd_core import storage as svd_io
from svd_core.errors import InputError

DB_HELP = "Votes database: sqlite:///path/rating.db or postgresql+asyncpg://user@host/db [SVD_RATING_DB_URL]."


def default_db_url() -> str:
    from flows.settings import load_settings

    s = load_settings()
    if s.rating_db_url is not None:
        return s.rating_db_url.get_secret_value()
    return f"sqlite:///{s.home / 'rating.db'}"


def read_study_file(uri: str) -> dict[str, Any]:
    """A study design (`{"study_id", "tasks", "assignment", ...}`) or a bare list of task dicts."""
    import flows.integrations.s3  # noqa: F401  (the file may live on s3://)

    try:
        data = json.loads(svd_io.read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"--tasks {uri}: not valid JSON ({exc}); pass the file `svd eval design-study` wrote"
        ) from exc
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise InputError(f"--tasks {uri}: expected a list of tasks or an object with a 'tasks' list")
    return data


def _study_id(data: dict[str, Any], override: str | None, uri: str) -> str:
    study_id = override or data.get("study_id")
    if not study_id:
        ids = {task.get("study_id") for task in data["tasks"] if isinstance(task, dict)}
        study_id = ids.pop() if len(ids) == 1 else None
    if not study_id:
        raise InputError(f"--tasks {uri} names no study_id; pass --study NAME")
    return str(study_id)


def links_csv(links: dict[str, str]) -> bytes:
    buffer = stdio.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rater_id", "url"])
    writer.writerows(links.items())
    return buffer.getvalue().encode()


def register(app: typer.Typer) -> None:
    """Add the rating commands to the given group (the lead mounts them under `svd eval`)."""

    @app.command("serve")
    def serve(
        db: str = typer.Option(None, "--db", help=DB_HELP),
        host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes it to the network."),
        port: int = typer.Option(8000, help="TCP port."),
        media_root: str = typer.Option(
            None, help="Base URI (path, file://, s3://) for relative sample URIs."
        ),
        admin_token: str = typer.Option(
            None, envvar="SVD_RATING_ADMIN_TOKEN", help="Admin page token; random per run when unset."
        ),
    ) -> None:
        """Serve rater pages (/rate/<token>) and the admin view (/admin?token=...) until Ctrl-C."""
        import uvicorn

        from flows.apps.rating.app import create_app

        web_app = create_app(db or default_db_url(), media_root=media_root, admin_token=admin_token)
        typer.echo(f"admin: http://{host}:{port}/admin?token={web_app.state.admin_token}")
        uvicorn.run(web_app, host=host, port=port, log_level="warning")

    @app.command("create-study")
    def create_study_cmd(
        tasks: str = typer.Option(
            ..., "--tasks", help="Study design JSON (design-study output) or a task list."
        ),
        raters: str = typer.Option(
            None, help="Rater count (5) or names (ann,bob); optional when the file has an assignment."
        ),
        db: str = typer.Option(None, "--db", help=DB_HELP),
        study: str = typer.Option(None, "--study", help="Study id; default: the file's study_id."),
        base_url: str = typer.Option(
            "http://127.0.0.1:8000", help="Server address used in the printed links."
        ),
        links_out: str = typer.Option(
            None, help="Also write rater_id,url as CSV here (the only copy besides stdout)."
        ),
    ) -> None:
        """Store a study and print one personal link per rater (tokens are stored hashed: keep the links)."""
        from flows.apps.rating.service import create_study

        data = read_study_file(tasks)
        study_id = _study_id(data, study, tasks)
        tokens = create_study(db or default_db_url(), study_id, data["tasks"], data.get("assignment"), raters)
        links = {rater_id: f"{base_url.rstrip('/')}/rate/{token}" for rater_id, token in tokens.items()}
        if links_out:
            svd_io.write_bytes(links_out, links_csv(links))
        typer.echo(f"study {study_id}: {len(data['tasks'])} tasks, {len(links)} raters")
        for rater_id, url in links.items():
            typer.echo(f"{rater_id}\t{url}")

    @app.command("export-votes")
    def export_votes_cmd(
        study: str = typer.Option(..., "--study", help="Study id."),
        out: str = typer.Option(..., "--out", help="Output .csv or .parquet (path, file:// or s3://)."),
        db: str = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Write the study's votes in the vote-table schema (svd_core.evaluation.schema.VOTE_COLUMNS)."""
        import flows.integrations.s3  # noqa: F401
        from flows.apps.rating.service import export_votes

        frame = export_votes(db or default_db_url(), study)
        suffix = PurePosixPath(out).suffix.lower()
        if suffix == ".parquet":
            buffer = stdio.BytesIO()
            frame.to_parquet(buffer, index=False)
            svd_io.write_bytes(out, buffer.getvalue())
        elif suffix == ".csv":
            svd_io.write_bytes(out, frame.to_csv(index=False).encode())
        else:
            raise InputError(f"--out {out}: use a .csv or .parquet name")
        typer.echo(f"wrote {len(frame)} votes of study {study} to {out}")
