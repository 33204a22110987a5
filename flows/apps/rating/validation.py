"""Checks on a study as the design hands it over: task dicts, the rater assignment and the rater names.

Everything is validated before anything is written, so a bad tasks file leaves the database untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from svd_core.errors import InputError
from svd_core.evaluation.schema import QUESTIONS

REQUIRED_TASK_KEYS = (
    "task_id",
    "question",
    "prompt_id",
    "prompt",
    "model_a",
    "model_b",
    "sample_a_uri",
    "sample_b_uri",
    "left",
)
SIDES = ("model_a", "model_b")


def validate_tasks(study_id: str, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the tasks as clean dicts (required keys as str, is_gold as bool, optional image_uri).

    Extra keys (the design's bookkeeping) are ignored.
    """
    if not study_id or not isinstance(study_id, str):
        raise InputError(f"study_id {study_id!r} must be a non-empty string; pass --study NAME")
    if not tasks:
        raise InputError(f"study {study_id!r} has no tasks; the tasks file must list at least one task")
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        clean.append(_validate_task(study_id, index, task))
        if clean[-1]["task_id"] in seen:
            raise InputError(
                f"task #{index}: task_id {clean[-1]['task_id']!r} appears twice; ids must be unique"
            )
        seen.add(clean[-1]["task_id"])
    return clean


def _validate_task(study_id: str, index: int, task: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(task, Mapping):
        raise InputError(
            f"task #{index} is a {type(task).__name__}, not an object with keys {REQUIRED_TASK_KEYS}"
        )
    missing = [key for key in REQUIRED_TASK_KEYS if key not in task]
    if missing:
        raise InputError(f"task #{index} ({task.get('task_id', '?')}) lacks keys {missing}; add them")
    out = {key: task[key] for key in REQUIRED_TASK_KEYS}
    for key, value in out.items():
        if not isinstance(value, str) or (key != "prompt" and not value):
            raise InputError(f"task {task['task_id']!r}: {key} must be a non-empty string, got {value!r}")
    if task.get("study_id", study_id) != study_id:
        raise InputError(
            f"task {out['task_id']!r} belongs to study {task['study_id']!r}, not {study_id!r}; "
            "create one study per tasks file"
        )
    if out["question"] not in QUESTIONS:
        raise InputError(f"task {out['task_id']!r}: question {out['question']!r} is not one of {QUESTIONS}")
    if out["left"] not in SIDES:
        raise InputError(f"task {out['task_id']!r}: left {out['left']!r} must be one of {SIDES}")
    image_uri = task.get("image_uri")
    if image_uri is not None and (not isinstance(image_uri, str) or not image_uri):
        raise InputError(
            f"task {out['task_id']!r}: image_uri must be a URI string or null, got {image_uri!r}"
        )
    out["image_uri"] = image_uri  # image-to-video: the conditioning frame, shown above the pair
    is_gold = task.get("is_gold", False)
    if not isinstance(is_gold, bool):
        raise InputError(f"task {out['task_id']!r}: is_gold must be true or false, got {is_gold!r}")
    out["is_gold"] = is_gold
    return out


def rater_names(spec: int | str | Sequence[str]) -> list[str]:
    """`3` or "3" -> rater-1..rater-3; "ann,bob" or ["ann", "bob"] -> those names (unique, non-empty)."""
    if isinstance(spec, str):
        spec = int(spec) if spec.strip().isdigit() else [name.strip() for name in spec.split(",")]
    if isinstance(spec, int):
        if spec < 1:
            raise InputError(f"--raters {spec}: need at least one rater")
        return [f"rater-{i:0{len(str(spec))}d}" for i in range(1, spec + 1)]
    names = list(spec)
    if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise InputError(f"--raters {names!r}: give a count (e.g. 5) or unique comma-separated names")
    return names


def resolve_assignment(
    tasks: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, Sequence[str]] | None,
    raters: int | str | Sequence[str] | None,
) -> dict[str, list[str]]:
    """Return {rater name: [task_id, ...] in showing order}.

    Without an assignment every rater gets every task in file order. With one, `raters` may be left out
    (the assignment's rater ids are used), name the same ids, or give as many new names, which take the
    design's rater slots in order (so a design's `rater_0..k` become real people's names).
    """
    task_ids = [task["task_id"] for task in tasks]
    if assignment is None:
        if raters is None:
            raise InputError("no assignment in the study and no raters given; pass --raters N or names")
        return {name: list(task_ids) for name in rater_names(raters)}
    slots = list(assignment)
    if not slots:
        raise InputError("the assignment is empty; it must map each rater id to a list of task ids")
    names = slots if raters is None else rater_names(raters)
    if set(names) != set(slots) and len(names) != len(slots):
        raise InputError(
            f"{len(names)} raters given but the assignment has {len(slots)} rater slots {slots[:5]}...; "
            f"pass --raters {len(slots)} or {len(slots)} names"
        )
    mapping = (
        {slot: slot for slot in slots} if set(names) == set(slots) else dict(zip(slots, names, strict=True))
    )
    known = set(task_ids)
    out: dict[str, list[str]] = {}
    for slot, ids in assignment.items():
        ids = list(ids)
        unknown = [task_id for task_id in ids if task_id not in known]
        if unknown:
            raise InputError(
                f"assignment of {slot!r} names unknown task ids {unknown[:5]}; fix the study file"
            )
        if len(set(ids)) != len(ids):
            raise InputError(f"assignment of {slot!r} lists a task twice; each rater sees a task once")
        out[mapping[slot]] = ids
    return out
