"""Column contract of a vote table (one row per rater judgement of one pair on one question).

The rating app, the importers (arena CSV, Label Studio) and the synthetic rater all produce this; the
analysis reads it. Human and synthetic votes are never mixed silently: `synthetic` says which is which.
"""

from __future__ import annotations

VOTE_COLUMNS = [
    "study_id",  # str
    "task_id",  # str: one pair of samples on one prompt for one question
    "question",  # str: "prompt_alignment" | "visual_quality" | "overall"
    "rater_id",  # str
    "prompt_id",  # str
    "model_a",  # str: model version URI or name
    "model_b",  # str
    "left",  # str: which of "model_a" / "model_b" was shown on the left
    "winner",  # str: "model_a" | "model_b" | "tie" | "both_bad" | "broken" (see OUTCOMES below)
    "is_gold",  # bool: attention-check pair (real sample vs degraded copy); model_a is the correct answer
    "synthetic",  # bool: produced by an automatic rater
    "created_at",  # str: ISO-8601 UTC
]
WINNERS = ("model_a", "model_b", "tie", "both_bad", "broken")
"""Every answer a vote can hold. "both_bad" (neither sample is acceptable) and "broken" (a video did not
load or play) are stored as distinct outcomes: the analysis counts both_bad as a tie-like, non-decisive vote
and leaves broken votes out (they judge the media, not the models) and reports them."""
DECISIVE = ("model_a", "model_b")
TIE_LIKE = ("tie", "both_bad")
BROKEN = "broken"
QUESTIONS = ("prompt_alignment", "visual_quality", "overall")
