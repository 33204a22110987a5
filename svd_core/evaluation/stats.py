"""Pairwise preference statistics: win rates with clustered intervals, exact binomial tests, position bias.

Pairs are reported in a canonical orientation (model_x sorts before model_y) whatever side each vote
listed them on. A win rate counts ties as half a win (as public arenas do); the exact binomial test uses
decisive votes only, because a tie carries no evidence for either side.

Votes sharing a rater or a prompt are correlated, so when a Bradley-Terry fit with its (rater x prompt)
cluster bootstrap is given, each pair's interval is the union of the clustered bootstrap interval and the
Wilson interval, and its p-value the larger of the clustered Wald test and the exact binomial test:
clustering can only remove evidence, never add it (a 4-0 from one rater on one prompt stays p = 0.125).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from svd_core.evaluation.power import votes_still_needed
from svd_core.evaluation.schema import DECISIVE

if TYPE_CHECKING:
    from svd_core.evaluation.bradley_terry import BradleyTerryFit

PAIR_COLUMNS = [
    "model_x",
    "model_y",
    "wins_x",
    "wins_y",
    "ties",
    "n",
    "win_rate_x",
    "lower",
    "upper",
    "p_value",
    "p_exact",
    "p_cluster",
    "decisive",
    "raters",
    "prompts",
    "decisive_needed",
    "more_votes_needed",
]


def wilson_interval(successes: Any, n: Any, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval of a proportion (works on scalars and arrays; n = 0 gives (0, 1))."""
    k = np.asarray(successes, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    z = stats.norm.ppf(0.5 + confidence / 2.0)
    safe_n = np.where(n_arr > 0, n_arr, 1.0)
    p = k / safe_n
    denom = 1.0 + z**2 / safe_n
    center = (p + z**2 / (2 * safe_n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / safe_n + z**2 / (4 * safe_n**2))
    lower = np.where(n_arr > 0, np.clip(center - half, 0.0, 1.0), 0.0)
    upper = np.where(n_arr > 0, np.clip(center + half, 0.0, 1.0), 1.0)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def binomial_test(successes: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test p-value (1.0 when there is no decisive vote)."""
    if n == 0:
        return 1.0
    return float(stats.binomtest(int(successes), int(n), p, alternative="two-sided").pvalue)


def winner_model(votes: pd.DataFrame) -> np.ndarray:
    """Name of the winning model per vote ('' for a tie)."""
    a, b, w = votes["model_a"].to_numpy(str), votes["model_b"].to_numpy(str), votes["winner"].to_numpy(str)
    return np.where(w == "model_a", a, np.where(w == "model_b", b, ""))


def pair_counts(votes: pd.DataFrame) -> pd.DataFrame:
    """Per unordered pair (model_x < model_y): wins_x, wins_y, ties."""
    a, b = votes["model_a"].to_numpy(str), votes["model_b"].to_numpy(str)
    x, y = np.where(a < b, a, b), np.where(a < b, b, a)
    won = winner_model(votes)
    frame = pd.DataFrame(
        {"model_x": x, "model_y": y, "wins_x": won == x, "wins_y": won == y, "ties": won == ""}
    )
    counts = frame.groupby(["model_x", "model_y"], sort=True).sum().astype(int).reset_index()
    return counts


def _distinct_per_pair(votes: pd.DataFrame, column: str) -> pd.DataFrame:
    """Distinct `column` values among each pair's decisive votes (0 where the column is absent)."""
    a, b = votes["model_a"].to_numpy(str), votes["model_b"].to_numpy(str)
    frame = pd.DataFrame({"model_x": np.where(a < b, a, b), "model_y": np.where(a < b, b, a)})
    decisive = votes["winner"].isin(DECISIVE).to_numpy()
    if column not in votes.columns:
        return frame.drop_duplicates().assign(**{column: 0})
    frame[column] = np.where(decisive, votes[column].astype(str).to_numpy(), None)
    return frame.groupby(["model_x", "model_y"], sort=True)[column].nunique().reset_index()


def pairwise_table(
    votes: pd.DataFrame,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
    fit: BradleyTerryFit | None = None,
) -> pd.DataFrame:
    """Win rate of model_x over model_y per pair with its interval, p-value, evidence and votes needed.

    Without `fit`: Wilson interval (ties half) and exact binomial test on decisive votes. With a
    Bradley-Terry `fit` of the same votes: the clustered bootstrap widens both (see the module doc).
    `raters` / `prompts` count distinct raters / prompts among the pair's decisive votes.
    """
    counts = pair_counts(votes)
    if counts.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    n = counts["wins_x"] + counts["wins_y"] + counts["ties"]
    successes = counts["wins_x"] + 0.5 * counts["ties"]
    lower, upper = wilson_interval(successes.to_numpy(), n.to_numpy(), confidence)
    p_exact = np.array([binomial_test(r.wins_x, r.wins_x + r.wins_y) for r in counts.itertuples(index=False)])
    p_cluster = np.full(len(counts), np.nan)
    if fit is not None:
        tests = counts[["model_x", "model_y"]].merge(
            fit.pair_tests(confidence), on=["model_x", "model_y"], how="left"
        )
        p_cluster = tests["cluster_p"].to_numpy(np.float64)
        lower = np.fmin(lower, tests["cluster_lower"].to_numpy(np.float64))
        upper = np.fmax(upper, tests["cluster_upper"].to_numpy(np.float64))
    needed = [
        votes_still_needed(r.wins_x, r.wins_y, r.ties, alpha, power) for r in counts.itertuples(index=False)
    ]
    evidence = counts[["model_x", "model_y"]]
    for column, name in (("rater_id", "raters"), ("prompt_id", "prompts")):
        distinct = _distinct_per_pair(votes, column).rename(columns={column: name})
        evidence = evidence.merge(distinct, on=["model_x", "model_y"], how="left")
    return counts.assign(
        n=n,
        win_rate_x=successes / n,
        lower=lower,
        upper=upper,
        p_value=np.fmax(p_exact, p_cluster),
        p_exact=p_exact,
        p_cluster=p_cluster,
        decisive=counts["wins_x"] + counts["wins_y"],
        raters=evidence["raters"].fillna(0).astype(int).to_numpy(),
        prompts=evidence["prompts"].fillna(0).astype(int).to_numpy(),
        decisive_needed=[d["decisive_needed"] for d in needed],
        more_votes_needed=[d["more_votes_needed"] for d in needed],
    )[PAIR_COLUMNS]


CORRECTIONS = ("holm", "bh")


def adjust_p_values(p_values: Any, method: str = "holm") -> np.ndarray:
    """p-values adjusted for testing them as one family: Holm (family-wise error) or Benjamini-Hochberg (BH,
    false discovery rate). NaN stays NaN and is not counted as a test; an adjusted value is never below its
    raw one. BH comes from scipy (`false_discovery_control`); scipy has no Holm, so its step-down is here.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} must be one of {CORRECTIONS}")
    raw = np.asarray(p_values, dtype=np.float64)
    out = np.full(raw.shape, np.nan)
    tested = ~np.isnan(raw)
    p = raw[tested]
    if p.size == 0:
        return out
    if method == "bh":
        out[tested] = stats.false_discovery_control(p, method="bh")
        return out
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))  # the k-th smallest times (m - k + 1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out[tested] = adjusted
    return out


def pair_win_rate(pairwise: pd.DataFrame, model: str, opponent: str) -> dict[str, Any] | None:
    """Row of `pairwise` seen from `model`'s side (win rate and interval flipped when needed)."""
    x, y = sorted((model, opponent))
    rows = pairwise[(pairwise["model_x"] == x) & (pairwise["model_y"] == y)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    flip = model != x
    return {
        "model": model,
        "opponent": opponent,
        "wins": int(row["wins_y"] if flip else row["wins_x"]),
        "losses": int(row["wins_x"] if flip else row["wins_y"]),
        "ties": int(row["ties"]),
        "n": int(row["n"]),
        "win_rate": float(1 - row["win_rate_x"] if flip else row["win_rate_x"]),
        "lower": float(1 - row["upper"] if flip else row["lower"]),
        "upper": float(1 - row["lower"] if flip else row["upper"]),
        "p_value": float(row["p_value"]),
        "p_exact": float(row["p_exact"]),
        "decisive": int(row["decisive"]),
        "raters": int(row["raters"]),
        "prompts": int(row["prompts"]),
    }


def win_rate_matrix(pairwise: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Square table: row model's win rate against the column model (NaN where never compared)."""
    matrix = pd.DataFrame(np.nan, index=models, columns=models)
    for row in pairwise.itertuples(index=False):
        if row.model_x in matrix.index and row.model_y in matrix.index:
            matrix.loc[row.model_x, row.model_y] = row.win_rate_x
            matrix.loc[row.model_y, row.model_x] = 1 - row.win_rate_x
    return matrix


def position_bias(votes: pd.DataFrame, confidence: float = 0.95) -> dict[str, Any]:
    """How often the sample shown on the left wins among decisive votes, with a test against 50%."""
    decisive = votes[votes["winner"].isin(DECISIVE)]
    n = len(decisive)
    left_wins = int((decisive["winner"] == decisive["left"]).sum())
    lower, upper = wilson_interval(left_wins, n, confidence)
    return {
        "decisive_votes": n,
        "left_wins": left_wins,
        "right_wins": n - left_wins,
        "left_win_rate": left_wins / n if n else float("nan"),
        "lower": lower,
        "upper": upper,
        "p_value": binomial_test(left_wins, n),
    }
