"""Rating service without HTTP: study validation, one vote per task, progress, export, persistence."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.apps.rating import service
from flows.apps.rating.db import Database
from flows.apps.rating.validation import rater_names, resolve_assignment
from svd_core.errors import ConfigError, InputError, StorageError
from svd_core.evaluation.schema import QUESTIONS, VOTE_COLUMNS, WINNERS


def make_tasks(n: int = 4, study_id: str = "s1") -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"t{i}",
            "study_id": study_id,
            "question": QUESTIONS[i % 3],
            "prompt_id": f"p{i}",
            "prompt": f"a red fox number {i}",
            "model_a": "svd-v1",
            "model_b": "svd-v2",
            "sample_a_uri": f"/samples/a{i}.mp4",
            "sample_b_uri": f"/samples/b{i}.mp4",
            "left": "model_a" if i % 2 == 0 else "model_b",
            "is_gold": i == 3,
            "extra_design_key": "ignored",
        }
        for i in range(n)
    ]


@pytest.fixture()
def db(tmp_path: Path):
    with Database(f"sqlite:///{tmp_path / 'votes.db'}") as database:
        yield database


def test_vote_maps_sides_to_models_and_counts_once(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=["ann", "bob"])
    assert set(tokens) == {"ann", "bob"} and tokens["ann"] != tokens["bob"]
    ann = tokens["ann"]
    # t0 shows model_a on the left, t1 shows model_b on the left.
    assert service.record_vote(db, ann, "t0", "left")["winner"] == "model_a"
    assert service.record_vote(db, ann, "t1", "left")["winner"] == "model_b"
    assert service.record_vote(db, ann, "t2", "tie")["winner"] == "tie"
    with pytest.raises(service.DuplicateVoteError):
        service.record_vote(db, ann, "t0", "right")
    votes = service.export_votes(db, "s1")
    assert list(votes["task_id"]) == ["t0", "t1", "t2"]
    assert list(votes["winner"]) == ["model_a", "model_b", "tie"]
    state = service.next_task(db, ann)
    assert (state["done"], state["total"], state["task"]["task_id"]) == (3, 4, "t3")


def test_next_task_follows_assignment_order_and_ends(db: Database) -> None:
    assignment = {"rater_0": ["t2", "t0"], "rater_1": ["t1", "t3", "t0"]}
    tokens = service.create_study(db, "s1", make_tasks(), assignment)
    token = tokens["rater_0"]
    first = service.next_task(db, token)
    assert first["task"]["task_id"] == "t2"
    assert first["task"]["question_text"] == service.QUESTION_TEXT[QUESTIONS[2]]
    assert "model_a" not in str(first["task"])  # raters never see which model is which
    service.record_vote(db, token, "t2", "right")
    service.record_vote(db, token, "t0", "left")
    assert service.next_task(db, token) == {
        "study_id": "s1",
        "rater_id": "rater_0",
        "done": 2,
        "total": 2,
        "task": None,
    }
    with pytest.raises(service.UnknownTaskError):
        service.record_vote(db, token, "t1", "left")  # t1 is rater_1's, not rater_0's


def test_bad_tokens_and_choices_are_rejected(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=1)
    for bad in ("", "nope", "x" * 500, tokens["rater-1"] + "x"):
        with pytest.raises(service.UnknownTokenError):
            service.next_task(db, bad)
    with pytest.raises(InputError, match="choice"):
        service.record_vote(db, tokens["rater-1"], "t0", "model_a")


def test_tokens_are_random_and_stored_hashed(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=3)
    assert all(len(token) >= 22 for token in tokens.values())  # 16 bytes urlsafe-base64
    from sqlalchemy import select

    from flows.apps.rating.db import RaterRow

    stored = db.run(lambda s: list(s.scalars(select(RaterRow.token_hash))))
    assert sorted(stored) == sorted(service.hash_token(t) for t in tokens.values())
    assert not set(stored) & set(tokens.values())


def test_study_validation_names_the_problem(db: Database) -> None:
    tasks = make_tasks()
    with pytest.raises(InputError, match="lacks keys"):
        service.create_study(db, "s1", [{k: v for k, v in tasks[0].items() if k != "left"}], raters=1)
    with pytest.raises(InputError, match="question"):
        service.create_study(db, "s1", [{**tasks[0], "question": "beauty"}], raters=1)
    with pytest.raises(InputError, match="appears twice"):
        service.create_study(db, "s1", [tasks[0], tasks[0]], raters=1)
    with pytest.raises(InputError, match="belongs to study"):
        service.create_study(db, "other", tasks, raters=1)
    with pytest.raises(InputError, match="unknown task ids"):
        service.create_study(db, "s1", tasks, {"r": ["t0", "t9"]})
    with pytest.raises(InputError, match="rater slots"):
        service.create_study(db, "s1", tasks, {"r0": ["t0"], "r1": ["t1"]}, raters=3)
    assert service.list_studies(db) == []  # nothing half-written
    service.create_study(db, "s1", tasks, raters=1)
    with pytest.raises(service.StudyExistsError):
        service.create_study(db, "s1", tasks, raters=1)


def test_rater_names_and_slot_renaming() -> None:
    assert rater_names(3) == ["rater-1", "rater-2", "rater-3"]
    assert rater_names("12")[-1] == "rater-12"
    assert rater_names("ann, bob") == ["ann", "bob"]
    with pytest.raises(InputError):
        rater_names("ann,ann")
    tasks = make_tasks()
    plan = resolve_assignment(tasks, {"rater_0": ["t0"], "rater_1": ["t1"]}, "ann,bob")
    assert plan == {"ann": ["t0"], "bob": ["t1"]}
    assert resolve_assignment(tasks, None, 2) == {
        "rater-1": ["t0", "t1", "t2", "t3"],
        "rater-2": ["t0", "t1", "t2", "t3"],
    }


def test_progress_counts_questions_raters_and_gold(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=["ann", "bob"])
    service.record_vote(db, tokens["ann"], "t3", "right")  # t3 is gold with model_b left: right = model_a
    service.record_vote(db, tokens["bob"], "t3", "left")  # wrong answer on the gold pair
    service.record_vote(db, tokens["bob"], "t0", "tie")
    report = service.progress(db, "s1")
    assert (report["tasks"], report["votes"], report["assigned"]) == (4, 3, 8)
    assert report["per_question"]["prompt_alignment"] == {"assigned": 4, "votes": 3}  # t0, t3 x2 raters
    assert report["per_question"]["visual_quality"] == {"assigned": 2, "votes": 0}
    by_rater = {r["rater_id"]: r for r in report["raters"]}
    assert by_rater["ann"]["gold_accuracy"] == 1.0 and by_rater["ann"]["done"] == 1
    assert by_rater["bob"]["gold_accuracy"] == 0.0 and by_rater["bob"]["done"] == 2
    with pytest.raises(InputError, match="not in this database"):
        service.progress(db, "missing")


def test_admin_attention_status_is_the_analysis_exclusion_rule(db: Database) -> None:
    from svd_core.evaluation.rater_quality import rater_quality

    tasks = [{**t, "is_gold": True} for t in make_tasks(6)]
    tokens = service.create_study(db, "s1", tasks, raters=["ann", "bob", "cy"])
    for k, task in enumerate(tasks[:4]):
        right = "left" if task["left"] == "model_a" else "right"
        wrong = "right" if right == "left" else "left"
        service.record_vote(db, tokens["ann"], task["task_id"], right)
        service.record_vote(db, tokens["bob"], task["task_id"], "tie" if k % 2 else wrong)
    service.record_vote(db, tokens["cy"], tasks[0]["task_id"], "tie")
    by_rater = {r["rater_id"]: r for r in service.progress(db, "s1")["raters"]}
    assert {r: by_rater[r]["gold_status"] for r in by_rater} == {
        "ann": "passed", "bob": "failed", "cy": "unchecked",
    }  # fmt: skip
    assert by_rater["bob"]["gold_p_value"] == pytest.approx(0.1**4)
    analysis = rater_quality(service.export_votes(db, "s1")).set_index("rater_id")["status"]
    assert analysis.to_dict() == {r: by_rater[r]["gold_status"] for r in by_rater}


def test_export_matches_vote_schema(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=1)
    assert list(service.export_votes(db, "s1").columns) == VOTE_COLUMNS  # empty study, same columns
    for task_id, choice in (("t0", "left"), ("t3", "right")):
        service.record_vote(db, tokens["rater-1"], task_id, choice)
    votes = service.export_votes(db, "s1")
    assert list(votes.columns) == VOTE_COLUMNS
    assert votes["winner"].isin(WINNERS).all() and votes["question"].isin(QUESTIONS).all()
    assert votes["is_gold"].dtype == bool and list(votes["is_gold"]) == [False, True]
    assert not votes["synthetic"].any()
    stamps = pd.to_datetime(votes["created_at"], utc=True, format="ISO8601")
    assert stamps.notna().all() and votes["created_at"].str.endswith("Z").all()


def test_votes_survive_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'votes.db'}"  # the parent folder is created
    with Database(url) as first:
        tokens = service.create_study(first, "s1", make_tasks(), raters=1)
        service.record_vote(first, tokens["rater-1"], "t0", "left")
    with Database(url) as second:
        with pytest.raises(service.DuplicateVoteError):
            service.record_vote(second, tokens["rater-1"], "t0", "right")
        assert len(service.export_votes(second, "s1")) == 1
    assert service.next_task(url, tokens["rater-1"])["done"] == 1  # a URL works as well


def test_concurrent_duplicate_votes_count_once(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=1)
    outcomes: list[str] = []

    def vote() -> None:
        try:
            service.record_vote(db, tokens["rater-1"], "t0", "left")
            outcomes.append("ok")
        except service.DuplicateVoteError:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=vote) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 5 + ["ok"]
    assert len(service.export_votes(db, "s1")) == 1


def test_async_driver_runs_the_same_service(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite", reason="aiosqlite is needed to exercise the async-driver bridge")
    with Database(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}") as db:
        tokens = service.create_study(db, "s1", make_tasks(), raters=1)
        service.record_vote(db, tokens["rater-1"], "t1", "right")
        with pytest.raises(service.DuplicateVoteError):
            service.record_vote(db, tokens["rater-1"], "t1", "right")
        assert list(service.export_votes(db, "s1")["winner"]) == ["model_a"]


def test_unusable_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a URL"):
        Database("not a url")
    with pytest.raises(ConfigError, match="driver not installed"):
        Database("postgresql+nosuchdriver://u@127.0.0.1/db")
    with pytest.raises(StorageError, match="cannot create the folder"):
        Database("sqlite:////proc/no-such-dir/votes.db")


def test_unreachable_server_is_a_storage_error() -> None:
    pytest.importorskip("asyncpg", reason="asyncpg is needed to try a PostgreSQL URL")
    with pytest.raises(StorageError, match="check that the server runs"):
        Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")  # port 1: nothing listens
