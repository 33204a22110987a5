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
from svd_core.evaluation.synthetic import marginal_truth, simulate_bradley_terry_votes

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
    fit = bradley_terry(votes, rounds=0, prior=0.0)
    arena = arena_ratings(votes)
    assert np.abs(fit.rating - arena[fit.models].to_numpy()).max() < 0.01
    assert np.isnan(fit.lower).all()


def test_a_tie_counts_as_half_a_win():
    votes = pd.DataFrame(
        {"model_a": ["a"] * 4, "model_b": ["b"] * 4, "winner": ["model_a", "tie", "tie", "model_b"]}
    )
    assert bradley_terry(votes, rounds=0).rating == pytest.approx([1000.0, 1000.0])
    votes.loc[3, "winner"] = "tie"  # 2 wins out of 4 by half-counting: 2.5 : 1.5 -> odds 5:3
    fit = bradley_terry(votes, rounds=0, prior=0.0)  # the exact maximum-likelihood value
    assert fit.rating[0] - fit.rating[1] == pytest.approx(400 * math.log10(2.5 / 1.5))


def test_disconnected_comparisons_are_refused():
    votes = pd.DataFrame({"model_a": ["a", "c"], "model_b": ["b", "d"], "winner": ["model_a", "model_b"]})
    with pytest.raises(InputError, match="never compared"):
        bradley_terry(votes, rounds=0)
    with pytest.raises(InputError, match="at least one pair"):
        bradley_terry(votes.iloc[:0], rounds=0)


def test_a_model_that_never_lost_is_flagged_and_finite_inside_its_interval():
    votes = pd.DataFrame({"model_a": ["a", "b", "b"], "model_b": ["b", "c", "c"]})
    votes["winner"] = ["model_a", "model_a", "model_b"]
    fit = bradley_terry(votes, rounds=200)
    assert fit.separated == ("a",)
    assert fit.converged and fit.bootstrap_converged == 1.0
    assert fit.leaderboard()["model"].iloc[0] == "a"
    assert np.isfinite(fit.rating).all()
    assert ((fit.lower <= fit.rating) & (fit.rating <= fit.upper)).all()
    # without the prior the same data has no finite optimum: the rating runs off with the iteration limit
    table = count_table(votes)
    short, _ = fit_log_strengths(table.i, table.j, table.counts, 3, max_iter=20, prior=0.0)
    long, done = fit_log_strengths(table.i, table.j, table.counts, 3, max_iter=200, prior=0.0)
    assert not done[0] and long[0, 0] > short[0, 0] + 2
    prior_short, _ = fit_log_strengths(table.i, table.j, table.counts, 3, max_iter=20)
    prior_long, _ = fit_log_strengths(table.i, table.j, table.counts, 3, max_iter=200)
    assert prior_long == pytest.approx(prior_short, abs=1e-9)


def test_four_sweeps_give_a_finite_rating_that_grows_with_evidence():
    def sweep(n: int) -> float:
        votes = pd.DataFrame({"model_a": ["a"] * n, "model_b": ["b"] * n, "winner": ["model_a"] * n})
        return float(bradley_terry(votes, rounds=0).rating[0])

    assert 1000 < sweep(4) < sweep(40) < sweep(400) < 3000


def test_the_prior_barely_moves_well_measured_ratings():
    votes = simulate_bradley_terry_votes(TRUE_ELO, 5_000, seed=9, tie_rate=0.2)
    with_prior = bradley_terry(votes, rounds=0).rating
    without = bradley_terry(votes, rounds=0, prior=0.0).rating
    assert np.abs(with_prior - without).max() < 0.05
    assert np.abs(with_prior - 1000).max() < np.abs(without - 1000).max()  # it shrinks, towards the mean


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


# --- clustered votes: rater tastes and prompt difficulty -----------------------------------------------
def clustered_study(seed: int, effect_sd: float) -> pd.DataFrame:
    """The issue's study shape: 50 raters, 64 prompts, 2,000 votes, 10% ties."""
    return simulate_bradley_terry_votes(
        TRUE_ELO, 2000, seed=seed, n_raters=50, n_prompts=64, rater_sd=effect_sd, prompt_sd=effect_sd,
        tie_rate=0.1,
    )  # fmt: skip


def coverage(effect_sd: float, studies: int, cluster: str, rounds: int = 400) -> float:
    truth = pd.Series(marginal_truth(TRUE_ELO, math.hypot(effect_sd, effect_sd), 0.1), index=list(TRUE_ELO))
    hits = []
    for k in range(studies):
        fit = bradley_terry(clustered_study(5000 + k, effect_sd), rounds=rounds, seed=k, cluster=cluster)
        target = truth[fit.models].to_numpy()
        hits.append((fit.lower <= target) & (target <= fit.upper))
    return float(np.mean(hits))


