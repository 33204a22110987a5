"""Stand-in for a rater's page in service-level tests: instructions read, pair shown, both videos watched.

Tests about vote mapping, progress or export vote on tasks in any order; the page would only ever show the
next task in the rater's queue, so `open_and_watch` backdates the task's issue time in the database (as if
it had been shown long enough ago) and reports both videos' `ended` events through the service, exactly as
the page's JavaScript does. The watch rules themselves are tested without this helper.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.apps.rating import service
from flows.apps.rating.db import AssignmentRow, Database, RaterRow, TaskRow, utc_now


def _run(db: Database | str, fn: Any) -> Any:
    if isinstance(db, Database):
        return db.run(fn)
    with Database(db) as opened:
        return opened.run(fn)


def backdate_issue(db: Database | str, token: str, task_id: str, seconds_ago: float) -> bool:
    """Mark the rater's task as shown `seconds_ago` (False when the task is not the rater's)."""

    def write(session: Session) -> bool:
        assignment = session.scalar(
            select(AssignmentRow)
            .join(RaterRow, RaterRow.id == AssignmentRow.rater_pk)
            .join(TaskRow, TaskRow.id == AssignmentRow.task_pk)
            .where(RaterRow.token_hash == service.hash_token(token), TaskRow.task_id == task_id)
        )
        if assignment is None:
            return False
        assignment.issued_at = utc_now() - timedelta(seconds=seconds_ago)
        return True

    return bool(_run(db, write))


def open_and_watch(db: Database | str, token: str, task_id: str, seconds_ago: float = 3600.0) -> None:
    """Acknowledge the instructions, show the task `seconds_ago`, report both videos played through."""
    service.acknowledge_instructions(db, token)
    if backdate_issue(db, token, task_id, seconds_ago):
        for side in service.VIDEO_SIDES:
            service.report_watched(db, token, task_id, side)


def vote(db: Database | str, token: str, task_id: str, choice: str) -> dict[str, Any]:
    """`service.record_vote` after the page's part of the protocol (see the module doc)."""
    open_and_watch(db, token, task_id)
    return service.record_vote(db, token, task_id, choice)
