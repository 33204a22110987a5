"""What the rating app does, independent of HTTP: create studies, hand out tasks, record and export votes.

Raters are identified by a random 128-bit link token; the database keeps only its SHA-256, so a leaked
database does not leak working links. Models stay hidden from raters: the rater API speaks of "left" and
"right" and the server maps that onto model_a / model_b with the task's recorded `left`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flows.apps.rating.db import AssignmentRow, Database, RaterRow, StudyRow, TaskRow, VoteRow
from flows.apps.rating.validation import resolve_assignment, validate_tasks
from svd_core.errors import InputError
from svd_core.evaluation.config import AnalysisConfig
from svd_core.evaluation.rater_quality import exclusion_p_value
from svd_core.evaluation.schema import VOTE_COLUMNS

T = TypeVar("T")

QUESTION_TEXT = {
    "prompt_alignment": "Which video follows the text prompt better?",
    "visual_quality": "Which video has better visual quality?",
    "overall": "Which video do you prefer overall?",
}
CHOICES = ("left", "right", "tie")
SIDES = ("left", "right", "image")


class StudyExistsError(InputError):
    """A study with this id is already in the database."""


class UnknownTokenError(InputError):
    """The link token matches no rater (mistyped link, or a study in another database)."""


class UnknownTaskError(InputError):
    """The task is not part of this rater's assignment."""


class DuplicateVoteError(InputError):
    """The rater already voted on this task; the first vote stands."""


def new_token() -> str:
    return secrets.token_urlsafe(16)  # 16 random bytes = 128 bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _run(db: Database | str, fn: Callable[[Session], T]) -> T:
    """Run on a Database, or open one for a URL for this call only (CLI and library callers)."""
    if isinstance(db, Database):
        return db.run(fn)
    with Database(db) as opened:
        return opened.run(fn)


def create_study(
    db: Database | str,
    study_id: str,
    tasks: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, Sequence[str]] | None = None,
    raters: int | str | Sequence[str] | None = None,
) -> dict[str, str]:
    """Store the study and return {rater_id: link token}; the tokens are not stored and cannot be re-read."""
    clean = validate_tasks(study_id, tasks)
    plan = resolve_assignment(clean, assignment, raters)
    tokens = {rater_id: new_token() for rater_id in plan}

    def write(session: Session) -> None:
        if session.scalar(select(StudyRow.id).where(StudyRow.study_id == study_id)) is not None:
            raise StudyExistsError(f"study {study_id!r} already exists in this database; pick another id")
        study = StudyRow(study_id=study_id)
        session.add(study)
        session.flush()
        task_rows = {task["task_id"]: TaskRow(study_pk=study.id, **task) for task in clean}
        session.add_all(task_rows.values())
        for rater_id, task_ids in plan.items():
            rater = RaterRow(study_pk=study.id, rater_id=rater_id, token_hash=hash_token(tokens[rater_id]))
            session.add(rater)
            session.flush()
            session.add_all(
                AssignmentRow(rater_pk=rater.id, task_pk=task_rows[task_id].id, position=position)
                for position, task_id in enumerate(task_ids)
            )

    _run(db, write)
    return tokens


def _rater(session: Session, token: str) -> RaterRow:
    rater = None
    if 0 < len(token) <= 64:
        rater = session.scalar(select(RaterRow).where(RaterRow.token_hash == hash_token(token)))
    if rater is None:
        raise UnknownTokenError("this rating link is not valid; ask the study admin for your personal link")
    return rater


def _assigned_task(session: Session, rater: RaterRow, task_id: str) -> TaskRow:
    task = session.scalar(
        select(TaskRow)
        .join(AssignmentRow, AssignmentRow.task_pk == TaskRow.id)
        .where(AssignmentRow.rater_pk == rater.id, TaskRow.task_id == task_id)
    )
    if task is None:
        raise UnknownTaskError(f"task {task_id!r} is not assigned to this rater")
    return task


def _counts(session: Session, rater: RaterRow) -> tuple[int, int]:
    total = session.scalar(select(func.count(AssignmentRow.id)).where(AssignmentRow.rater_pk == rater.id))
    done = session.scalar(select(func.count(VoteRow.id)).where(VoteRow.rater_pk == rater.id))
    return done or 0, total or 0


