"""Inter-rater agreement on tasks judged by two or more raters: Fleiss' kappa and Krippendorff's alpha.

Both read a units x categories count table (how many raters put unit u in category c). Fleiss' kappa is
the version for a varying number of raters per unit (per-unit agreement averaged over units); with equal
counts it is Fleiss (1971). Krippendorff's alpha (nominal) pairs values within units through the
coincidence matrix and handles missing ratings natively. Votes are mapped to a canonical category (the
alphabetically first model wins / the other wins / tie) so raters who saw the pair listed either way agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from svd_core.evaluation.stats import winner_model


def _pairable(table: np.ndarray) -> np.ndarray:
    table = np.asarray(table, dtype=np.float64)
    return table[table.sum(axis=1) >= 2]


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa of a (units, categories) count table; units with fewer than 2 ratings are ignored."""
    table = _pairable(table)
    if len(table) == 0:
        return float("nan")
    per_unit = table.sum(axis=1)
    observed = ((table**2).sum(axis=1) - per_unit) / (per_unit * (per_unit - 1))
    shares = table.sum(axis=0) / table.sum()
    expected = float((shares**2).sum())
    if expected >= 1.0:
        return float("nan")  # every rating in one category: agreement beyond chance is undefined
    return float((observed.mean() - expected) / (1.0 - expected))


def krippendorff_alpha_nominal(table: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data from a (units, values) count table."""
    table = _pairable(table)
    if len(table) == 0:
        return float("nan")
    per_unit = table.sum(axis=1)
    coincidence = np.einsum("uc,uk->ck", table / (per_unit - 1)[:, None], table)
    coincidence -= np.diag((table / (per_unit - 1)[:, None]).sum(axis=0))
    marginals = coincidence.sum(axis=1)
    n = marginals.sum()
    disagree_observed = coincidence.sum() - np.trace(coincidence)
    disagree_expected = (marginals.sum() ** 2 - (marginals**2).sum()) / (n - 1)
    if disagree_expected == 0:
        return float("nan")
    return float(1.0 - disagree_observed / disagree_expected)


def vote_category_table(votes: pd.DataFrame) -> np.ndarray:
    """(tasks, 3) counts of canonical outcomes: first model (by name) wins, the other wins, tie."""
    if votes.empty:
        return np.zeros((0, 3))
    a, b = votes["model_a"].to_numpy(str), votes["model_b"].to_numpy(str)
    first = np.where(a < b, a, b)
    won = winner_model(votes)
    category = np.where(won == "", 2, np.where(won == first, 0, 1))
    frame = pd.DataFrame({"task_id": votes["task_id"].to_numpy(), "category": category})
    counts = frame.groupby(["task_id", "category"]).size().unstack(fill_value=0)
    return counts.reindex(columns=[0, 1, 2], fill_value=0).to_numpy(np.float64)


def agreement_report(votes: pd.DataFrame) -> dict[str, Any]:
    """Agreement over tasks with >= 2 votes: counts, raw pairwise agreement, Fleiss' kappa, Krippendorff's alpha."""
    table = _pairable(vote_category_table(votes))
    per_unit = table.sum(axis=1)
    raw = ((table**2).sum(axis=1) - per_unit) / (per_unit * (per_unit - 1)) if len(table) else np.array([])
    return {
        "tasks_with_2plus_votes": len(table),
        "votes_in_those_tasks": int(per_unit.sum()),
        "raw_agreement": float(raw.mean()) if len(raw) else float("nan"),
        "fleiss_kappa": fleiss_kappa(table),
        "krippendorff_alpha": krippendorff_alpha_nominal(table),
    }
