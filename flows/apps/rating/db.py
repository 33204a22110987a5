"""Rating-app storage: SQLAlchemy 2 models and a `Database` that runs one unit of work per call.

SQLite (`sqlite:///path`) uses a plain sync engine. PostgreSQL works through any driver SQLAlchemy knows:
a sync one (`postgresql+psycopg://`, `postgresql+psycopg2://`) directly, or an async one
(`postgresql+asyncpg://`, also `sqlite+aiosqlite://`) through a private event-loop thread and
`AsyncSession.run_sync`, so the service code is the same sync ORM code for every backend.

Columns added after a database was first created (instructions, minimum watch, time on task, link
revocation) are added to an existing database when it is opened (`_add_missing_columns`): each is
nullable or has a server default, so no data is rewritten.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateColumn

from svd_core.errors import ConfigError, StorageError

T = TypeVar("T")

ASYNC_DRIVERS = {"asyncpg", "aiosqlite", "psycopg_async"}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "rating_study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    min_watch_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    """A vote counts only this long after its task was issued (and after both videos played through)."""
    instructions: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Study-specific text shown with the standard instructions before the first task."""


class TaskRow(Base):
    __tablename__ = "rating_task"
    __table_args__ = (UniqueConstraint("study_pk", "task_id", name="uq_task_per_study"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("rating_study.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(200))
    question: Mapped[str] = mapped_column(String(40))
    prompt_id: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    model_a: Mapped[str] = mapped_column(String(500))
    model_b: Mapped[str] = mapped_column(String(500))
    sample_a_uri: Mapped[str] = mapped_column(Text)
    sample_b_uri: Mapped[str] = mapped_column(Text)
    left: Mapped[str] = mapped_column(String(10))
    image_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)

    study: Mapped[StudyRow] = relationship()


class RaterRow(Base):
    """A rater of one study; only the SHA-256 of the link token is stored, never the token."""

    __tablename__ = "rating_rater"
    __table_args__ = (UniqueConstraint("study_pk", "rater_id", name="uq_rater_per_study"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("rating_study.id", ondelete="CASCADE"), index=True)
    rater_id: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the rater confirmed having read the instructions (no task is issued before)."""
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the link was revoked (token_hash then holds an unusable value until a link is re-issued)."""

    study: Mapped[StudyRow] = relationship()


class AssignmentRow(Base):
    """Task `task_pk` is shown to rater `rater_pk` at `position` (the study design's order)."""

    __tablename__ = "rating_assignment"
    __table_args__ = (UniqueConstraint("rater_pk", "task_pk", name="uq_assignment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_pk: Mapped[int] = mapped_column(ForeignKey("rating_rater.id", ondelete="CASCADE"), index=True)
    task_pk: Mapped[int] = mapped_column(ForeignKey("rating_task.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the task was first handed to the rater's page: the start of the time on task."""
    left_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the page reported the left video's first `ended` event."""
    right_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the page reported the right video's first `ended` event."""


class VoteRow(Base):
    """One judgement; the unique constraint is what makes a second vote on the same task impossible."""

    __tablename__ = "rating_vote"
    __table_args__ = (UniqueConstraint("rater_pk", "task_pk", name="uq_one_vote_per_rater_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_pk: Mapped[int] = mapped_column(ForeignKey("rating_rater.id", ondelete="CASCADE"), index=True)
    task_pk: Mapped[int] = mapped_column(ForeignKey("rating_task.id", ondelete="CASCADE"), index=True)
    winner: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    seconds_on_task: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Seconds from the task's issue to this vote."""

    rater: Mapped[RaterRow] = relationship()
    task: Mapped[TaskRow] = relationship()


class Database:
    """Engine + schema for one URL; `run(fn)` calls `fn(session)` in a transaction and commits."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = _parse_url(url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sync_engine: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the folder of SQLite database {parsed.database}: {exc}"
                ) from exc
        try:
            if parsed.get_driver_name() in ASYNC_DRIVERS:
                self._start_async(url)
            else:
                self._sync_engine = _sync_engine(url)
        except (ModuleNotFoundError, NoSuchModuleError) as exc:
            self.close()
            raise ConfigError(
                f"database URL {_masked(url)}: driver not installed ({exc}); use sqlite:///path, "
                "postgresql+psycopg://user@host/db or postgresql+asyncpg://user@host/db with that driver installed"
            ) from exc
        try:
            self.run(lambda session: _create_schema(session.connection()))
        except (DBAPIError, OSError) as exc:
            self.close()
            raise StorageError(
                f"cannot open the votes database {_masked(url)} ({type(exc).__name__}: {_first_line(exc)}); "
                "check that the server runs and the URL (user, host, port, database) is right"
            ) from exc

    def run(self, fn: Callable[[Session], T]) -> T:
        if self._sync_engine is not None:
            with Session(self._sync_engine, expire_on_commit=False) as session, session.begin():
                return fn(session)
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._run_async(fn), self._loop).result()

    def close(self) -> None:
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._loop is None or self._loop.is_closed():
            return
        if self._async_engine is not None:
            asyncio.run_coroutine_threadsafe(self._async_engine.dispose(), self._loop).result()
            self._async_engine = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_async(self, url: str) -> None:
        # Async drivers need one long-lived loop: pooled connections belong to the loop that opened them.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rating-db-loop", daemon=True)
        self._thread.start()

        async def make() -> AsyncEngine:
            return create_async_engine(url, pool_pre_ping=True)

        self._async_engine = asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    async def _run_async(self, fn: Callable[[Session], T]) -> T:
        assert self._async_engine is not None
        async with AsyncSession(self._async_engine, expire_on_commit=False) as session, session.begin():
            return await session.run_sync(fn)


def _create_schema(connection: Any) -> None:
    Base.metadata.create_all(connection)
    _add_missing_columns(connection)


def _add_missing_columns(connection: Any) -> None:
    """Add the model's columns an older database lacks (all nullable or with a server default)."""
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                spec = CreateColumn(column).compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def _parse_url(url: str) -> Any:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {_masked(url)!r} is not a URL; use sqlite:///path/rating.db or "
            "postgresql+asyncpg://user@host:5432/db"
        ) from exc


def _sync_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    # Uvicorn serves sync endpoints from a thread pool, so the connection may move between threads.
    connect_args = {"check_same_thread": False, "timeout": 30}
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, else every pooled connection would see its own empty database.
        return create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (admin page) do not block the vote writer
    cursor.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
