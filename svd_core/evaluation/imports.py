"""Vote imports: arena battle exports, arena-style CSV and Label Studio JSON -> a vote table in `VOTE_COLUMNS`.

Every row is checked on its own: good rows are imported, bad rows come back in `rejected` (columns
`row_number`, `reason`) so one typo never loses a whole file, and nothing bad reaches the analysis.
Callers report the rejected rows and refuse the file when more than a configured share is rejected
(`check_rejected`): nothing is dropped silently.

Arena battles (the public arena's battle export: CSV, JSON list, JSON lines or Parquet): columns
`model_a, model_b, winner` (winner in model_a | model_b | tie | tie (bothbad); "tie (bothbad)" is kept as
the distinct outcome `both_bad`, which the analysis counts as a tie)
and `judge` (the rater), usually with `tstamp` (Unix seconds), `turn`, `anony`, `language`,
`question_id`. There is no side column: model_a was shown on the left. Optional columns of the platform's
own convention override the derived values: `rater_id` (else `judge`), `prompt_id` (else `question_id`,
else a hash of the `prompt` text, else the battle `judge@tstamp`, else the row), `question` (else the
import's default question, `overall`), `left` (else model_a), `study_id, task_id, is_gold, synthetic,
created_at` (else from `tstamp`). `row_number` is the 1-based data row (header not counted). A missing
`task_id` is derived from (study, question, prompt, model_a, model_b).

Duplicates: a rater's second vote on the same pair for the same prompt and question is rejected, also
when the models are listed the other way round (a battle exported twice with the sides swapped).

Label Studio: the full JSON export (a list of tasks) of a project whose tasks carry the data fields
`model_a, model_b, prompt_id, left` (optionally `question, study_id, task_id, is_gold`, plus the two video
URLs the page shows). The labeling config asks one single-choice question per `<Choices>` tag:

    <View>
      <Header value="$prompt"/>
      <Video name="video_left" value="$video_left"/> <Video name="video_right" value="$video_right"/>
      <Choices name="visual_quality" toName="video_left" choice="single" required="true">
        <Choice value="left"/> <Choice value="right"/> <Choice value="tie"/>
        <Choice value="both bad"/> <Choice value="video broken"/>
      </Choices>
      <Choices name="prompt_alignment" toName="video_left" choice="single" required="true">
        ...the same choices...
      </Choices>
    </View>

A project may ask several questions: each `<Choices>` (or `<Pairwise>`) named after a question
(`visual_quality`, or with a prefix/suffix such as `winner_visual_quality`; or mapped by `question_map`)
gives one vote for that question per annotation, with task id `<task_id>-<question>`. When no tag names a
question, the one answer is a vote for the task data's `question` (task id `task_id`, else `ls-<id>`),
as in a single-question project with `<Choices name="winner">`. Tags naming no question are then ignored.
Choices: left / right (positional, mapped to model_a / model_b through the task's `left`), tie, "both
bad" (stored as `both_bad`), "video broken" (stored as `broken`); a `<Pairwise>` tag's `selected` is left
or right. `completed_by` (a user id or an object with `email`/`id`) is the rater. Cancelled (skipped)
annotations are rejected. `row_number` counts votes (one per annotation and question; an annotation that
gives none counts one) in export order from 1.
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
ARENA_BATTLE_REQUIRED = ("model_a", "model_b", "winner")
DEFAULT_MAX_REJECTED_SHARE = 0.05
LABEL_STUDIO_DATA = ("model_a", "model_b", "prompt_id", "left")
WINNER_ALIASES = {
    "model_a": "model_a",
    "model_b": "model_b",
    "tie": "tie",
    "tie (bothbad)": "both_bad",  # the arena's "both are bad": a tie-like outcome kept distinct
    "both_bad": "both_bad",
    "broken": "broken",
}
CHOICE_ALIASES = {
    "left": "left",
    "right": "right",
    "tie": "tie",
    "model_a": "model_a",
    "model_b": "model_b",
    "both bad": "both_bad",
    "both_bad": "both_bad",
    "bothbad": "both_bad",
    "tie (bothbad)": "both_bad",
    "broken": "broken",
    "video broken": "broken",
    "video_broken": "broken",
}
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


def _duplicate_key(vote: Mapping[str, Any], raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Votes with a task id (the platform's own tables) are duplicates on (rater, task); votes without one
    (arena battles) on (rater, question, prompt, unordered pair, gold flag), so a swapped copy is caught."""
    if not _is_missing(raw.get("task_id")):
        return ("task", vote["rater_id"], vote["task_id"])
    x, y = sorted((vote["model_a"], vote["model_b"]))
    return ("pair", vote["rater_id"], vote["question"], vote["prompt_id"], x, y, str(vote["is_gold"]))


