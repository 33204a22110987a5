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
from tests.flows.apps.rating.watching import backdate_issue, open_and_watch, vote


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
    assert vote(db, ann, "t0", "left")["winner"] == "model_a"
    assert vote(db, ann, "t1", "left")["winner"] == "model_b"
    assert vote(db, ann, "t2", "tie")["winner"] == "tie"
    with pytest.raises(service.DuplicateVoteError):
        vote(db, ann, "t0", "right")
    votes = service.export_votes(db, "s1")
    assert list(votes["task_id"]) == ["t0", "t1", "t2"]
    assert list(votes["winner"]) == ["model_a", "model_b", "tie"]
    state = service.next_task(db, ann)
    assert (state["done"], state["total"], state["task"]["task_id"]) == (3, 4, "t3")


def test_next_task_follows_assignment_order_and_ends(db: Database) -> None:
    assignment = {"rater_0": ["t2", "t0"], "rater_1": ["t1", "t3", "t0"]}
    tokens = service.create_study(db, "s1", make_tasks(), assignment)
    token = tokens["rater_0"]
    assert service.next_task(db, token)["task"] is None  # instructions first
    first = service.acknowledge_instructions(db, token)
    assert first["task"]["task_id"] == "t2"
    assert first["task"]["question_text"] == service.QUESTION_TEXT[QUESTIONS[2]]
    assert "model_a" not in str(first["task"])  # raters never see which model is which
    vote(db, token, "t2", "right")
    vote(db, token, "t0", "left")
    assert service.next_task(db, token) == {
        "study_id": "s1",
        "rater_id": "rater_0",
        "done": 2,
        "total": 2,
        "acknowledged": True,
        "instructions": None,
        "min_watch_seconds": service.DEFAULT_MIN_WATCH_SECONDS,
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
    vote(db, tokens["ann"], "t3", "right")  # t3 is gold with model_b left: right = model_a
    vote(db, tokens["bob"], "t3", "left")  # wrong answer on the gold pair
    vote(db, tokens["bob"], "t0", "tie")
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
        vote(db, tokens["ann"], task["task_id"], right)
        vote(db, tokens["bob"], task["task_id"], "tie" if k % 2 else wrong)
    vote(db, tokens["cy"], tasks[0]["task_id"], "tie")
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
        vote(db, tokens["rater-1"], task_id, choice)
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
        vote(first, tokens["rater-1"], "t0", "left")
    with Database(url) as second:
        with pytest.raises(service.DuplicateVoteError):
            vote(second, tokens["rater-1"], "t0", "right")
        assert len(service.export_votes(second, "s1")) == 1
    assert service.next_task(url, tokens["rater-1"])["done"] == 1  # a URL works as well


def test_concurrent_duplicate_votes_count_once(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=1)
    open_and_watch(db, tokens["rater-1"], "t0")
    outcomes: list[str] = []

    def vote_once() -> None:
        try:
            service.record_vote(db, tokens["rater-1"], "t0", "left")
            outcomes.append("ok")
        except service.DuplicateVoteError:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=vote_once) for _ in range(6)]
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
        vote(db, tokens["rater-1"], "t1", "right")
        with pytest.raises(service.DuplicateVoteError):
            vote(db, tokens["rater-1"], "t1", "right")
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


