"""Preference statistics against known values: Wilson, exact binomial, power, Fleiss' kappa, Krippendorff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from svd_core.evaluation.agreement import (
    agreement_report,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    vote_category_table,
)
from svd_core.evaluation.power import (
    decisive_votes_needed,
    elo_to_win_rate,
    exact_binomial_power,
    votes_still_needed,
    win_rate_to_elo,
)
from svd_core.evaluation.stats import (
    adjust_p_values,
    binomial_test,
    pair_counts,
    pair_win_rate,
    pairwise_table,
    position_bias,
    wilson_interval,
    win_rate_matrix,
)


def votes(rows: list[tuple[str, str, str, str]], task_ids: list[str] | None = None) -> pd.DataFrame:
    """(model_a, model_b, winner, left) tuples -> a minimal vote frame."""
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "left"])
    frame["task_id"] = task_ids if task_ids is not None else [f"t{k}" for k in range(len(rows))]
    return frame


# --- Wilson and binomial -----------------------------------------------------------------------------
def test_wilson_closed_forms_at_the_edges():
    z2 = stats.norm.ppf(0.975) ** 2
    lower, upper = wilson_interval(0, 10)
    assert lower == 0.0 and upper == pytest.approx(z2 / (10 + z2), abs=1e-12)
    lower, upper = wilson_interval(10, 10)
    assert lower == pytest.approx(10 / (10 + z2), abs=1e-12) and upper == pytest.approx(1.0)


def test_wilson_matches_newcombe_1998_example():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263, score method -> 0.2553 to 0.3662
    lower, upper = wilson_interval(81, 263)
    assert (round(lower, 4), round(upper, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(("k", "n", "confidence"), [(3, 17, 0.95), (40, 50, 0.9), (7.5, 20, 0.99)])
def test_wilson_bounds_invert_the_score_test(k, n, confidence):
    # the Wilson bounds are exactly the proportions where the score statistic equals z
    z = stats.norm.ppf(0.5 + confidence / 2)
    p_hat = k / n

    def score(p0):
        return abs(p_hat - p0) / np.sqrt(p0 * (1 - p0) / n) - z

    lower, upper = wilson_interval(k, n, confidence)
    assert lower == pytest.approx(optimize.brentq(score, 1e-9, p_hat), abs=1e-9)
    assert upper == pytest.approx(optimize.brentq(score, p_hat, 1 - 1e-9), abs=1e-9)


def test_wilson_vectorised_and_empty():
    lower, upper = wilson_interval(np.array([0, 5]), np.array([0, 10]))
    assert (lower[0], upper[0]) == (0.0, 1.0)
    assert lower[1] < 0.5 < upper[1]


def test_binomial_test_known_values():
    assert binomial_test(7, 10) == pytest.approx(0.34375)  # 2 * P(X >= 7) = 2 * 176 / 1024
    assert binomial_test(10, 10) == pytest.approx(2 / 1024)
    assert binomial_test(5, 10) == pytest.approx(1.0)
    assert binomial_test(0, 0) == 1.0


# --- pairwise tables ---------------------------------------------------------------------------------
def test_pairwise_table_canonical_orientation_and_ties_as_half():
    rows = [("b", "a", "model_a", "model_a")] * 6 + [("a", "b", "model_a", "model_b")] * 2
    rows += [("a", "b", "tie", "model_a")] * 2
    table = pairwise_table(votes(rows))
    row = table.iloc[0]
    assert (row.model_x, row.model_y, row.wins_x, row.wins_y, row.ties, row.n) == ("a", "b", 2, 6, 2, 10)
    assert row.win_rate_x == pytest.approx(0.3)
    assert (row.lower, row.upper) == pytest.approx(wilson_interval(3, 10))
    assert row.p_value == pytest.approx(binomial_test(2, 8))
    seen_from_b = pair_win_rate(table, "b", "a")
    assert seen_from_b["wins"] == 6 and seen_from_b["win_rate"] == pytest.approx(0.7)
    assert seen_from_b["lower"] == pytest.approx(1 - row.upper)
    assert pair_win_rate(table, "a", "zzz") is None
    matrix = win_rate_matrix(table, ["a", "b"])
    assert matrix.loc["b", "a"] == pytest.approx(0.7) and np.isnan(matrix.loc["a", "a"])


def test_pair_counts_sum_to_votes():
    rng = np.random.default_rng(0)
    models = np.array(["m1", "m2", "m3"])
    a = rng.integers(0, 3, 300)
    b = (a + rng.integers(1, 3, 300)) % 3
    w = rng.choice(["model_a", "model_b", "tie"], 300)
    frame = votes(list(zip(models[a], models[b], w, ["model_a"] * 300, strict=True)))
    counts = pair_counts(frame)
    assert counts[["wins_x", "wins_y", "ties"]].to_numpy().sum() == 300
    assert (counts["model_x"] < counts["model_y"]).all()


def test_position_bias_detects_a_left_preference():
    biased = [("a", "b", "model_a", "model_a")] * 70 + [("a", "b", "model_a", "model_b")] * 30
    report = position_bias(votes(biased))
    assert report["left_wins"] == 70 and report["decisive_votes"] == 100
    assert report["p_value"] == pytest.approx(binomial_test(70, 100)) and report["p_value"] < 0.001
    fair = [("a", "b", "model_a", "model_a")] * 50 + [("a", "b", "model_b", "model_a")] * 50
    fair += [("a", "b", "tie", "model_a")] * 10
    assert position_bias(votes(fair))["p_value"] > 0.5


# --- power -------------------------------------------------------------------------------------------
def test_power_matches_the_reference_numbers():
    # svd-facts: ~800 decisive votes detect 55% (alpha 0.05, power 0.8); ~192 detect about 60%
    assert 750 <= decisive_votes_needed(0.55) <= 850
    assert 180 <= decisive_votes_needed(0.60) <= 200
    assert exact_binomial_power(800, 0.55) == pytest.approx(0.8, abs=0.03)
    # the exact test is discrete (conservative): its power saw-tooths around the normal approximation
    assert 0.74 <= exact_binomial_power(192, 0.60) <= 0.85
    assert decisive_votes_needed(0.5) == np.inf
    assert win_rate_to_elo(0.55) == pytest.approx(35, abs=0.5)
    assert win_rate_to_elo(0.60) == pytest.approx(70, abs=0.5)
    assert elo_to_win_rate(win_rate_to_elo(0.63)) == pytest.approx(0.63)


def test_power_by_simulation_of_exact_tests():
    rng = np.random.default_rng(1)
    wins = rng.binomial(800, 0.55, size=4000)
    rejected = np.mean([binomial_test(k, 800) < 0.05 for k in wins[:1000]])
    assert rejected == pytest.approx(exact_binomial_power(800, 0.55), abs=0.04)


def test_votes_still_needed():
    done = votes_still_needed(wins=440, losses=360, ties=0)
    assert done["decisive_needed"] <= 800 and done["more_votes_needed"] == 0
    more = votes_still_needed(wins=55, losses=45, ties=100)
    assert more["more_decisive_needed"] == pytest.approx(decisive_votes_needed(0.55) - 100)
    assert more["more_votes_needed"] == pytest.approx(2 * more["more_decisive_needed"], abs=1)
    assert votes_still_needed(10, 10)["more_votes_needed"] == np.inf


# --- agreement ---------------------------------------------------------------------------------------
FLEISS_1971_WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_kappa_textbook_example():
    assert fleiss_kappa(FLEISS_1971_WIKIPEDIA) == pytest.approx(0.210, abs=5e-4)


def test_krippendorff_alpha_textbook_example():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing
    # values, nominal alpha = 0.743 (unit 12 has a single value and is not pairable)
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    table = np.zeros((12, 5))
    for coder in coders:
        for unit, value in enumerate(coder):
            if value is not None:
                table[unit, value - 1] += 1
    assert krippendorff_alpha_nominal(table) == pytest.approx(0.743, abs=5e-4)


def test_agreement_perfect_and_chance():
    perfect = np.array([[3, 0, 0], [0, 3, 0], [3, 0, 0], [0, 0, 3]])
    assert fleiss_kappa(perfect) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal(perfect) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    chance = np.stack([np.bincount(rng.integers(0, 3, 3), minlength=3) for _ in range(3000)])
    assert abs(fleiss_kappa(chance)) < 0.03 and abs(krippendorff_alpha_nominal(chance)) < 0.03
    assert np.isnan(fleiss_kappa(np.array([[1, 0, 0]])))


def test_vote_categories_are_side_independent():
    # two raters agree that b won although the task listed the pair in opposite orders
    rows = [("a", "b", "model_b", "model_a"), ("b", "a", "model_a", "model_b"), ("a", "b", "tie", "model_a")]
    table = vote_category_table(votes(rows, ["t1", "t1", "t2"]))
    assert table.tolist() == [[0, 2, 0], [0, 0, 1]]
    report = agreement_report(votes(rows, ["t1", "t1", "t2"]))
    assert report["tasks_with_2plus_votes"] == 1 and report["raw_agreement"] == 1.0


def test_holm_and_bh_match_their_textbook_steps_and_never_lower_a_p_value():
    raw = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max.
    np.testing.assert_allclose(adjust_p_values(raw, "holm"), [0.03, 0.06, 0.06, 0.02, np.nan])
    # BH: p_(k) m / k = 0.02, 0.02, 0.04, 0.04 -> running min from the top.
    np.testing.assert_allclose(adjust_p_values(raw, "bh"), [0.02, 0.04, 0.04, 0.02, np.nan])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 1, rng.integers(1, 30)) ** 3
        for method in ("holm", "bh"):
            adjusted = adjust_p_values(p, method)
            assert (adjusted >= p - 1e-15).all() and (adjusted <= 1).all()
            # Monotone: a smaller raw p-value never gets a larger adjusted one.
            order = np.argsort(p)
            assert (np.diff(adjusted[order]) >= -1e-15).all()
        assert (adjust_p_values(p, "holm") >= adjust_p_values(p, "bh") - 1e-15).all()  # Holm is stricter
    np.testing.assert_allclose(adjust_p_values([0.03]), [0.03])  # one test: nothing to correct
    assert adjust_p_values([]).size == 0
    with pytest.raises(ValueError, match="correction 'bonferroni'"):
        adjust_p_values([0.1], "bonferroni")


def test_both_bad_and_broken_answers_are_not_decisive_in_pair_statistics():
    votes = pd.DataFrame(
        {
            "model_a": ["a", "a", "a", "a"],
            "model_b": ["b", "b", "b", "b"],
            "winner": ["model_a", "both_bad", "broken", "tie"],
            "left": ["model_a"] * 4,
            "rater_id": ["r1", "r2", "r3", "r4"],
            "prompt_id": ["p1", "p2", "p3", "p4"],
        }
    )
    row = pairwise_table(votes).iloc[0]
    assert (row["decisive"], row["raters"], row["prompts"]) == (1, 1, 1)
    assert position_bias(votes)["decisive_votes"] == 1
