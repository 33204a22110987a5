"""Rating service and app on PostgreSQL (127.0.0.1:5432, trust auth), once per installed driver.

`postgresql+psycopg://` runs on the sync engine, `postgresql+asyncpg://` through the Database's async
bridge; both must behave the same. Each run creates its own database and drops it afterwards. A driver
that is not installed, or no reachable server, skips with the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from flows.apps.rating import service
from flows.apps.rating.app import create_app
from flows.apps.rating.db import Database
from svd_core.evaluation.schema import VOTE_COLUMNS
from tests.flows.apps.rating.watching import open_and_watch, vote

PG_HOST = os.environ.get("SVD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SVD_TEST_PG_PORT", "5432"))
PG_USERS = ("postgres", "root")


def _admin(sql: str) -> str | None:
    """Run one statement as the first user that can log in; return that user (None: no server)."""
    import asyncpg

    async def attempt(user: str) -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database="postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    for user in PG_USERS:
        try:
            asyncio.run(attempt(user))
            return user
        except (TimeoutError, OSError, asyncpg.PostgresError):
            continue
    return None


@pytest.fixture(scope="module")
def pg_server() -> Iterator[tuple[str, str]]:
    """(user, database name) of a fresh database on the local server."""
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg (used to create the throwaway test database) is not installed")
    name = f"svd_rating_test_{uuid.uuid4().hex[:12]}"
    user = _admin(f'CREATE DATABASE "{name}"')
    if user is None:
        pytest.skip(f"no PostgreSQL accepting users {PG_USERS} on {PG_HOST}:{PG_PORT} (trust auth expected)")
    try:
        yield user, name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["psycopg", "asyncpg"])
def pg_url(request: pytest.FixtureRequest, pg_server: tuple[str, str]) -> str:
    driver = request.param
    if importlib.util.find_spec(driver) is None:
        pytest.skip(f"PostgreSQL driver {driver} is not installed (pip install {driver})")
    user, name = pg_server
    return f"postgresql+{driver}://{user}@{PG_HOST}:{PG_PORT}/{name}"


def study_name(base: str, url: str) -> str:
    return f"{base}-{url.split('+', 1)[1].split(':', 1)[0]}"  # one study per driver in the shared database


def tasks() -> list[dict]:
    return [
        {
            "task_id": f"t{i}",
            "question": "visual_quality",
            "prompt_id": f"p{i}",
            "prompt": f"prompt {i}",
            "model_a": "m1",
            "model_b": "m2",
            "sample_a_uri": f"/nowhere/a{i}.mp4",
            "sample_b_uri": f"/nowhere/b{i}.mp4",
            "left": "model_a",
            "is_gold": i == 1,
        }
        for i in range(3)
    ]


def test_votes_on_postgres_count_once_and_persist(pg_url: str) -> None:
    study_id = study_name("pg-study", pg_url)
    with Database(pg_url) as db:
        tokens = service.create_study(db, study_id, tasks(), raters=2)
        token = tokens["rater-1"]
        assert vote(db, token, "t0", "left")["winner"] == "model_a"
        with pytest.raises(service.DuplicateVoteError):
            service.record_vote(db, token, "t0", "right")
    with Database(pg_url) as reopened:  # new engine and event loop: what a server restart does
        assert service.next_task(reopened, token)["done"] == 1
        vote(reopened, token, "t1", "right")
        report = service.progress(reopened, study_id)
        assert report["votes"] == 2 and report["raters"][0]["gold_accuracy"] == 0.0
        votes = service.export_votes(reopened, study_id)
        assert list(votes.columns) == VOTE_COLUMNS and list(votes["winner"]) == ["model_a", "model_b"]
        assert votes["created_at"].str.endswith("Z").all()


def test_app_on_postgres(pg_url: str) -> None:
    study_id = study_name("pg-app", pg_url)
    tokens = service.create_study(pg_url, study_id, tasks(), raters=1)
    token = tokens["rater-1"]
    open_and_watch(pg_url, token, "t2")
    with TestClient(create_app(pg_url, admin_token="a")) as client:
        assert (
            client.post(f"/api/rate/{token}/vote", json={"task_id": "t2", "choice": "tie"}).status_code == 200
        )
        assert (
            client.post(f"/api/rate/{token}/vote", json={"task_id": "t2", "choice": "tie"}).status_code == 409
        )
        assert client.get(f"/api/rate/{token}/next").json()["task"]["task_id"] == "t0"
        studies = {s["study_id"]: s for s in client.get("/api/admin/studies?token=a").json()}
        assert studies[study_id]["votes"] == 1
