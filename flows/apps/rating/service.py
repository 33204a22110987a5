"""What the rating app does, independent of HTTP: create studies, hand out tasks, record and export votes.

Raters are identified by a random 128-bit link token; the database keeps only its SHA-256, so a leaked
database does not leak working links. Models stay hidden from raters: the rater API speaks of "left" and
"right" and the server maps that onto model_a / model_b with the task's recorded `left`.

A vote counts only when the study's rules were followed, checked here and not trusted to the page:
the rater acknowledged the instructions; the task was issued (handed out by `next_task`, which stamps
the start of the time on task) at least the study's `min_watch_seconds` ago; and the page reported both
videos' first `ended` event (`report_watched`). "Video broken" is the exception: a video that cannot
play never ends, so that answer needs only an issued task. Answers: left, right, tie, both_bad (neither
is acceptable; analysed as a tie) and broken (left out of the analysis and reported).

Study operations: revoke a rater's link or re-issue a new one (the old one stops working), and hand a
dropout's open tasks to other raters of the study.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flows.apps.rating.db import AssignmentRow, Database, RaterRow, StudyRow, TaskRow, VoteRow, utc_now
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
CHOICES = ("left", "right", "tie", "both_bad", "broken")
SIDES = ("left", "right", "image")
VIDEO_SIDES = ("left", "right")
DEFAULT_MIN_WATCH_SECONDS = 2.0
"""Default floor on a task's time before a vote counts: the shortest SVD clip (14 frames at 7 fps)."""
REVOKED_PREFIX = "revoked-"


class StudyExistsError(InputError):
    """A study with this id is already in the database."""


class UnknownTokenError(InputError):
    """The link token matches no rater (mistyped link, or a study in another database)."""


class UnknownTaskError(InputError):
    """The task is not part of this rater's assignment."""


class DuplicateVoteError(InputError):
    """The rater already voted on this task; the first vote stands."""


class UnknownRaterError(InputError):
    """An admin operation names a rater that is not in the study."""


class NotReadyError(InputError):
    """A vote came before the study's rules allow it: instructions not acknowledged, task not issued, the
    minimum watch time not over, or not both videos played through."""


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
    *,
    min_watch_seconds: float = DEFAULT_MIN_WATCH_SECONDS,
    instructions: str | None = None,
) -> dict[str, str]:
    """Store the study and return {rater_id: link token}; the tokens are not stored and cannot be re-read.

    `min_watch_seconds`: a vote counts only this long after its task was issued (and after both videos
    played through once); `instructions`: study-specific text shown before the first task.
    """
    if not 0.0 <= min_watch_seconds <= 3600.0:
        raise InputError(f"min_watch_seconds={min_watch_seconds} must be between 0 and 3600")
    clean = validate_tasks(study_id, tasks)
    plan = resolve_assignment(clean, assignment, raters)
    tokens = {rater_id: new_token() for rater_id in plan}

    def write(session: Session) -> None:
        if session.scalar(select(StudyRow.id).where(StudyRow.study_id == study_id)) is not None:
            raise StudyExistsError(f"study {study_id!r} already exists in this database; pick another id")
        study = StudyRow(
            study_id=study_id, min_watch_seconds=float(min_watch_seconds), instructions=instructions or None
        )
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


def _assignment(session: Session, rater: RaterRow, task_id: str) -> tuple[TaskRow, AssignmentRow]:
    row = session.execute(
        select(TaskRow, AssignmentRow)
        .join(AssignmentRow, AssignmentRow.task_pk == TaskRow.id)
        .where(AssignmentRow.rater_pk == rater.id, TaskRow.task_id == task_id)
    ).first()
    if row is None:
        raise UnknownTaskError(f"task {task_id!r} is not assigned to this rater")
    return row[0], row[1]


def _assigned_task(session: Session, rater: RaterRow, task_id: str) -> TaskRow:
    return _assignment(session, rater, task_id)[0]