def test_clustered_intervals_widen_for_clustered_votes_and_stay_tight_for_independent_ones():
    wide = {
        c: bradley_terry(clustered_study(1, 130.0), rounds=300, cluster=c) for c in ("vote", "rater_prompt")
    }
    width = {c: float(np.mean(f.upper - f.lower)) for c, f in wide.items()}
    assert width["rater_prompt"] > 1.4 * width["vote"]
    plain = {
        c: bradley_terry(clustered_study(1, 0.0), rounds=300, cluster=c) for c in ("vote", "rater_prompt")
    }
    ratio = np.mean(plain["rater_prompt"].upper - plain["rater_prompt"].lower) / np.mean(
        plain["vote"].upper - plain["vote"].lower
    )
    assert 0.9 < ratio < 1.25, "rescaled to the two-way variance: independent votes keep tight intervals"
    assert np.array_equal(wide["vote"].rating, wide["rater_prompt"].rating)


def test_cluster_bootstrap_counts_keep_the_vote_total_on_average_and_reweight_whole_raters():
    votes = clustered_study(2, 50.0)
    table = count_table(votes)
    assert table.groups is not None and table.groups.n_raters == 50 and table.groups.n_prompts == 64
    draws = bootstrap_counts(table, 400, np.random.default_rng(0), "rater_prompt")
    assert draws.shape == (400, len(table.i), 3)
    assert draws.sum(axis=(1, 2)).mean() == pytest.approx(2000, rel=0.03)
    one_rater = votes[votes["rater_id"] == "sim-rater-0"]
    solo = count_table(one_rater)
    rater_draws = bootstrap_counts(solo, 50, np.random.default_rng(1), "rater")
    assert np.array_equal(rater_draws, np.broadcast_to(solo.counts, rater_draws.shape))  # 1 rater: fixed
    with pytest.raises(InputError, match="cluster"):
        bootstrap_counts(table, 5, np.random.default_rng(0), "judge")


@pytest.mark.slow
@pytest.mark.parametrize(("effect_sd", "name"), [(130.0, "clustered"), (0.0, "independent")])
def test_rater_prompt_intervals_cover_at_least_93_percent_in_200_studies(effect_sd: float, name: str) -> None:
    """The issue's target: 95% intervals cover >= 93% of the time in >= 200 simulated studies (50 raters,
    64 prompts, 2,000 votes), with rater and prompt effects and with independent votes. Rater and prompt
    effects of 130 Elo each make the plain vote bootstrap cover only ~74% (the issue measured 68-78%)."""
    covered = coverage(effect_sd, 200, "rater_prompt")
    print(f"{name}: rater_prompt coverage {covered:.3f}")
    assert covered >= 0.93
    if effect_sd > 0:
        plain = coverage(effect_sd, 200, "vote")
        print(f"{name}: vote bootstrap coverage {plain:.3f}")
        assert plain < 0.85, "the simulation has teeth: independent-vote intervals under-cover here"


def test_cluster_counts_weigh_each_vote_by_its_rater_and_prompt_draws():
    votes = clustered_study(3, 0.0).iloc[:300]
    table = count_table(votes)
    assert table.groups is not None
    rounds = 7
    draws = bootstrap_counts(table, rounds, np.random.default_rng(9), "rater_prompt")
    # the same draws by hand: raters, then prompts, each n draws with replacement per round
    rng = np.random.default_rng(9)
    n_r, n_p = table.groups.n_raters, table.groups.n_prompts
    rater_w = np.stack([np.bincount(row, minlength=n_r) for row in rng.integers(0, n_r, (rounds, n_r))])
    prompt_w = np.stack([np.bincount(row, minlength=n_p) for row in rng.integers(0, n_p, (rounds, n_p))])
    rater = pd.factorize(votes["rater_id"], sort=True)[0]
    prompt = pd.factorize(votes["prompt_id"], sort=True)[0]
    models = list(table.models)
    a = votes["model_a"].map(models.index).to_numpy()
    b = votes["model_b"].map(models.index).to_numpy()
    pair = {(int(x), int(y)): k for k, (x, y) in enumerate(zip(table.i, table.j, strict=True))}
    expected = np.zeros((rounds, len(table.i), 3))
    for v, winner in enumerate(votes["winner"]):
        x, y = min(a[v], b[v]), max(a[v], b[v])
        won = {"model_a": a[v], "model_b": b[v]}.get(winner, -1)
        outcome = 2 if won == -1 else (0 if won == x else 1)
        expected[:, pair[(x, y)], outcome] += (rater_w[:, rater[v]] + prompt_w[:, prompt[v]]) / 2
    assert np.allclose(draws, expected)
    # one axis alone: the one-way cluster bootstrap, whole raters in or out
    only_raters = bootstrap_counts(table, rounds, np.random.default_rng(9), "rater")
    by_hand = np.zeros_like(expected)
    for v, winner in enumerate(votes["winner"]):
        x, y = min(a[v], b[v]), max(a[v], b[v])
        won = {"model_a": a[v], "model_b": b[v]}.get(winner, -1)
        by_hand[:, pair[(x, y)], 2 if won == -1 else (0 if won == x else 1)] += rater_w[:, rater[v]]
    assert np.allclose(only_raters, by_hand)
