"""`svd eval serve | create-study | export-votes | revoke-link | reissue-link | reassign-tasks`: run the rating
app, move studies and votes in and out, and manage raters during a study (docs/rating.md)."""

from __future__ import annotations

import csv
import io as stdio
import json
from pathlib import PurePosixPath
from typing import Any

import typer

from svd_core import storage as svd_io
from svd_core.errors import InputError

DEFAULT_MIN_WATCH_SECONDS = 2.0
"""Same as flows.apps.rating.service.DEFAULT_MIN_WATCH_SECONDS (not imported: the CLI starts instantly)."""

DB_HELP = "Votes database: sqlite:///path/rating.db or postgresql+asyncpg://user@host/db [SVD_RATING_DB_URL]."
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def _read_text(uri: str) -> str:
    import flows.integrations.s3  # noqa: F401  (the file may live on s3://)

    try:
        return svd_io.read_bytes(uri).decode()
    except UnicodeDecodeError as exc:
        raise InputError(f"--instructions {uri}: not UTF-8 text ({exc})") from exc


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
        if host not in LOOPBACK:
            typer.echo(
                f"warning: serving on {host} in plain HTTP; rater links and the admin token are credentials: "
                "put a TLS-terminating, authenticating proxy in front (docs/rating.md, 'Serving beyond "
                "loopback') and keep this port closed to everyone else",
                err=True,
            )
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
        min_watch_seconds: float = typer.Option(
            DEFAULT_MIN_WATCH_SECONDS,
            help="A vote counts only this long after its pair was shown (and after both videos played through).",
        ),
        instructions: str = typer.Option(
            None,
            help="Text file (path, file://, s3://) with study-specific instructions shown before the first pair.",
        ),
    ) -> None:
        """Store a study and print one personal link per rater (tokens are stored hashed: keep the links)."""
        from flows.apps.rating.service import create_study

        data = read_study_file(tasks)
        study_id = _study_id(data, study, tasks)
        text = _read_text(instructions) if instructions else None
        tokens = create_study(
            db or default_db_url(),
            study_id,
            data["tasks"],
            data.get("assignment"),
            raters,
            min_watch_seconds=min_watch_seconds,
            instructions=text,
        )
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
        with_timing: bool = typer.Option(
            False, help="Add the column seconds_on_task (time from the pair's issue to the vote)."
        ),
    ) -> None:
        """Write the study's votes in the vote-table schema (svd_core.evaluation.schema.VOTE_COLUMNS)."""
        import flows.integrations.s3  # noqa: F401
        from flows.apps.rating.service import export_votes

        frame = export_votes(db or default_db_url(), study, with_timing=with_timing)
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

    @app.command("revoke-link")
    def revoke_link_cmd(
        study: str = typer.Option(..., "--study", help="Study id."),
        rater: str = typer.Option(..., "--rater", help="Rater id whose link stops working."),
        db: str = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Stop a rater's link at once (a leaked link, a rater who left); the votes already cast stay."""
        from flows.apps.rating.service import revoke_link

        revoke_link(db or default_db_url(), study, rater)
        typer.echo(f"revoked the link of {rater} in study {study}")

    @app.command("reissue-link")
    def reissue_link_cmd(
        study: str = typer.Option(..., "--study", help="Study id."),
        rater: str = typer.Option(..., "--rater", help="Rater id that gets a new link."),
        db: str = typer.Option(None, "--db", help=DB_HELP),
        base_url: str = typer.Option(
            "http://127.0.0.1:8000", help="Server address used in the printed link."
        ),
    ) -> None:
        """Give a rater a new personal link; the old one stops working (progress and votes are kept)."""
        from flows.apps.rating.service import reissue_link

        token = reissue_link(db or default_db_url(), study, rater)
        typer.echo(f"{rater}\t{base_url.rstrip('/')}/rate/{token}")

    @app.command("reassign-tasks")
    def reassign_cmd(
        study: str = typer.Option(..., "--study", help="Study id."),
        rater: str = typer.Option(..., "--from", help="The dropout whose unanswered pairs move."),
        to: str = typer.Option(
            None, help="Comma-separated raters who take them; default: every other rater with a working link."
        ),
        revoke: bool = typer.Option(False, help="Also revoke the dropout's link."),
        db: str = typer.Option(None, "--db", help=DB_HELP),
    ) -> None:
        """Hand a dropout's open pairs to other raters (least loaded first, never a pair a rater already has)."""
        from flows.apps.rating.service import reassign_open_tasks, revoke_link

        url = db or default_db_url()
        targets = [name.strip() for name in to.split(",") if name.strip()] if to else None
        result = reassign_open_tasks(url, study, rater, targets)
        if revoke:
            revoke_link(url, study, rater)
        moved = sum(len(ids) for ids in result["moved"].values())
        typer.echo(f"moved {moved} open task(s) of {rater}" + (" and revoked the link" if revoke else ""))
        for target, ids in sorted(result["moved"].items()):
            typer.echo(f"{target}\t+{len(ids)}")
        if result["unplaced"]:
            typer.echo(
                f"{len(result['unplaced'])} task(s) stay with {rater}: every candidate already has them "
                f"({result['unplaced'][:5]}); add raters with a new study or name others with --to",
                err=True,
            )