def _duplicate_reason(key: tuple[str, ...], first_row: int, swapped: bool) -> str:
    if key[0] == "task":
        return f"duplicate vote: rater {key[1]!r} already voted on task {key[2]!r} (row {first_row})"
    return (
        f"duplicate vote: rater {key[1]!r} already voted on {key[4]!r} vs {key[5]!r} for prompt {key[3]!r}, "
        f"question {key[2]!r} (row {first_row})" + (" with the models swapped" if swapped else "")
    )


def normalize_votes(
    records: Iterable[tuple[int, Mapping[str, Any]]], study_id: str = "imported", synthetic: bool = False
) -> ImportResult:
    """(row_number, record) pairs -> good votes and rejected rows; a rater's second vote on the same pair,
    prompt and question (either side order) is refused."""
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, ...], tuple[int, str]] = {}
    for row_number, raw in records:
        try:
            vote = normalize_vote(raw, study_id, synthetic)
            key = _duplicate_key(vote, raw)
            if key in first_seen:
                first_row, first_a = first_seen[key]
                raise RowRejected(_duplicate_reason(key, first_row, first_a != vote["model_a"]))
        except RowRejected as exc:
            rejected.append({"row_number": row_number, "reason": str(exc)})
            continue
        first_seen[key] = (row_number, vote["model_a"])
        good.append(vote)
    return ImportResult(votes_frame(good), pd.DataFrame(rejected, columns=REJECT_COLUMNS))


def check_rejected(result: ImportResult, source: str, max_share: float = DEFAULT_MAX_REJECTED_SHARE) -> None:
    """Refuse `source` when more than `max_share` of its rows were rejected (the caller lists them)."""
    total = len(result.votes) + len(result.rejected)
    if total and len(result.rejected) / total > max_share:
        raise InputError(
            f"{len(result.rejected)} of {total} rows of {source} ({len(result.rejected) / total:.1%}) were "
            f"rejected, above max_rejected_share={max_share:.0%}; fix the rows listed with their reasons, "
            "or raise max_rejected_share if dropping them is intended"
        )


def arena_records(raw: pd.DataFrame, default_question: str = "overall") -> pd.DataFrame:
    """An arena battle table -> the columns `normalize_vote` reads (see the module doc for the mapping)."""
    missing = [c for c in ARENA_BATTLE_REQUIRED if c not in raw.columns]
    if "rater_id" not in raw.columns and "judge" not in raw.columns:
        missing.append("judge (or rater_id)")
    if missing:
        raise InputError(
            f"the votes lack column(s) {missing}; an arena battle export has model_a, model_b, winner, "
            f"judge (found {list(raw.columns)})"
        )
    frame = raw.copy()
    text = frame.astype(object).where(frame.notna(), "")
    if "rater_id" not in frame.columns:
        frame["rater_id"] = text["judge"].astype(str)
    if "prompt_id" not in frame.columns:
        if "question_id" in frame.columns:
            frame["prompt_id"] = text["question_id"].astype(str)
        elif "prompt" in frame.columns:
            frame["prompt_id"] = [
                "prompt-" + hashlib.sha256(str(p).encode()).hexdigest()[:12] if str(p).strip() else ""
                for p in text["prompt"]
            ]
        elif "tstamp" in frame.columns:
            frame["prompt_id"] = [f"{r}@{t}" for r, t in zip(frame["rater_id"], text["tstamp"], strict=True)]
        else:
            frame["prompt_id"] = [f"row-{k + 1}" for k in range(len(frame))]
    if "question" not in frame.columns:
        frame["question"] = default_question
    if "left" not in frame.columns:
        frame["left"] = "model_a"  # arena battles show model_a on the left
    if "created_at" not in frame.columns and "tstamp" in frame.columns:
        stamps = pd.to_datetime(pd.to_numeric(frame["tstamp"], errors="coerce"), unit="s", utc=True)
        frame["created_at"] = [s.isoformat() if pd.notna(s) else "" for s in stamps]
    return frame


