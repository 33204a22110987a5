"""Vote imports: every bad row is refused with its reason, good rows are kept, files round-trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from svd_core.errors import InputError
from svd_core.evaluation.imports import (
    check_rejected,
    import_arena,
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
    assert list(result.votes["winner"]) == ["model_a", "both_bad", "tie"]  # both bad: its own outcome
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
    path = write_csv(
        tmp_path, ["m1,model_a,visual_quality,ann,p1"], header="model_a,winner,question,rater_id,prompt_id"
    )
    with pytest.raises(InputError, match=r"lack column\(s\) \['model_b'\]"):
        import_arena_csv(path)
    no_rater = write_csv(tmp_path, ["m1,m2,model_a"], header="model_a,model_b,winner")
    with pytest.raises(InputError, match="judge"):
        import_arena_csv(no_rater)


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


# A Label Studio project asking two questions per pair, exported with "Export -> JSON" (the full format:
# tasks with their data, annotations with `result` regions, ids and bookkeeping fields).
LS_CONFIG = """<View>
  <Header value="$prompt"/>
  <Video name="video_left" value="$video_left"/>
  <Video name="video_right" value="$video_right"/>
  <Choices name="prompt_alignment" toName="video_left" choice="single" required="true">
    <Choice value="Left"/><Choice value="Right"/><Choice value="Tie"/>
    <Choice value="Both bad"/><Choice value="Video broken"/>
  </Choices>
  <Choices name="visual_quality" toName="video_left" choice="single" required="true">
    <Choice value="Left"/><Choice value="Right"/><Choice value="Tie"/>
    <Choice value="Both bad"/><Choice value="Video broken"/>
  </Choices>
  <TextArea name="comment" toName="video_left"/>