def test_a_vote_counts_only_after_instructions_and_the_minimum_watch(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=["ann"], min_watch_seconds=60)
    ann = tokens["ann"]
    with pytest.raises(service.NotReadyError, match="instructions"):
        service.record_vote(db, ann, "t0", "left")
    assert service.next_task(db, ann)["task"] is None  # nothing is handed out before the instructions
    state = service.acknowledge_instructions(db, ann)
    assert state["acknowledged"] and state["task"]["task_id"] == "t0"
    assert state["task"]["watched"] == {"left": False, "right": False}
    assert 59 < state["task"]["wait_seconds"] <= 60
    with pytest.raises(service.NotReadyError, match="not handed out yet"):
        service.record_vote(db, ann, "t1", "left")  # t1 was never shown
    with pytest.raises(service.NotReadyError, match="left and right not played through"):
        service.record_vote(db, ann, "t0", "left")
    assert service.report_watched(db, ann, "t0", "left")["watched"] == {"left": True, "right": False}
    with pytest.raises(service.NotReadyError, match="right not played through"):
        service.record_vote(db, ann, "t0", "both_bad")
    service.report_watched(db, ann, "t0", "right")
    with pytest.raises(service.NotReadyError, match="at least 60 s"):
        service.record_vote(db, ann, "t0", "left")  # played through, but issued a moment ago
    backdate_issue(db, ann, "t0", 61)
    assert service.next_task(db, ann)["task"]["wait_seconds"] == 0
    voted = service.record_vote(db, ann, "t0", "left")
    assert voted["winner"] == "model_a" and 61 <= voted["seconds_on_task"] < 70
    # A video that never plays can never end: "broken" needs only the task to be shown.
    assert service.next_task(db, ann)["task"]["task_id"] == "t1"
    assert service.record_vote(db, ann, "t1", "broken")["winner"] == "broken"
    with pytest.raises(InputError, match="side 'top'"):
        service.report_watched(db, ann, "t2", "top")
    timed = service.export_votes(db, "s1", with_timing=True)
    assert (
        list(timed.columns) == [*VOTE_COLUMNS, "seconds_on_task"] and timed["seconds_on_task"].iloc[0] >= 61
    )


def test_both_bad_and_broken_are_distinct_outcomes(db: Database) -> None:
    tasks = make_tasks()  # t3 is gold
    tokens = service.create_study(db, "s1", tasks, raters=["ann", "bob"])
    vote(db, tokens["ann"], "t0", "both_bad")
    vote(db, tokens["ann"], "t3", "broken")  # a broken gold video is no failed attention check
    vote(db, tokens["bob"], "t3", "broken")
    vote(db, tokens["bob"], "t1", "tie")
    votes = service.export_votes(db, "s1")
    assert votes[["rater_id", "task_id", "winner"]].values.tolist() == [
        ["ann", "t0", "both_bad"], ["ann", "t3", "broken"], ["bob", "t3", "broken"], ["bob", "t1", "tie"],
    ]  # fmt: skip
    assert votes["winner"].isin(WINNERS).all()
    report = service.progress(db, "s1")
    by_rater = {r["rater_id"]: r for r in report["raters"]}
    assert (by_rater["ann"]["both_bad"], by_rater["ann"]["broken"], by_rater["ann"]["gold_done"]) == (1, 1, 0)
    assert by_rater["ann"]["median_seconds_on_task"] >= 3600 and by_rater["ann"]["acknowledged"]
    assert report["broken_tasks"] == [{"task_id": "t3", "reports": 2}]
    assert by_rater["ann"]["open"] == 2 and by_rater["bob"]["open"] == 2


def test_reissued_link_replaces_the_old_one_and_revoked_links_stop_working(db: Database) -> None:
    tokens = service.create_study(db, "s1", make_tasks(), raters=["ann", "bob"])
    old = tokens["ann"]
    vote(db, old, "t0", "left")
    new = service.reissue_link(db, "s1", "ann")
    assert new != old and len(new) >= 22
    with pytest.raises(service.UnknownTokenError):
        service.next_task(db, old)
    state = service.next_task(db, new)
    assert (state["rater_id"], state["done"], state["acknowledged"]) == ("ann", 1, True)  # progress kept
    vote(db, new, "t1", "right")
    service.revoke_link(db, "s1", "ann")
    for token in (old, new):
        with pytest.raises(service.UnknownTokenError):
            service.next_task(db, token)
    by_rater = {r["rater_id"]: r for r in service.progress(db, "s1")["raters"]}
    assert by_rater["ann"]["revoked"] and not by_rater["bob"]["revoked"] and by_rater["ann"]["done"] == 2
    again = service.reissue_link(db, "s1", "ann")
    assert service.next_task(db, again)["done"] == 2
    assert not {r["rater_id"]: r for r in service.progress(db, "s1")["raters"]}["ann"]["revoked"]
    with pytest.raises(
        service.UnknownRaterError, match=r"rater 'zed' is not in study 's1'; its raters: \['ann', 'bob'\]"
    ):
        service.revoke_link(db, "s1", "zed")
    assert len(service.export_votes(db, "s1")) == 2