def next_task(db: Database | str, token: str) -> dict[str, Any]:
    """The rater's first unanswered task in assignment order (None when done) with progress counts."""

    def read(session: Session) -> dict[str, Any]:
        rater = _rater(session, token)
        done, total = _counts(session, rater)
        voted = select(VoteRow.task_pk).where(VoteRow.rater_pk == rater.id)
        task = session.scalar(
            select(TaskRow)
            .join(AssignmentRow, AssignmentRow.task_pk == TaskRow.id)
            .where(AssignmentRow.rater_pk == rater.id, TaskRow.id.not_in(voted))
            .order_by(AssignmentRow.position)
            .limit(1)
        )
        view = None
        if task is not None:
            view = {
                "task_id": task.task_id,
                "question": task.question,
                "question_text": QUESTION_TEXT[task.question],
                "prompt": task.prompt,
                "has_image": task.image_uri is not None,
            }
        return {
            "study_id": rater.study.study_id,
            "rater_id": rater.rater_id,
            "done": done,
            "total": total,
            "task": view,
        }

    return _run(db, read)


def record_vote(db: Database | str, token: str, task_id: str, choice: str) -> dict[str, Any]:
    """Store the rater's answer ("left" / "right" / "tie") once; a second vote raises DuplicateVoteError."""
    if choice not in CHOICES:
        raise InputError(f"choice {choice!r} must be one of {CHOICES}")

    def write(session: Session) -> dict[str, Any]:
        rater = _rater(session, token)
        task = _assigned_task(session, rater, task_id)
        if session.scalar(select(VoteRow.id).where(VoteRow.rater_pk == rater.id, VoteRow.task_pk == task.id)):
            raise DuplicateVoteError(f"task {task_id!r} already has your vote; it is counted once")
        winner = _winner(task.left, choice)
        session.add(VoteRow(rater_pk=rater.id, task_pk=task.id, winner=winner))
        session.flush()
        done, total = _counts(session, rater)
        return {"task_id": task_id, "winner": winner, "done": done, "total": total}

    try:
        return _run(db, write)
    except IntegrityError as exc:  # a concurrent request won the race for the unique constraint
        raise DuplicateVoteError(f"task {task_id!r} already has your vote; it is counted once") from exc


def _winner(left: str, choice: str) -> str:
    if choice == "tie":
        return "tie"
    right = "model_b" if left == "model_a" else "model_a"
    return left if choice == "left" else right


def media_uri(db: Database | str, token: str, task_id: str, side: str) -> str:
    """URI shown on `side` ("left", "right" or the conditioning "image") of an assigned task.

    Only URIs stored with the study can ever be returned, whatever the request asks for.
    """
    if side not in SIDES:
        raise InputError(f"side {side!r} must be one of {SIDES}")

    def read(session: Session) -> str:
        task = _assigned_task(session, _rater(session, token), task_id)
        if side == "image":
            if task.image_uri is None:
                raise UnknownTaskError(f"task {task_id!r} has no conditioning image")
            return task.image_uri
        shown_model = task.left if side == "left" else ("model_b" if task.left == "model_a" else "model_a")
        return task.sample_a_uri if shown_model == "model_a" else task.sample_b_uri

    return _run(db, read)


def list_studies(db: Database | str) -> list[str]:
    return _run(db, lambda session: list(session.scalars(select(StudyRow.study_id).order_by(StudyRow.id))))


def progress(db: Database | str, study_id: str) -> dict[str, Any]:
    """Admin numbers for one study: votes per question and per rater, gold accuracy per rater and the
    attention-check status of the analysis' binomial test (passed | failed | unchecked)."""

    def read(session: Session) -> dict[str, Any]:
        study = _study(session, study_id)
        per_question = {
            question: {"assigned": assigned, "votes": 0}
            for question, assigned in session.execute(
                select(TaskRow.question, func.count(AssignmentRow.id))
                .join(AssignmentRow, AssignmentRow.task_pk == TaskRow.id)
                .where(TaskRow.study_pk == study.id)
                .group_by(TaskRow.question)
            )
        }
        for question, votes in session.execute(
            select(TaskRow.question, func.count(VoteRow.id))
            .join(VoteRow, VoteRow.task_pk == TaskRow.id)
            .where(TaskRow.study_pk == study.id)
            .group_by(TaskRow.question)
        ):
            per_question[question]["votes"] = votes
        raters = _rater_progress(session, study)
        return {
            "study_id": study_id,
            "tasks": session.scalar(select(func.count(TaskRow.id)).where(TaskRow.study_pk == study.id)) or 0,
            "votes": sum(r["done"] for r in raters),
            "assigned": sum(r["total"] for r in raters),
            "per_question": per_question,
            "raters": raters,
        }

    return _run(db, read)