</View>"""


def ls_region(from_name, value, region_id):
    return {"value": {"choices": [value]}, "id": region_id, "from_name": from_name, "to_name": "video_left",
            "type": "choices", "origin": "manual"}  # fmt: skip


def ls_annotation(annotation_id, task_id, user, regions, cancelled=False):
    return {
        "id": annotation_id, "completed_by": user, "result": regions, "was_cancelled": cancelled,
        "ground_truth": False, "created_at": "2026-03-02T09:15:27.412905Z",
        "updated_at": "2026-03-02T09:15:27.412925Z", "draft_created_at": None, "lead_time": 21.7,
        "prediction": {}, "result_count": 0, "unique_id": f"u-{annotation_id}", "import_id": None,
        "last_action": None, "task": task_id, "project": 7, "updated_by": user, "parent_prediction": None,
        "parent_annotation": None, "last_created_by": None,
    }  # fmt: skip


def ls_task(ls_id, left, annotations, **data):
    return {
        "id": ls_id, "annotations": annotations, "file_upload": "tasks.json", "drafts": [],
        "predictions": [],
        "data": {"prompt": "a red panda climbing a tree", "video_left": f"s3://b/{ls_id}-l.mp4",
                 "video_right": f"s3://b/{ls_id}-r.mp4", "model_a": "svd/1", "model_b": "svd/2",
                 "prompt_id": f"p{ls_id}", "left": left, **data},
        "meta": {}, "created_at": "2026-03-01T08:00:00.000000Z", "updated_at": "2026-03-02T09:15:27Z",
        "inner_id": ls_id, "total_annotations": len(annotations), "cancelled_annotations": 0,
        "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
        "last_comment_updated_at": None, "project": 7, "updated_by": 1, "comment_authors": [],
    }  # fmt: skip


def test_label_studio_project_with_several_questions_gives_one_vote_per_question(tmp_path):
    from xml.etree import ElementTree

    from svd_core.evaluation.imports import question_of

    tags = ElementTree.fromstring(LS_CONFIG).iter("Choices")
    assert [question_of(tag.get("name", "")) for tag in tags] == ["prompt_alignment", "visual_quality"]
    comment = {"value": {"text": ["left one stutters"]}, "id": "c1", "from_name": "comment",
               "to_name": "video_left", "type": "textarea", "origin": "manual"}  # fmt: skip
    tasks = [
        ls_task(41, "model_b", [
            ls_annotation(1, 41, 1, [ls_region("prompt_alignment", "Left", "a"),
                                     ls_region("visual_quality", "Right", "b"), comment]),
            ls_annotation(2, 41, {"id": 2, "email": "bo@x.org"},
                          [ls_region("visual_quality", "Both bad", "c"),
                           ls_region("prompt_alignment", "Video broken", "d")]),
        ]),
        ls_task(42, "model_a", [
            ls_annotation(3, 42, 1, [ls_region("prompt_alignment", "Tie", "e"),
                                     ls_region("visual_quality", "Sideways", "f")]),
            ls_annotation(4, 42, 3, [ls_region("prompt_alignment", "Left", "g")], cancelled=True),
        ], task_id="given", is_gold=True),
    ]  # fmt: skip
    path = tmp_path / "project-7-at-2026-03-02-09-20.json"
    path.write_text(json.dumps(tasks))
    result = import_label_studio(str(path), study_id="ls")
    votes = result.votes
    assert votes[["task_id", "question", "rater_id", "winner"]].values.tolist() == [
        ["ls-41-prompt_alignment", "prompt_alignment", "1", "model_b"],  # model_b was shown on the left
        ["ls-41-visual_quality", "visual_quality", "1", "model_a"],
        ["ls-41-visual_quality", "visual_quality", "bo@x.org", "both_bad"],
        ["ls-41-prompt_alignment", "prompt_alignment", "bo@x.org", "broken"],
        ["given-prompt_alignment", "prompt_alignment", "1", "tie"],
    ]
    assert votes["is_gold"].tolist() == [False] * 4 + [True] and (votes["study_id"] == "ls").all()
    assert votes["prompt_id"].tolist()[:2] == ["p41", "p41"]
    assert votes["created_at"].iloc[0].startswith("2026-03-02T09:15:27")
    reasons = dict(zip(result.rejected["row_number"], result.rejected["reason"], strict=True))
    assert sorted(reasons) == [6, 7]  # the one bad answer of annotation 3, then the skipped annotation
    assert "visual_quality: unknown winner choice 'sideways'" in reasons[6] and "skipped" in reasons[7]
    # Each question's votes analyse on their own; the broken report is left out and listed.
    from svd_core.evaluation.analyze import split_outcomes

    rated, broken = split_outcomes(votes)
    assert broken["task_id"].tolist() == ["ls-41-prompt_alignment"]
    assert rated["winner"].tolist() == ["model_b", "model_a", "tie", "tie"]


def test_label_studio_choices_that_name_no_question(tmp_path):
    regions = [ls_region("q1", "Left", "a"), ls_region("q2", "Right", "b")]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([ls_task(5, "model_a", [ls_annotation(1, 5, 9, regions)])]))
    refused = import_label_studio(str(path))
    assert refused.votes.empty and "name no question" in refused.rejected["reason"].iloc[0]
    mapped = import_label_studio(str(path), question_map={"q1": "overall", "q2": "visual_quality"})
    assert mapped.votes[["question", "winner"]].values.tolist() == [
        ["overall", "model_a"], ["visual_quality", "model_b"],
    ]  # fmt: skip
    with pytest.raises(InputError, match="unknown question"):
        import_label_studio(str(path), question_map={"q1": "beauty"})
    # Prefixed / suffixed names are read as the question they contain.
    named = [ls_region("winner_overall", "Left", "a"), ls_region("visual_quality-choice", "Tie", "b")]
    path.write_text(json.dumps([ls_task(6, "model_a", [ls_annotation(1, 6, 9, named)])]))
    assert import_label_studio(str(path)).votes["question"].tolist() == ["overall", "visual_quality"]


# --- the real arena battle export ----------------------------------------------------------------------
ARENA_BATTLES = [
    # model_a, model_b, winner, judge, tstamp, turn, anony, language, question_id
    ("svd/2", "svd/1", "model_a", "arena_user_1", 1733300000.1, 1, True, "English", "q01"),
    ("svd/1", "svd/2", "model_b", "arena_user_2", 1733300011.5, 1, True, "English", "q02"),
    ("svd/2", "svd/3", "tie (bothbad)", "arena_user_1", 1733300020.0, 2, True, "German", "q03"),
    ("svd/3", "svd/1", "tie", "arena_user_3", 1733300030.0, 1, False, "English", "q01"),
    ("svd/1", "svd/3", "model_a", "arena_user_2", 1733300040.0, 1, True, "English", "q04"),
    ("svd/2", "svd/1", "model_a", "arena_user_3", 1733300050.0, 1, True, "English", "q05"),
    ("svd/1", "svd/2", "model_b", "arena_user_1", 1733300000.1, 1, True, "English", "q01"),  # row 1 swapped
    ("svd/2", "svd/3", "model_z", "arena_user_4", 1733300060.0, 1, True, "English", "q06"),  # bad winner
]
ARENA_FIELDS = ("model_a", "model_b", "winner", "judge", "tstamp", "turn", "anony", "language", "question_id")


@pytest.mark.parametrize("suffix", ["json", "csv", "jsonl"])
def test_a_real_arena_battle_export_imports_and_ranks(tmp_path, suffix):
    from svd_core.evaluation.analyze import analyze
    from svd_core.evaluation.config import AnalysisConfig

    battles = pd.DataFrame(ARENA_BATTLES, columns=ARENA_FIELDS)
    path = tmp_path / f"clean_battle.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(battles.to_dict(orient="records")))
    elif suffix == "jsonl":
        battles.to_json(path, orient="records", lines=True)
    else:
        battles.to_csv(path, index=False)
    result = import_arena(str(path), study_id="arena")
    assert list(result.votes.columns) == VOTE_COLUMNS
    assert result.rejected["row_number"].tolist() == [7, 8]
    assert (
        "with the models swapped" in result.rejected["reason"].iloc[0]
        and "(row 1)" in result.rejected["reason"].iloc[0]
    )
    assert "unknown winner 'model_z'" in result.rejected["reason"].iloc[1]
    votes = result.votes
    assert votes["rater_id"].tolist()[:3] == ["arena_user_1", "arena_user_2", "arena_user_1"]
    assert votes["prompt_id"].tolist()[:3] == ["q01", "q02", "q03"]
    assert (votes["left"] == "model_a").all() and (votes["question"] == "overall").all()
    assert votes["winner"].tolist()[:4] == ["model_a", "model_b", "both_bad", "tie"]
    assert votes["created_at"].iloc[0].startswith("2024-12-04T08:13:20")
    with pytest.raises(InputError, match=r"2 of 8 rows .* above max_rejected_share=5%"):
        check_rejected(result, str(path))
    check_rejected(result, str(path), max_share=0.25)
    ranked = analyze(votes, AnalysisConfig(bootstrap_rounds=50, paper_elo_orderings=0))
    assert list(ranked.leaderboard["model"]) == ["svd/2", "svd/1", "svd/3"]  # 1 beat 3 once and tied once
    assert np.isfinite(ranked.leaderboard["rating"]).all()


def test_arena_battles_without_question_ids_take_the_prompt_text_or_the_battle(tmp_path):
    with_text = pd.DataFrame(
        {"model_a": ["a", "b"], "model_b": ["b", "a"], "winner": ["model_a", "model_b"],
         "judge": ["u1", "u1"], "prompt": ["a cat", "a cat"], "left": ["model_b", "model_a"]}
    )  # fmt: skip
    path = tmp_path / "with_text.csv"
    with_text.to_csv(path, index=False)
    result = import_arena(str(path))
    assert len(result.votes) == 1 and "duplicate vote" in result.rejected["reason"].iloc[0]
    assert (
        result.votes["prompt_id"].iloc[0].startswith("prompt-") and result.votes["left"].iloc[0] == "model_b"
    )
    battles = with_text.drop(columns=["prompt", "left"]).assign(tstamp=[1.0, 2.0])
    path = tmp_path / "battles.csv"
    battles.to_csv(path, index=False)
    result = import_arena(str(path), question="visual_quality")
    assert result.rejected.empty, "different battles of one judge are not duplicates"
    assert result.votes["prompt_id"].tolist() == ["u1@1.0", "u1@2.0"]
    assert (result.votes["question"] == "visual_quality").all()
