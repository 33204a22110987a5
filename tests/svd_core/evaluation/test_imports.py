"""Vote imports: every bad row is refused with its reason, good rows are kept, files round-trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from svd_core.errors import InputError
from svd_core.evaluation.imports import (
    import_arena_csv,
    import_label_studio,
    load_votes,
    write_votes,
)
from svd_core.evaluation.schema import VOTE_COLUMNS

HEADER = "model_a,model_b,winner,question,rater_id,prompt_id,left"
GOOD = "m1,m2,model_a,visual_quality,ann,p1,model_b"


def write_csv(tmp_path, lines: list[str], header: str = HEADER) -> str:
    path = tmp_path / "votes.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def test_good_rows_become_votes_in_the_contract(tmp_path):
    lines = [GOOD, "m2,m1,tie (bothbad),prompt_alignment,bob,p1,model_a", "m1,m3,TIE,overall,ann,p2,model_a"]
    result = import_arena_csv(write_csv(tmp_path, lines), study_id="s1")
    assert list(result.votes.columns) == VOTE_COLUMNS and result.rejected.empty
    assert list(result.votes["winner"]) == ["model_a", "tie", "tie"]
    assert (result.votes["study_id"] == "s1").all()
    assert result.votes["task_id"].str.startswith("s1-").all() and result.votes["task_id"].nunique() == 3
    assert result.votes["is_gold"].dtype == bool and not result.votes["synthetic"].any()
    assert result.summary() == "3 vote(s) imported, 0 row(s) rejected"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("m1,m2,model_c,visual_quality,ann,p1,model_a", "unknown winner 'model_c'"),
        ("m1,m1,model_a,visual_quality,ann,p1,model_a", "same model 'm1' on both sides"),
        ("m1,m2,model_a,motion,ann,p1,model_a", "unknown question 'motion'"),
        ("m1,m2,model_a,visual_quality,,p1,model_a", "missing value in column 'rater_id'"),
        ("m1,m2,model_a,visual_quality,ann,p1,right", "left 'right' must be"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason(tmp_path, line, reason):
    result = import_arena_csv(write_csv(tmp_path, [GOOD.replace("ann", "zed"), line, GOOD]))
    assert len(result.votes) == 2
    assert result.rejected["row_number"].tolist() == [2]
    assert reason in result.rejected["reason"].iloc[0]


def test_duplicate_vote_of_a_rater_on_a_task_is_rejected(tmp_path):
    lines = [
        GOOD,
        "m1,m2,model_b,visual_quality,ann,p1,model_b",
        "m1,m2,model_b,visual_quality,bob,p1,model_b",
    ]
    result = import_arena_csv(write_csv(tmp_path, lines))
    assert result.rejected.to_dict(orient="records") == [
        {"row_number": 2, "reason": result.rejected["reason"].iloc[0]}
    ]
    assert (
        "duplicate vote: rater 'ann'" in result.rejected["reason"].iloc[0]
        and "(row 1)" in result.rejected["reason"].iloc[0]
    )
    assert list(result.votes["rater_id"]) == ["ann", "bob"]


def test_bad_flags_and_timestamps_are_rejected(tmp_path):
    header = HEADER + ",is_gold,created_at"
    lines = [
        GOOD + ",maybe,",
        GOOD.replace("ann", "bob") + ",true,yesterday",
        GOOD.replace("ann", "cy") + ",1,2026-01-02T03:04:05",
    ]
    result = import_arena_csv(write_csv(tmp_path, lines, header))
    reasons = result.rejected["reason"].tolist()
    assert "is_gold 'maybe' is not a boolean" in reasons[0] and "created_at 'yesterday'" in reasons[1]
    assert result.votes["is_gold"].tolist() == [True]
    assert result.votes["created_at"].iloc[0] == "2026-01-02T03:04:05+00:00"


def test_a_missing_column_refuses_the_file(tmp_path):
    path = write_csv(tmp_path, ["m1,m2,model_a,visual_quality,ann,p1"], header=HEADER.rsplit(",", 1)[0])
    with pytest.raises(InputError, match=r"lacks column\(s\) \['left'\]"):
        import_arena_csv(path)


def test_votes_round_trip_through_parquet_and_csv(tmp_path):
    result = import_arena_csv(write_csv(tmp_path, [GOOD, GOOD.replace("ann", "bob")]))
    for name in ("votes.parquet", "out.csv"):
        write_votes(result.votes, str(tmp_path / name))
        again = load_votes(str(tmp_path / name))
        assert again.rejected.empty
        pd.testing.assert_frame_equal(again.votes, result.votes)


def label_studio_task(ls_id, left, annotations, **data):
    fields = {"model_a": "m1", "model_b": "m2", "prompt_id": "p1", "question": "overall", "left": left}
    return {"id": ls_id, "data": {**fields, **data}, "annotations": annotations}


def choice(value, rater=1, **extra):
    result = [{"type": "choices", "from_name": "winner", "value": {"choices": [value]}}]
    return {"completed_by": rater, "result": result, "created_at": "2026-03-01T10:00:00Z", **extra}


def test_label_studio_export_maps_positions_through_left(tmp_path):
    tasks = [
        label_studio_task(1, "model_b", [choice("Left", 1), choice("right", {"id": 2, "email": "b@x.org"})]),
        label_studio_task(
            2,
            "model_a",
            [
                {"completed_by": 3, "result": [{"type": "pairwise", "value": {"selected": "right"}}]},
                choice("tie", 1),
            ],
            task_id="given-id",
            is_gold=True,
        ),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    result = import_label_studio(str(path), study_id="ls")
    assert result.rejected.empty
    votes = result.votes
    assert votes["winner"].tolist() == ["model_b", "model_a", "model_b", "tie"]
    assert votes["rater_id"].tolist() == ["1", "b@x.org", "3", "1"]
    assert votes["task_id"].tolist() == ["ls-1", "ls-1", "given-id", "given-id"]
    assert votes["is_gold"].tolist() == [False, False, True, True]


def test_label_studio_bad_annotations_are_rejected(tmp_path):
    tasks = [
        label_studio_task(1, "model_a", [choice("left", 1, was_cancelled=True), choice("maybe", 2)]),
        label_studio_task(2, "model_a", [{"completed_by": 3, "result": []}]),
        {"id": 3, "data": {"model_a": "m1"}, "annotations": [choice("left", 4)]},
        label_studio_task(4, "model_a", [choice("left", 5), choice("right", 5)]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    result = import_label_studio(str(path))
    reasons = dict(zip(result.rejected["row_number"], result.rejected["reason"], strict=True))
    assert sorted(reasons) == [1, 2, 3, 4, 6]
    assert "skipped" in reasons[1] and "unknown winner choice 'maybe'" in reasons[2]
    assert "no choices/pairwise result" in reasons[3] and "task data lacks" in reasons[4]
    assert "duplicate vote" in reasons[6]
    assert len(result.votes) == 1


def test_label_studio_non_export_is_refused(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"tasks": []}))
    with pytest.raises(InputError, match="list of tasks"):
        import_label_studio(str(path))
