"""Rater quality from gold (attention-check) pairs, and exclusion of raters who fail them.

A gold pair shows a sample against a visibly degraded copy with `model_a` the right answer; a tie or the
degraded copy counts as a miss. A rater with at least `min_gold_votes` gold votes passes when the share of
hits is at least `min_gold_accuracy`; raters with fewer gold votes are "unchecked" (kept unless the config
says otherwise). Excluded raters lose all their votes, since inattention is not specific to gold pairs.
"""

from __future__ import annotations

import pandas as pd

from svd_core.evaluation.stats import wilson_interval

QUALITY_COLUMNS = [
    "rater_id",
    "gold_votes",
    "gold_correct",
    "accuracy",
    "lower",
    "upper",
    "status",
    "excluded",
]


def rater_quality(
    votes: pd.DataFrame,
    min_gold_accuracy: float = 0.8,
    min_gold_votes: int = 3,
    exclude_unchecked: bool = False,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per rater: gold votes, hits, accuracy (Wilson interval), status passed|failed|unchecked, excluded."""
    raters = pd.Index(sorted(votes["rater_id"].unique()), name="rater_id")
    gold = votes[votes["is_gold"]]
    counts = (
        gold.assign(correct=gold["winner"] == "model_a").groupby("rater_id")["correct"].agg(["size", "sum"])
    )
    counts = counts.reindex(raters, fill_value=0)
    n, hits = counts["size"].astype(int), counts["sum"].astype(int)
    accuracy = hits / n.where(n > 0)
    lower, upper = wilson_interval(hits.to_numpy(), n.to_numpy(), confidence)
    checked = n >= min_gold_votes
    status = pd.Series("unchecked", index=raters)
    status[checked & (accuracy >= min_gold_accuracy)] = "passed"
    status[checked & (accuracy < min_gold_accuracy)] = "failed"
    frame = pd.DataFrame(
        {
            "rater_id": raters,
            "gold_votes": n.to_numpy(),
            "gold_correct": hits.to_numpy(),
            "accuracy": accuracy.to_numpy(),
            "lower": lower,
            "upper": upper,
            "status": status.to_numpy(),
            "excluded": ((status == "failed") | ((status == "unchecked") & exclude_unchecked)).to_numpy(),
        }
    )
    return frame[QUALITY_COLUMNS]


def excluded_raters(quality: pd.DataFrame) -> list[str]:
    return sorted(quality.loc[quality["excluded"], "rater_id"])


def exclude_raters(votes: pd.DataFrame, raters: list[str]) -> pd.DataFrame:
    """All votes except those of `raters`."""
    return votes[~votes["rater_id"].isin(raters)]
