"""FastAPI app for human-preference rating: rater pages, a JSON API, a media endpoint and an admin view.

Routes
- `GET /rate/{token}`: the rating page (instructions first, then two synced videos, prompt, question,
  buttons and keys).
- `GET /api/rate/{token}/next`: the next task (issuing it starts the time on task).
- `POST /api/rate/{token}/acknowledge`: the rater read the instructions.
- `POST /api/rate/{token}/watched` {task_id, side}: the page saw that video's first `ended` event.
- `POST /api/rate/{token}/vote` {task_id, choice}: choice is left | right | tie | both_bad | broken;
  409 when the task already has the rater's vote, 428 when the study's rules do not allow it yet (no
  instructions acknowledged, minimum watch time not over, not both videos played through).
- `GET /media/{token}/{side}?task=ID`: the sample shown on that side of an assigned task.
- `GET /admin?token=ADMIN`, `GET /api/admin/studies`, `GET /api/admin/studies/{id}/votes.csv`: progress.

The admin token comes from `create_app(admin_token=...)`, else `SVD_RATING_ADMIN_TOKEN`, else a random
one is generated and logged once (read it from `app.state.admin_token`).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

import flows.integrations.s3  # noqa: F401  (registers s3:// with svd_core.storage so samples on S3 can be served)
from flows.apps.rating import service
from flows.apps.rating.db import Database
from flows.apps.rating.media import MediaResolver, media_type_of
from svd_core.errors import InputError, StorageError

log = logging.getLogger("svd.rating")
HERE = Path(__file__).parent
ADMIN_TOKEN_ENV = "SVD_RATING_ADMIN_TOKEN"
NOT_FOUND = (service.UnknownTokenError, service.UnknownTaskError, StorageError)
CONFLICT = (service.DuplicateVoteError, service.StudyExistsError)
NOT_READY = 428  # Precondition Required: watch first, then vote


class AdminDenied(Exception):
    """Admin route called without the right admin token."""


class VoteIn(BaseModel):
    task_id: str
    choice: Literal["left", "right", "tie", "both_bad", "broken"]


class WatchedIn(BaseModel):
    task_id: str
    side: Literal["left", "right"]


def create_app(
    db_url: str,
    media_root: str | None = None,
    admin_token: str | None = None,
    media_cache_dir: str | Path | None = None,
) -> FastAPI:
    """Build the app on one database; `media_root` resolves relative sample URIs (path, file:// or s3://)."""
    db = Database(db_url)
    token = admin_token or os.environ.get(ADMIN_TOKEN_ENV) or ""
    if not token:
        token = secrets.token_urlsafe(16)
        log.warning("no %s set; admin page for this run: /admin?token=%s", ADMIN_TOKEN_ENV, token)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        db.close()

    app = FastAPI(title="SVD rating", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    app.state.admin_token = token
    app.state.media = MediaResolver(media_root, media_cache_dir)
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_error_handlers(app)
    _add_headers(app)
    _add_rater_routes(app)
    _add_admin_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        status = 404 if isinstance(exc, NOT_FOUND) else 409 if isinstance(exc, CONFLICT) else 400
        status = NOT_READY if isinstance(exc, service.NotReadyError) else status
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(StorageError)
    async def storage_error(_request: Request, exc: StorageError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)


def _add_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def no_leaks(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        # Rater links carry the token in the path: never send it on as a referrer.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response


def _add_rater_routes(app: FastAPI) -> None:
    db: Database = app.state.db

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return "<!doctype html><title>SVD rating</title><p>Open your personal rating link to start.</p>"

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/rate/{token}", response_class=HTMLResponse)
    def rate_page(request: Request, token: str) -> Response:
        templates: Jinja2Templates = app.state.templates
        try:
            state = service.next_task(db, token)
        except service.UnknownTokenError as exc:
            return templates.TemplateResponse(request, "invalid.html", {"message": str(exc)}, status_code=404)
        return templates.TemplateResponse(request, "rate.html", {"token": token, "state": state})

    @app.get("/api/rate/{token}/next")
    def api_next(token: str) -> dict[str, Any]:
        return _with_media_urls(token, service.next_task(db, token))

    @app.post("/api/rate/{token}/acknowledge")
    def api_acknowledge(token: str) -> dict[str, Any]:
        return _with_media_urls(token, service.acknowledge_instructions(db, token))

    @app.post("/api/rate/{token}/watched")
    def api_watched(token: str, watched: WatchedIn) -> dict[str, Any]:
        return service.report_watched(db, token, watched.task_id, watched.side)

    @app.post("/api/rate/{token}/vote")
    def api_vote(token: str, vote: VoteIn) -> dict[str, Any]:
        return service.record_vote(db, token, vote.task_id, vote.choice)

    @app.get("/media/{token}/{side}")
    def media(token: str, side: Literal["left", "right", "image"], task: str = Query(...)) -> FileResponse:
        uri = service.media_uri(db, token, task, side)
        path = app.state.media.local_file(uri)
        return FileResponse(
            path, media_type=media_type_of(uri), headers={"Cache-Control": "private, max-age=3600"}
        )


def _with_media_urls(token: str, state: dict[str, Any]) -> dict[str, Any]:
    task = state["task"]
    if task is not None:
        query = f"task={quote(task['task_id'], safe='')}"
        task["left_url"] = f"/media/{token}/left?{query}"
        task["right_url"] = f"/media/{token}/right?{query}"
        task["image_url"] = f"/media/{token}/image?{query}" if task["has_image"] else None
    return state


def _add_admin_routes(app: FastAPI) -> None:
    db: Database = app.state.db

    def check(token: str | None, header: str | None) -> None:
        given = token or header or ""
        if not secrets.compare_digest(given.encode(), app.state.admin_token.encode()):
            raise AdminDenied()

    @app.exception_handler(AdminDenied)
    async def denied(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": f"admin token missing or wrong; pass ?token= ({ADMIN_TOKEN_ENV})"}, 403
        )

    def all_progress() -> list[dict[str, Any]]:
        return [service.progress(db, study_id) for study_id in service.list_studies(db)]

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(
        request: Request, token: str | None = None, x_admin_token: str | None = Header(None)
    ) -> Response:
        check(token, x_admin_token)
        templates: Jinja2Templates = app.state.templates
        return templates.TemplateResponse(
            request, "admin.html", {"studies": all_progress(), "token": token or x_admin_token}
        )

    @app.get("/api/admin/studies")
    def admin_studies(
        token: str | None = None, x_admin_token: str | None = Header(None)
    ) -> list[dict[str, Any]]:
        check(token, x_admin_token)
        return all_progress()

    @app.get("/api/admin/studies/{study_id}/votes.csv")
    def admin_votes(
        study_id: str, token: str | None = None, x_admin_token: str | None = Header(None)
    ) -> Response:
        check(token, x_admin_token)
        csv = service.export_votes(db, study_id).to_csv(index=False)
        headers = {"Content-Disposition": f'attachment; filename="{study_id}-votes.csv"'}
        return Response(csv, media_type="text/csv", headers=headers)