def _read_table(uri: str) -> pd.DataFrame:
    data = svd_io.read_bytes(uri)
    lower = uri.lower()
    try:
        if lower.endswith(".parquet"):
            return pd.read_parquet(_io.BytesIO(data))
        if lower.endswith(".jsonl"):
            return pd.read_json(_io.BytesIO(data), lines=True, dtype=False)
        if lower.endswith(".json"):
            records = json.loads(data)
            if not isinstance(records, list):
                raise InputError(f"{uri} must hold a JSON list of battles (the arena's battle export)")
            return pd.DataFrame(records)
        return pd.read_csv(_io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(
            f"{uri} is not a readable vote table ({exc}); export it again (CSV, JSON, JSONL, Parquet)"
        ) from exc


# --- sources -----------------------------------------------------------------------------------------
def import_arena(
    uri: str, study_id: str = "imported", synthetic: bool = False, question: str = "overall"
) -> ImportResult:
    """Arena battles (CSV, JSON, JSONL or Parquet; see the module doc) -> votes; rows checked one by one."""
    if question not in QUESTIONS:
        raise InputError(f"question {question!r} is unknown; use one of {list(QUESTIONS)}")
    frame = arena_records(_read_table(uri), question)
    rows = ((i + 1, record) for i, record in enumerate(frame.to_dict(orient="records")))
    return normalize_votes(rows, study_id, synthetic)


def import_arena_csv(uri: str, study_id: str = "imported", synthetic: bool = False) -> ImportResult:
    """Arena-convention CSV (see module doc) -> votes; a missing required column refuses the whole file."""
    return import_arena(uri, study_id, synthetic)


def _label_studio_rater(completed_by: Any) -> str | None:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("email") or completed_by.get("id")
    return None if _is_missing(completed_by) else str(completed_by)


def _label_studio_answers(result: Any) -> list[tuple[str, str]]:
    """(from_name, chosen value) of every choices / pairwise region of an annotation, in order."""
    answers = []
    for region in result if isinstance(result, list) else []:
        value = region.get("value", {}) if isinstance(region, Mapping) else {}
        if not isinstance(value, Mapping):
            continue
        if region.get("type") == "choices" and value.get("choices"):
            answers.append((str(region.get("from_name", "")), str(value["choices"][0]).strip().lower()))
        elif region.get("type") == "pairwise" and value.get("selected"):
            answers.append((str(region.get("from_name", "")), str(value["selected"]).strip().lower()))
    return answers


def question_of(from_name: str, question_map: Mapping[str, str] | None = None) -> str | None:
    """The question a `<Choices name=...>` asks: mapped, equal to a question, or a question with a prefix or
    suffix (`winner_visual_quality`, `prompt_alignment-choice`); None when it names none."""
    if question_map and from_name in question_map:
        return question_map[from_name]
    name = from_name.strip().lower().replace("-", "_")
    for question in QUESTIONS:
        if name == question or name.startswith(question + "_") or name.endswith("_" + question):
            return question
    return None


def _winner_from_choice(choice: str, left: str) -> str:
    right = "model_b" if left == "model_a" else "model_a"
    answer = CHOICE_ALIASES.get(choice)
    if answer is None:
        raise RowRejected(
            f"unknown winner choice {choice!r}; the labeling config must offer left, right, tie "
            "(and optionally 'both bad', 'video broken')"
        )
    return {"left": left, "right": right}.get(answer, answer)


def _label_studio_votes(
    task: Mapping[str, Any], annotation: Mapping[str, Any], question_map: Mapping[str, str] | None
) -> list[dict[str, Any] | RowRejected]:
    """The votes of one annotation (one per question it answers), or the reason each one is refused."""
    data = task.get("data") or {}
    missing = [k for k in LABEL_STUDIO_DATA if _is_missing(data.get(k))]
    if missing:
        raise RowRejected(f"task data lacks {missing}; import tasks with fields {list(LABEL_STUDIO_DATA)}")
    if annotation.get("was_cancelled"):
        raise RowRejected("annotation was skipped (cancelled) by the rater")
    answers = _label_studio_answers(annotation.get("result"))
    if not answers:
        raise RowRejected("annotation has no choices/pairwise result; check the labeling config (imports.py)")
    named = [(question_of(name, question_map), choice) for name, choice in answers]
    per_question: list[tuple[str | None, str]] = [(q, choice) for q, choice in named if q is not None]
    if not per_question:
        if _is_missing(data.get("question")):
            raise RowRejected(
                f"choices {[name for name, _ in answers]} name no question and the task data has no "
                f"`question`; name each <Choices> after its question {list(QUESTIONS)} or add `question`"
            )
        per_question = [(None, answers[0][1])]
    base = dict(data)
    if _is_missing(base.get("task_id")) and not _is_missing(task.get("id")):
        base["task_id"] = f"ls-{task['id']}"
    left = str(data["left"]).strip()
    if left not in ("model_a", "model_b"):
        raise RowRejected(f"left {left!r} must be 'model_a' or 'model_b'")
    out: list[dict[str, Any] | RowRejected] = []
    for question, choice in per_question:
        record = {k: base.get(k) for k in (*LABEL_STUDIO_DATA, "question", "study_id", "task_id", "is_gold")}
        if question is not None:
            record["question"] = question
            record["task_id"] = None if _is_missing(record["task_id"]) else f"{record['task_id']}-{question}"
        try:
            record["winner"] = _winner_from_choice(choice, left)
        except RowRejected as exc:
            out.append(RowRejected(f"{record['question']}: {exc}"))
            continue
        record["rater_id"] = _label_studio_rater(annotation.get("completed_by"))
        record["created_at"] = annotation.get("created_at")
        out.append(record)
    return out


def import_label_studio(
    uri: str, study_id: str = "imported", question_map: Mapping[str, str] | None = None
) -> ImportResult:
    """Label Studio JSON export (see module doc) -> votes, one per annotation and question.

    `question_map` maps `<Choices name=...>` values that do not name a question to one (e.g.
    {"q1": "visual_quality"}).
    """
    unknown = sorted(set((question_map or {}).values()) - set(QUESTIONS))
    if unknown:
        raise InputError(f"question_map names unknown question(s) {unknown}; use {list(QUESTIONS)}")
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
            try:
                votes = _label_studio_votes(task, annotation, question_map)
            except RowRejected as exc:
                votes = [exc]
            for vote in votes:
                row_number = len(rows) + len(failed) + 1
                if isinstance(vote, RowRejected):
                    failed.append({"row_number": row_number, "reason": f"task {task.get('id')}: {vote}"})
                else:
                    rows.append((row_number, vote))
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
    """A vote table from Parquet or CSV (the platform's columns, or an arena battle export), every row
    re-checked against the vote contract; JSON / JSONL arena battle exports are read too."""
    return import_arena(uri, study_id)
