"""Vote imports: arena-style CSV and Label Studio JSON exports -> a vote table in `VOTE_COLUMNS`.

Every row is checked on its own: good rows are imported, bad rows come back in `rejected` (columns
`row_number`, `reason`) so one typo never loses a whole file, and nothing bad reaches the analysis.

Arena CSV: one row per vote with columns `model_a, model_b, winner, question, rater_id, prompt_id, left`
(`winner` in model_a | model_b | tie; the public arena's `tie (bothbad)` counts as a tie), optionally
`study_id, task_id, is_gold, synthetic, created_at`. `row_number` is the 1-based data row (header not
counted). A missing `task_id` is derived from (study, question, prompt, model_a, model_b).

Label Studio: the full JSON export (a list of tasks) of a project whose tasks carry the data fields
`model_a, model_b, prompt_id, question, left` (optionally `study_id, task_id, is_gold`, plus the two video
URLs the page shows) and whose labeling config asks one single-choice question, e.g.

    <View>
      <Header value="$prompt"/>
      <Video name="video_left" value="$video_left"/> <Video name="video_right" value="$video_right"/>
      <Choices name="winner" toName="video_left" choice="single" required="true">
        <Choice value="left"/> <Choice value="right"/> <Choice value="tie"/>
      </Choices>
    </View>

(a `<Pairwise name="winner" toName="video_left,video_right"/>` tag works too: its `selected` is left or
right). The choice is positional, so it is mapped to model_a / model_b through the task's `left`. Each
annotation is one vote; `completed_by` (a user id or an object with `email`/`id`) is the rater. Cancelled
(skipped) annotations are rejected. `row_number` counts annotations in export order from 1.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.evaluation.schema import QUESTIONS, VOTE_COLUMNS, WINNERS

ARENA_REQUIRED = ("model_a", "model_b", "winner", "question", "rater_id", "prompt_id", "left")
LABEL_STUDIO_DATA = ("model_a", "model_b", "prompt_id", "question", "left")
WINNER_ALIASES = {"model_a": "model_a", "model_b": "model_b", "tie": "tie", "tie (bothbad)": "tie"}
TRUE_WORDS, FALSE_WORDS = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n", ""}
REJECT_COLUMNS = ["row_number", "reason"]


@dataclass
class ImportResult:
    """Imported votes (columns `VOTE_COLUMNS`) and the rows that were refused, each with its reason."""

    votes: pd.DataFrame
    rejected: pd.DataFrame

    def summary(self) -> str:
        return f"{len(self.votes)} vote(s) imported, {len(self.rejected)} row(s) rejected"


class RowRejected(ValueError):
    """A row that cannot be a vote; the message is its reason."""


def derive_task_id(study_id: str, question: str, prompt_id: str, model_a: str, model_b: str) -> str:
    digest = hashlib.sha256(f"{question}\x1f{prompt_id}\x1f{model_a}\x1f{model_b}".encode()).hexdigest()
    return f"{study_id}-{digest[:12]}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _as_bool(value: Any, column: str) -> bool:
    if isinstance(value, bool):
        return value
    if _is_missing(value):
        return False
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise RowRejected(f"{column} {value!r} is not a boolean (true/false, 1/0)")


def _as_timestamp(value: Any) -> str:
    if _is_missing(value):
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        stamp = pd.Timestamp(str(value))
    except (ValueError, TypeError) as exc:
        raise RowRejected(f"created_at {value!r} is not an ISO-8601 timestamp") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def normalize_vote(raw: Mapping[str, Any], study_id: str, synthetic: bool) -> dict[str, Any]:
    """One raw record -> one vote dict in `VOTE_COLUMNS`; raises RowRejected with the reason."""
    for column in ARENA_REQUIRED:
        if _is_missing(raw.get(column)):
            raise RowRejected(f"missing value in column {column!r}")
    vote: dict[str, Any] = {c: str(raw[c]).strip() for c in ARENA_REQUIRED}
    if vote["question"] not in QUESTIONS:
        raise RowRejected(f"unknown question {vote['question']!r}; expected one of {list(QUESTIONS)}")
    if vote["model_a"] == vote["model_b"]:
        raise RowRejected(f"same model {vote['model_a']!r} on both sides")
    winner = WINNER_ALIASES.get(vote["winner"].lower())
    if winner is None:
        raise RowRejected(f"unknown winner {vote['winner']!r}; expected one of {list(WINNERS)}")
    vote["winner"] = winner
    if vote["left"] not in ("model_a", "model_b"):
        raise RowRejected(f"left {vote['left']!r} must be 'model_a' or 'model_b'")
    vote["study_id"] = study_id if _is_missing(raw.get("study_id")) else str(raw["study_id"]).strip()
    vote["task_id"] = (
        derive_task_id(
            vote["study_id"], vote["question"], vote["prompt_id"], vote["model_a"], vote["model_b"]
        )
        if _is_missing(raw.get("task_id"))
        else str(raw["task_id"]).strip()
    )
    vote["is_gold"] = _as_bool(raw.get("is_gold"), "is_gold")
    vote["synthetic"] = _as_bool(raw.get("synthetic"), "synthetic") or synthetic
    vote["created_at"] = _as_timestamp(raw.get("created_at"))
    return {c: vote[c] for c in VOTE_COLUMNS}


def empty_votes() -> pd.DataFrame:
    return votes_frame([])


def votes_frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows -> a DataFrame with exactly `VOTE_COLUMNS`, text columns as str and flags as bool."""
    frame = pd.DataFrame(rows, columns=VOTE_COLUMNS)
    for column in VOTE_COLUMNS:
        frame[column] = frame[column].astype(bool if column in ("is_gold", "synthetic") else str)
    return frame


