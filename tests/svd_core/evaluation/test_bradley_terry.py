"""Bradley-Terry against ground truth: recovery of known strengths, interval coverage, the arena fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from svd_core.errors import InputError
from svd_core.evaluation.bradley_terry import (
    CountTable,
    bootstrap_counts,
    bradley_terry,
    count_table,
    fit_log_strengths,
    paper_online_elo,
    to_elo,
)
from svd_core.evaluation.synthetic import simulate_bradley_terry_votes

TRUE_ELO = {"m0": 1180.0, "m1": 1090.0, "m2": 1000.0, "m3": 960.0, "m4": 820.0}


def centred(ratings: dict[str, float]) -> np.ndarray:
    values = np.array(list(ratings.values()))
    return values - values.mean() + 1000.0


def test_recovers_the_order_and_values_of_known_strengths():
    votes = simulate_bradley_terry_votes(TRUE_ELO, 20_000, seed=3)
    fit = bradley_terry(votes, rounds=200, seed=1)
    board = fit.leaderboard()
    assert list(board["model"]) == list(TRUE_ELO)
    assert fit.converged and fit.bootstrap_converged == 1.0
    assert np.abs(fit.rating - centred(TRUE_ELO)).max() < 15
    assert fit.rating.mean() == pytest.approx(1000.0)
    assert ((fit.lower < fit.rating) & (fit.rating < fit.upper)).all()


def test_bootstrap_intervals_cover_the_true_ratings_at_the_nominal_rate():
    """200 simulated studies, 400 bootstrap rounds each, all 80,000 fits in one vectorised batch."""
    sims, rounds, votes_per_sim = 200, 400, 1500
    rng = np.random.default_rng(2024)
    models = list(TRUE_ELO)
    truth = centred(TRUE_ELO)
    pairs = np.array(list(itertools.combinations(range(len(models)), 2)))
    p_win = 1 / (1 + 10 ** ((truth[pairs[:, 1]] - truth[pairs[:, 0]]) / 400))
    per_pair = rng.multinomial(votes_per_sim, np.full(len(pairs), 1 / len(pairs)), size=sims)
    wins = rng.binomial(per_pair, p_win)
    tables = np.stack([wins, per_pair - wins, np.zeros_like(wins)], axis=-1).astype(float)  # (sims, K, 3)
    boot = np.concatenate(
        [
            bootstrap_counts(CountTable(tuple(models), pairs[:, 0], pairs[:, 1], t), rounds, rng)
            for t in tables
        ]
    )
    theta, converged = fit_log_strengths(pairs[:, 0], pairs[:, 1], boot, len(models))
    assert converged.all()
    ratings = to_elo(theta).reshape(sims, rounds, len(models))
    lower, upper = np.quantile(ratings, [0.025, 0.975], axis=1)
    covered = (lower <= truth) & (truth <= upper)  # (sims, models)
    # each model's coverage count must lie in the central 99.8% of Binomial(200, 0.95)
    low, high = stats.binom.ppf([0.001, 0.999], sims, 0.95)
    assert ((covered.sum(axis=0) >= low) & (covered.sum(axis=0) <= high)).all(), covered.mean(axis=0)
    assert 0.92 <= covered.mean() <= 0.975
    # and the check has teeth: intervals half as wide would miss far too often
    mid, half = (lower + upper) / 2, (upper - lower) / 4
    assert ((mid - half <= truth) & (truth <= mid + half)).mean() < 0.8


def arena_ratings(votes: pd.DataFrame) -> pd.Series:
    """The public arena's fit: weighted logistic regression on win counts (ties half a win), 400 scale."""
    table = count_table(votes)
    rows, labels, weights = [], [], []
    for a, b, (wins_a, wins_b, ties) in zip(table.i, table.j, table.counts, strict=True):
        x = np.zeros(len(table.models))
        x[a], x[b] = math.log(10), -math.log(10)
        rows += [x, x]
        labels += [1, 0]
        weights += [2 * wins_a + ties, 2 * wins_b + ties]
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000)
    model.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    return pd.Series(1000 + 400 * model.coef_[0], index=table.models)


def test_point_ratings_equal_the_arena_logistic_regression_with_ties():
    votes = simulate_bradley_terry_votes(TRUE_ELO, 5_000, seed=9, tie_rate=0.2)
    fit = bradley_terry(votes, rounds=0)
    arena = arena_ratings(votes)
    assert np.abs(fit.rating - arena[fit.models].to_numpy()).max() < 0.01
    assert np.isnan(fit.lower).all()


def test_a_tie_counts_as_half_a_win():
    votes = pd.DataFrame(
        {"model_a": ["a"] * 4, "model_b": ["b"] * 4, "winner": ["model_a", "tie", "tie", "model_b"]}
    )
    assert bradley_terry(votes, rounds=0).rating == pytest.approx([1000.0, 1000.0])
    votes.loc[3, "winner"] = "tie"  # 2 wins out of 4 by half-counting: 2.5 : 1.5 -> odds 5:3
    fit = bradley_terry(votes, rounds=0)
    assert fit.rating[0] - fit.rating[1] == pytest.approx(400 * math.log10(2.5 / 1.5))


def test_disconnected_comparisons_are_refused():
    votes = pd.DataFrame({"model_a": ["a", "c"], "model_b": ["b", "d"], "winner": ["model_a", "model_b"]})
    with pytest.raises(InputError, match="never compared"):
        bradley_terry(votes, rounds=0)
    with pytest.raises(InputError, match="at least one pair"):
        bradley_terry(votes.iloc[:0], rounds=0)


def test_a_model_that_never_lost_is_flagged_not_hidden():
    votes = pd.DataFrame({"model_a": ["a", "b", "b"], "model_b": ["b", "c", "c"]})
    votes["winner"] = ["model_a", "model_a", "model_b"]
    fit = bradley_terry(votes, rounds=50)
    assert not fit.converged
    assert fit.leaderboard()["model"].iloc[0] == "a"


def test_paper_online_elo_orders_models_and_keeps_the_mean():
    votes = simulate_bradley_terry_votes({"a": 1100, "b": 1000, "c": 900}, 1500, seed=4)
    paper = paper_online_elo(votes, orderings=200, seed=0)
    assert list(paper.sort_values(ascending=False).index) == ["a", "b", "c"]
    assert paper.mean() == pytest.approx(1000.0)
    # K=1 moves ratings slowly: after 1,500 votes the spread is far smaller than the true 200 points
    assert 0 < paper["a"] - paper["c"] < 200
    assert paper.equals(paper_online_elo(votes, orderings=200, seed=0))


def test_count_table_agrees_with_the_pairwise_counts():
    from svd_core.evaluation.stats import pair_counts

    votes = simulate_bradley_terry_votes(TRUE_ELO, 3_000, seed=6, tie_rate=0.15)
    table = count_table(votes)
    counts = pair_counts(votes)
    assert table.models == tuple(sorted(TRUE_ELO)) and table.n_votes == 3_000
    pairs = [(table.models[a], table.models[b]) for a, b in zip(table.i, table.j, strict=True)]
    assert pairs == list(zip(counts["model_x"], counts["model_y"], strict=True))
    assert np.array_equal(table.counts, counts[["wins_x", "wins_y", "ties"]].to_numpy(float))
