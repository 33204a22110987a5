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
    "winner",  # str: "model_a" | "model_b" | "tie"
    "is_gold",  # bool: attention-check pair (real sample vs degraded copy); model_a is the correct answer
    "synthetic",  # bool: produced by an automatic rater
    "created_at",  # str: ISO-8601 UTC
]
WINNERS = ("model_a", "model_b", "tie")
QUESTIONS = ("prompt_alignment", "visual_quality", "overall")