def test_a_dropouts_open_tasks_go_to_the_least_loaded_raters_who_lack_them(db: Database) -> None:
    assignment = {"ann": ["t0", "t1", "t2", "t3"], "bob": ["t0"], "cy": ["t1"], "dee": ["t2"]}
    tokens = service.create_study(db, "s1", make_tasks(), assignment)
    vote(db, tokens["ann"], "t0", "left")  # ann answered one pair, then dropped out
    service.acknowledge_instructions(db, tokens["ann"])  # t1 was on her screen when she left
    service.revoke_link(db, "s1", "dee")  # a revoked rater takes nothing
    moved = service.reassign_open_tasks(db, "s1", "ann")
    # t1: cy has it -> bob; t2: cy (1 open) before bob (2 open); t3: bob and cy tie at 2 open, 2 assigned -> bob.
    assert moved == {"moved": {"bob": ["t1", "t3"], "cy": ["t2"]}, "unplaced": []}
    assert service.next_task(db, tokens["ann"])["total"] == 1  # only her answered pair stays hers
    bob = tokens["bob"]
    service.acknowledge_instructions(db, bob)
    queue = []
    for _ in range(3):
        task_id = service.next_task(db, bob)["task"]["task_id"]
        queue.append(task_id)
        vote(db, bob, task_id, "tie")
    assert queue == ["t0", "t1", "t3"]  # moved tasks join the end of bob's queue, in ann's order
    report = {r["rater_id"]: r for r in service.progress(db, "s1")["raters"]}
    assert {r: (report[r]["done"], report[r]["total"]) for r in report} == {
        "ann": (1, 1), "bob": (3, 3), "cy": (0, 2), "dee": (0, 1),
    }  # fmt: skip
    # Named targets: a task every one of them already has stays where it is.
    tokens2 = service.create_study(db, "s2", make_tasks(study_id="s2"), {"a": ["t0", "t1"], "b": ["t0"]})
    assert tokens2 and service.reassign_open_tasks(db, "s2", "a", ["b"]) == {
        "moved": {"b": ["t1"]}, "unplaced": ["t0"],
    }  # fmt: skip
    with pytest.raises(InputError, match="names the dropout"):
        service.reassign_open_tasks(db, "s2", "a", ["a"])
    with pytest.raises(service.UnknownRaterError):
        service.reassign_open_tasks(db, "s2", "a", ["nobody"])


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Database(url) as first:
        tokens = service.create_study(first, "s1", make_tasks(), raters=1)
        vote(first, tokens["rater-1"], "t0", "left")

        def downgrade(session: Any) -> None:  # the tables as they were before these columns existed
            from sqlalchemy import text

            for table, column in (("rating_vote", "seconds_on_task"), ("rating_rater", "acknowledged_at"),
                                  ("rating_assignment", "issued_at"), ("rating_study", "min_watch_seconds")):  # fmt: skip
                session.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))

        first.run(downgrade)
    with Database(url) as reopened:
        assert service.export_votes(reopened, "s1")["winner"].tolist() == ["model_a"]
        state = service.next_task(reopened, tokens["rater-1"])
        assert (
            state["min_watch_seconds"] == 0.0 and not state["acknowledged"]
        )  # server default, not acknowledged
        vote(reopened, tokens["rater-1"], "t1", "right")
        assert service.export_votes(reopened, "s1", with_timing=True)["seconds_on_task"].notna().tolist() == [
            False, True,
        ]  # fmt: skip