def _counts(session: Session, rater: RaterRow) -> tuple[int, int]:
    total = session.scalar(select(func.count(AssignmentRow.id)).where(AssignmentRow.rater_pk == rater.id))
    done = session.scalar(select(func.count(VoteRow.id)).where(VoteRow.rater_pk == rater.id))
    return done or 0, total or 0


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written as UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _elapsed(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else (now - _aware(since)).total_seconds()


def _watch_state(study: StudyRow, assignment: AssignmentRow, now: datetime) -> dict[str, Any]:
    """What the page needs to gate its buttons: which videos were reported ended, seconds still to wait."""
    remaining = max(0.0, study.min_watch_seconds - _elapsed(assignment.issued_at, now))
    return {
        "watched": {
            "left": assignment.left_ended_at is not None,
            "right": assignment.right_ended_at is not None,
        },
        "wait_seconds": round(remaining, 3),
    }


def next_task(db: Database | str, token: str) -> dict[str, Any]:
    """The rater's first unanswered task in assignment order (None when done) with progress counts.

    Before the rater acknowledged the instructions no task is handed out (`acknowledged` is False). The
    task returned is issued: its first hand-out time starts the time on task and the minimum watch.
    """

    def read(session: Session) -> dict[str, Any]:
        rater = _rater(session, token)
        study = rater.study
        done, total = _counts(session, rater)
        state: dict[str, Any] = {
            "study_id": study.study_id,
            "rater_id": rater.rater_id,
            "done": done,
            "total": total,
            "acknowledged": rater.acknowledged_at is not None,
            "instructions": study.instructions,
            "min_watch_seconds": study.min_watch_seconds,
            "task": None,
        }
        if rater.acknowledged_at is None:
            return state
        row = session.execute(_open_assignments(rater.id).limit(1)).first()
        if row is not None:
            assignment, task = row
            now = utc_now()
            if assignment.issued_at is None:
                assignment.issued_at = now
            state["task"] = {
                "task_id": task.task_id,
                "question": task.question,
                "question_text": QUESTION_TEXT[task.question],
                "prompt": task.prompt,
                "has_image": task.image_uri is not None,
                **_watch_state(study, assignment, now),
            }
        return state

    return _run(db, read)


def acknowledge_instructions(db: Database | str, token: str) -> dict[str, Any]:
    """Record that the rater read the instructions (the first time only); tasks are handed out from now."""

    def write(session: Session) -> None:
        rater = _rater(session, token)
        if rater.acknowledged_at is None:
            rater.acknowledged_at = utc_now()

    _run(db, write)
    return next_task(db, token)


def report_watched(db: Database | str, token: str, task_id: str, side: str) -> dict[str, Any]:
    """Record the page's report that the video on `side` played to its end (the first report counts)."""
    if side not in VIDEO_SIDES:
        raise InputError(f"side {side!r} must be one of {VIDEO_SIDES}")

    def write(session: Session) -> dict[str, Any]:
        rater = _rater(session, token)
        _, assignment = _assignment(session, rater, task_id)
        if assignment.issued_at is None:
            raise NotReadyError(f"task {task_id!r} was not handed out yet; open it from the rating page")
        now = utc_now()
        column = "left_ended_at" if side == "left" else "right_ended_at"
        if getattr(assignment, column) is None:
            setattr(assignment, column, now)
        return {"task_id": task_id, **_watch_state(rater.study, assignment, now)}

    return _run(db, write)


def _check_ready(
    rater: RaterRow, task_id: str, assignment: AssignmentRow, choice: str, now: datetime
) -> None:
    """Refuse a vote the study's rules do not allow yet (see the module doc)."""
    if rater.acknowledged_at is None:
        raise NotReadyError("read the instructions and confirm them before the first vote")
    if assignment.issued_at is None:
        raise NotReadyError(f"task {task_id!r} was not handed out yet; open it from the rating page")
    if choice == "broken":
        return
    unplayed = [
        side
        for side, ended in (("left", assignment.left_ended_at), ("right", assignment.right_ended_at))
        if ended is None
    ]
    if unplayed:
        raise NotReadyError(
            f"watch both videos to the end before voting ({' and '.join(unplayed)} not played through yet); "
            "if a video does not play, answer 'video broken'"
        )
    minimum = rater.study.min_watch_seconds
    if _elapsed(assignment.issued_at, now) < minimum:
        raise NotReadyError(f"watch the pair for at least {minimum:g} s before voting")


def record_vote(db: Database | str, token: str, task_id: str, choice: str) -> dict[str, Any]:
    """Store the rater's answer (one of CHOICES) once; a second vote raises DuplicateVoteError and a vote
    before the study's rules allow it NotReadyError (see the module doc)."""
    if choice not in CHOICES:
        raise InputError(f"choice {choice!r} must be one of {CHOICES}")

    def write(session: Session) -> dict[str, Any]:
        rater = _rater(session, token)
        task, assignment = _assignment(session, rater, task_id)
        if session.scalar(select(VoteRow.id).where(VoteRow.rater_pk == rater.id, VoteRow.task_pk == task.id)):
            raise DuplicateVoteError(f"task {task_id!r} already has your vote; it is counted once")
        now = utc_now()
        _check_ready(rater, task_id, assignment, choice, now)
        winner = _winner(task.left, choice)
        seconds = _elapsed(assignment.issued_at, now)
        session.add(
            VoteRow(
                rater_pk=rater.id, task_pk=task.id, winner=winner, created_at=now, seconds_on_task=seconds
            )
        )
        session.flush()
        done, total = _counts(session, rater)
        return {
            "task_id": task_id,
            "winner": winner,
            "done": done,
            "total": total,
            "seconds_on_task": seconds,
        }

    try:
        return _run(db, write)
    except IntegrityError as exc:  # a concurrent request won the race for the unique constraint
        raise DuplicateVoteError(f"task {task_id!r} already has your vote; it is counted once") from exc


def _winner(left: str, choice: str) -> str:
    if choice not in ("left", "right"):
        return choice  # tie, both_bad, broken: no side won
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
    attention-check status of the analysis' binomial test (passed | failed | unchecked), open tasks, answers
    that were "both bad" or "video broken", median time on task, link state; and the broken-video tasks."""

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
        broken = session.execute(
            select(TaskRow.task_id, func.count(VoteRow.id))
            .join(VoteRow, VoteRow.task_pk == TaskRow.id)
            .where(TaskRow.study_pk == study.id, VoteRow.winner == "broken")
            .group_by(TaskRow.task_id)
            .order_by(TaskRow.task_id)
        ).all()
        return {
            "study_id": study_id,
            "tasks": session.scalar(select(func.count(TaskRow.id)).where(TaskRow.study_pk == study.id)) or 0,
            "votes": sum(r["done"] for r in raters),
            "assigned": sum(r["total"] for r in raters),
            "min_watch_seconds": study.min_watch_seconds,
            "per_question": per_question,
            "raters": raters,
            "broken_tasks": [{"task_id": task_id, "reports": count} for task_id, count in broken],
        }

    return _run(db, read)


def _study(session: Session, study_id: str) -> StudyRow:
    study = session.scalar(select(StudyRow).where(StudyRow.study_id == study_id))
    if study is None:
        raise InputError(f"study {study_id!r} is not in this database; list studies on the admin page")
    return study


def _rater_progress(session: Session, study: StudyRow) -> list[dict[str, Any]]:
    raters = {r.rater_id: r for r in session.scalars(select(RaterRow).where(RaterRow.study_pk == study.id))}
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
    seconds: dict[str, list[float]] = {rater_id: [] for rater_id in totals}
    for rater_id, value in session.execute(
        select(RaterRow.rater_id, VoteRow.seconds_on_task)
        .join(VoteRow, VoteRow.rater_pk == RaterRow.id)
        .where(RaterRow.study_pk == study.id, VoteRow.seconds_on_task.is_not(None))
    ):
        if value is not None:  # filtered in SQL already; narrows the type
            seconds[rater_id].append(float(value))
    stats = {
        rater_id: {"done": 0, "gold_done": 0, "gold_correct": 0, "both_bad": 0, "broken": 0}
        for rater_id in totals
    }
    for rater_id, is_gold, winner, count in votes:
        stats[rater_id]["done"] += count
        if winner in ("both_bad", "broken"):
            stats[rater_id][winner] += count
        if is_gold and winner != "broken":  # as the analysis: a broken video is no attention check
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
                "open": totals[rater_id] - s["done"],
                "gold_accuracy": s["gold_correct"] / s["gold_done"] if s["gold_done"] else None,
                "gold_p_value": p_value,
                "gold_status": ("failed" if p_value < rule.exclusion_alpha else "passed")
                if checked
                else "unchecked",
                "median_seconds_on_task": float(np.median(seconds[rater_id])) if seconds[rater_id] else None,
                "acknowledged": raters[rater_id].acknowledged_at is not None,
                "revoked": raters[rater_id].revoked_at is not None,
            }
        )
    return out


# --- study administration: links and dropouts ---------------------------------------------------------
def _study_rater(session: Session, study_id: str, rater_id: str) -> RaterRow:
    study = _study(session, study_id)
    rater = session.scalar(
        select(RaterRow).where(RaterRow.study_pk == study.id, RaterRow.rater_id == rater_id)
    )
    if rater is None:
        names = list(session.scalars(select(RaterRow.rater_id).where(RaterRow.study_pk == study.id)))
        raise UnknownRaterError(
            f"rater {rater_id!r} is not in study {study_id!r}; its raters: {sorted(names)}"
        )
    return rater


def reissue_link(db: Database | str, study_id: str, rater_id: str) -> str:
    """A new link token for the rater; the previous link stops working at once (votes cast stay)."""
    token = new_token()

    def write(session: Session) -> None:
        rater = _study_rater(session, study_id, rater_id)
        rater.token_hash = hash_token(token)
        rater.revoked_at = None

    _run(db, write)
    return token


def revoke_link(db: Database | str, study_id: str, rater_id: str) -> None:
    """The rater's link stops working (votes cast stay; `reissue_link` gives the rater a new one)."""

    def write(session: Session) -> None:
        rater = _study_rater(session, study_id, rater_id)
        # Never equal to a SHA-256 hex digest, so no token matches; unique like the real hashes.
        rater.token_hash = REVOKED_PREFIX + secrets.token_hex(28)
        rater.revoked_at = utc_now()

    _run(db, write)


def reassign_open_tasks(
    db: Database | str, study_id: str, rater_id: str, to: Sequence[str] | None = None
) -> dict[str, Any]:
    """Move a dropout's unanswered tasks to other raters of the study: each task, in the dropout's order,
    to the rater with the fewest open tasks (then fewest assigned, then name) among `to` (default: every
    other rater whose link is not revoked) who does not have that task yet; it joins the end of their queue.

    Returns {"moved": {rater_id: [task_id, ...]}, "unplaced": [task_id, ...]}: a task every candidate
    already has stays with the dropout.
    """

    def write(session: Session) -> dict[str, Any]:
        dropout = _study_rater(session, study_id, rater_id)
        names = list(to) if to is not None else None
        if names is not None:
            if rater_id in names:
                raise InputError(f"--to names the dropout {rater_id!r} itself; name other raters")
            candidates = [_study_rater(session, study_id, name) for name in names]
        else:
            candidates = list(
                session.scalars(
                    select(RaterRow).where(
                        RaterRow.study_pk == dropout.study_pk,
                        RaterRow.id != dropout.id,
                        RaterRow.revoked_at.is_(None),
                    )
                )
            )
        if not candidates:
            raise InputError(f"study {study_id!r} has no other rater with a working link to take the tasks")
        open_rows = session.execute(_open_assignments(dropout.id)).all()
        state = {c.id: _queue_state(session, c) for c in candidates}
        moved: dict[str, list[str]] = {}
        unplaced: list[str] = []
        for assignment, task in open_rows:
            free = [c for c in candidates if task.id not in state[c.id]["tasks"]]
            if not free:
                unplaced.append(task.task_id)
                continue
            target = min(free, key=lambda c: (state[c.id]["open"], len(state[c.id]["tasks"]), c.rater_id))
            slot = state[target.id]
            slot["position"] += 1
            session.add(AssignmentRow(rater_pk=target.id, task_pk=task.id, position=slot["position"]))
            session.delete(assignment)
            slot["tasks"].add(task.id)
            slot["open"] += 1
            moved.setdefault(target.rater_id, []).append(task.task_id)
        return {"moved": moved, "unplaced": unplaced}

    return _run(db, write)


def _open_assignments(rater_pk: int) -> Select[AssignmentRow, TaskRow]:
    """(assignment, task) rows of a rater's queue not voted on yet, in queue order (a select)."""
    voted = select(VoteRow.task_pk).where(VoteRow.rater_pk == rater_pk)
    return (
        select(AssignmentRow, TaskRow)
        .join(TaskRow, TaskRow.id == AssignmentRow.task_pk)
        .where(AssignmentRow.rater_pk == rater_pk, AssignmentRow.task_pk.not_in(voted))
        .order_by(AssignmentRow.position)
    )


def _queue_state(session: Session, rater: RaterRow) -> dict[str, Any]:
    assigned = session.execute(
        select(AssignmentRow.task_pk, AssignmentRow.position).where(AssignmentRow.rater_pk == rater.id)
    ).all()
    done = session.scalar(select(func.count(VoteRow.id)).where(VoteRow.rater_pk == rater.id)) or 0
    return {
        "tasks": {task_pk for task_pk, _ in assigned},
        "open": len(assigned) - done,
        "position": max((position for _, position in assigned), default=-1),
    }


def export_votes(db: Database | str, study_id: str, with_timing: bool = False) -> pd.DataFrame:
    """All human votes of a study in VOTE_COLUMNS order, oldest first (`with_timing`: plus the column
    `seconds_on_task`, the time from the task's issue to the vote)."""

    def read(session: Session) -> list[dict[str, Any]]:
        study = _study(session, study_id)
        rows = session.execute(
            select(VoteRow, TaskRow, RaterRow)
            .join(TaskRow, TaskRow.id == VoteRow.task_pk)
            .join(RaterRow, RaterRow.id == VoteRow.rater_pk)
            .where(TaskRow.study_pk == study.id)
            .order_by(VoteRow.created_at, VoteRow.id)
        ).all()
        return [
            {**_vote_record(study_id, vote, task, rater), "seconds_on_task": vote.seconds_on_task}
            for vote, task, rater in rows
        ]

    records = _run(db, read)
    columns = [*VOTE_COLUMNS, "seconds_on_task"] if with_timing else VOTE_COLUMNS
    frame = pd.DataFrame(records, columns=columns)
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