def normalize_votes(
    records: Iterable[tuple[int, Mapping[str, Any]]], study_id: str = "imported", synthetic: bool = False
) -> ImportResult:
    """(row_number, record) pairs -> good votes and rejected rows; a rater's second vote on a task is refused."""
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, str], int] = {}
    for row_number, raw in records:
        try:
            vote = normalize_vote(raw, study_id, synthetic)
            key = (vote["rater_id"], vote["task_id"])
            if key in first_seen:
                raise RowRejected(
                    f"duplicate vote: rater {key[0]!r} already voted on task {key[1]!r} (row {first_seen[key]})"
                )
        except RowRejected as exc:
            rejected.append({"row_number": row_number, "reason": str(exc)})
            continue
        first_seen[key] = row_number
        good.append(vote)
    return ImportResult(votes_frame(good), pd.DataFrame(rejected, columns=REJECT_COLUMNS))


# --- sources -----------------------------------------------------------------------------------------
def import_arena_csv(uri: str, study_id: str = "imported", synthetic: bool = False) -> ImportResult:
    """Arena-convention CSV (see module doc) -> votes; a missing required column refuses the whole file."""
    try:
        raw = pd.read_csv(_io.BytesIO(svd_io.read_bytes(uri)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{uri} is not a readable CSV ({exc}); export it again as UTF-8 CSV") from exc
    missing = [c for c in ARENA_REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(
            f"{uri} lacks column(s) {missing}; an arena CSV needs {list(ARENA_REQUIRED)} "
            f"(found {list(raw.columns)})"
        )
    rows = ((i + 1, record) for i, record in enumerate(raw.to_dict(orient="records")))
    return normalize_votes(rows, study_id, synthetic)


def _label_studio_rater(completed_by: Any) -> str | None:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("email") or completed_by.get("id")
    return None if _is_missing(completed_by) else str(completed_by)


def _label_studio_choice(result: Any) -> str:
    for region in result if isinstance(result, list) else []:
        value = region.get("value", {}) if isinstance(region, Mapping) else {}
        if region.get("type") == "choices" and value.get("choices"):
            return str(value["choices"][0]).strip().lower()
        if region.get("type") == "pairwise" and value.get("selected"):
            return str(value["selected"]).strip().lower()
    raise RowRejected("annotation has no choices/pairwise result; check the labeling config (imports.py)")


def _winner_from_choice(choice: str, left: str) -> str:
    right = "model_b" if left == "model_a" else "model_a"
    mapped = {"left": left, "right": right, "tie": "tie", "model_a": "model_a", "model_b": "model_b"}
    if choice not in mapped:
        raise RowRejected(
            f"unknown winner choice {choice!r}; the labeling config must offer left, right, tie"
        )
    return mapped[choice]


def _label_studio_record(task: Mapping[str, Any], annotation: Mapping[str, Any]) -> dict[str, Any]:
    data = task.get("data") or {}
    missing = [k for k in LABEL_STUDIO_DATA if _is_missing(data.get(k))]
    if missing:
        raise RowRejected(f"task data lacks {missing}; import tasks with fields {list(LABEL_STUDIO_DATA)}")
    if annotation.get("was_cancelled"):
        raise RowRejected("annotation was skipped (cancelled) by the rater")
    record = {k: data.get(k) for k in (*LABEL_STUDIO_DATA, "study_id", "task_id", "is_gold")}
    if _is_missing(record["task_id"]) and not _is_missing(task.get("id")):
        record["task_id"] = f"ls-{task['id']}"
    left = str(data["left"]).strip()
    if left not in ("model_a", "model_b"):
        raise RowRejected(f"left {left!r} must be 'model_a' or 'model_b'")
    record["winner"] = _winner_from_choice(_label_studio_choice(annotation.get("result")), left)
    record["rater_id"] = _label_studio_rater(annotation.get("completed_by"))
    record["created_at"] = annotation.get("created_at")
    return record


def import_label_studio(uri: str, study_id: str = "imported") -> ImportResult:
    """Label Studio JSON export (see module doc) -> votes, one per annotation."""
    try:
        tasks = json.loads(svd_io.read_bytes(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{uri} is not JSON ({exc}); use Label Studio's 'JSON' export (not JSON-MIN)"
        ) from exc
    if not isinstance(tasks, list):
        raise InputError(f"{uri} must hold a list of tasks (Label Studio's full JSON export)")
    rows: list[tuple[int, Mapping[str, Any]]] = []
    failed: list[dict[str, Any]] = []
    for task in tasks:
        for annotation in (task.get("annotations") or []) if isinstance(task, Mapping) else []:
            row_number = len(rows) + len(failed) + 1
            try:
                rows.append((row_number, _label_studio_record(task, annotation)))
            except RowRejected as exc:
                failed.append({"row_number": row_number, "reason": f"task {task.get('id')}: {exc}"})
    result = normalize_votes(rows, study_id)
    rejected = pd.concat([result.rejected, pd.DataFrame(failed, columns=REJECT_COLUMNS)], ignore_index=True)
    return ImportResult(result.votes, rejected.sort_values("row_number", ignore_index=True))


# --- vote files --------------------------------------------------------------------------------------
def write_votes(votes: pd.DataFrame, uri: str) -> None:
    """Write a vote table as Parquet (or CSV when `uri` ends in .csv), atomically through svd_core.storage."""
    buf = _io.BytesIO()
    if uri.lower().endswith(".csv"):
        votes[VOTE_COLUMNS].to_csv(buf, index=False)
    else:
        votes[VOTE_COLUMNS].to_parquet(buf, index=False)
    svd_io.write_bytes(uri, buf.getvalue())


def load_votes(uri: str, study_id: str = "imported") -> ImportResult:
    """A vote table from Parquet or (arena) CSV, every row re-checked against the vote contract."""
    if uri.lower().endswith(".csv"):
        return import_arena_csv(uri, study_id)
    try:
        frame = pd.read_parquet(_io.BytesIO(svd_io.read_bytes(uri)))
    except (OSError, ValueError) as exc:
        raise InputError(f"{uri} is not a Parquet vote table ({exc}); pass a .parquet or .csv file") from exc
    missing = [c for c in ARENA_REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"{uri} lacks vote column(s) {missing}; expected {VOTE_COLUMNS}")
    rows = ((i + 1, record) for i, record in enumerate(frame.to_dict(orient="records")))
    return normalize_votes(rows, study_id)