def _study(session: Session, study_id: str) -> StudyRow:
    study = session.scalar(select(StudyRow).where(StudyRow.study_id == study_id))
    if study is None:
        raise InputError(f"study {study_id!r} is not in this database; list studies on the admin page")
    return study


def _rater_progress(session: Session, study: StudyRow) -> list[dict[str, Any]]:
    totals = dict(
        session.execute(
            select(RaterRow.rater_id, func.count(AssignmentRow.id))
            .outerjoin(AssignmentRow, AssignmentRow.rater_pk == RaterRow.id)
            .where(RaterRow.study_pk == study.id)
            .group_by(RaterRow.rater_id)
        ).all()
    )
    votes = session.execute(
        select(RaterRow.rater_id, TaskRow.is_gold, VoteRow.winner, func.count(VoteRow.id))
        .join(VoteRow, VoteRow.rater_pk == RaterRow.id)
        .join(TaskRow, TaskRow.id == VoteRow.task_pk)
        .where(RaterRow.study_pk == study.id)
        .group_by(RaterRow.rater_id, TaskRow.is_gold, VoteRow.winner)
    ).all()
    stats = {rater_id: {"done": 0, "gold_done": 0, "gold_correct": 0} for rater_id in totals}
    for rater_id, is_gold, winner, count in votes:
        stats[rater_id]["done"] += count
        if is_gold:
            stats[rater_id]["gold_done"] += count
            # Gold pairs put the real sample in model_a: any other answer (tie included) fails the check.
            stats[rater_id]["gold_correct"] += count if winner == "model_a" else 0
    rule = AnalysisConfig()  # the analysis' defaults: the admin page flags exactly whom `analyze` excludes
    out = []
    for rater_id, s in sorted(stats.items()):
        p_value = exclusion_p_value(s["gold_correct"], s["gold_done"], rule.attentive_accuracy)
        checked = s["gold_done"] >= rule.min_gold_votes
        out.append(
            {
                "rater_id": rater_id,
                "total": totals[rater_id],
                **s,
                "gold_accuracy": s["gold_correct"] / s["gold_done"] if s["gold_done"] else None,
                "gold_p_value": p_value,
                "gold_status": ("failed" if p_value < rule.exclusion_alpha else "passed")
                if checked
                else "unchecked",
            }
        )
    return out


def export_votes(db: Database | str, study_id: str) -> pd.DataFrame:
    """All human votes of a study in VOTE_COLUMNS order, oldest first."""

    def read(session: Session) -> list[dict[str, Any]]:
        study = _study(session, study_id)
        rows = session.execute(
            select(VoteRow, TaskRow, RaterRow)
            .join(TaskRow, TaskRow.id == VoteRow.task_pk)
            .join(RaterRow, RaterRow.id == VoteRow.rater_pk)
            .where(TaskRow.study_pk == study.id)
            .order_by(VoteRow.created_at, VoteRow.id)
        ).all()
        return [_vote_record(study_id, vote, task, rater) for vote, task, rater in rows]

    records = _run(db, read)
    frame = pd.DataFrame(records, columns=VOTE_COLUMNS)
    return frame.astype({"is_gold": bool, "synthetic": bool})


def _vote_record(study_id: str, vote: VoteRow, task: TaskRow, rater: RaterRow) -> dict[str, Any]:
    return {
        "study_id": study_id,
        "task_id": task.task_id,
        "question": task.question,
        "rater_id": rater.rater_id,
        "prompt_id": task.prompt_id,
        "model_a": task.model_a,
        "model_b": task.model_b,
        "left": task.left,
        "winner": vote.winner,
        "is_gold": task.is_gold,
        "synthetic": False,
        "created_at": _iso_utc(vote.created_at),
    }


def _iso_utc(moment: datetime) -> str:
    # SQLite hands back naive datetimes; they were written as UTC.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")
