"""Promotion decision from an analysis: pure logic (moving the registry alias is the caller's job).

A challenger is promoted over the champion only if, on every configured question (an intersection-union
test: each question at level alpha), all of these hold:

1. evidence: at least `min_decisive_votes` decisive votes, from at least `min_raters` distinct raters, on
   at least `min_prompts` distinct prompts (a 4-0 from one rater never promotes);
2. the sequential test: the mixture SPRT on decisive votes (`power.mixture_log_evidence`) has reached
   1 / alpha. Its false-promotion rate stays at most alpha however often the decision is re-run as votes
   arrive (Ville's inequality), and it is exact for independent votes: no normal approximation, no
   half-counted ties;
3. the clustered bound: the lower end of the challenger's win-rate interval (ties half; rater x prompt
   cluster bootstrap, widened to the Wilson interval) is above `min_lower_bound`, so rater tastes and
   prompt difficulty cannot pass as a difference between models.

Synthetic votes never promote a model unless the caller allows it explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from svd_core.errors import InputError
from svd_core.evaluation.analyze import AnalysisResult
from svd_core.evaluation.config import PromotionConfig
from svd_core.evaluation.power import mixture_log_evidence, one_sided_votes_needed, sequential_votes_needed


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    """Per question: wins, losses, ties, n, win_rate, lower, upper, p_value, decisive, raters, prompts,
    sequential_evidence, checks, passed, reason; plus context (rule, study plan, synthetic)."""


def sequential_evidence(wins: int, losses: int, rule: PromotionConfig) -> float:
    """Mixture likelihood ratio of `wins` : `losses` decisive votes against a 50% win rate."""
    return float(math.exp(min(mixture_log_evidence(wins, losses, rule.alternatives), 700.0)))


def study_plan(rule: PromotionConfig) -> dict[str, float]:
    """Decisive votes (and votes, with the expected tie share) the study needs at the design win rate."""
    decisive = sequential_votes_needed(rule.design_win_rate, rule.alpha, rule.design_power, rule.alternatives)
    fixed = one_sided_votes_needed(rule.design_win_rate, rule.alpha, rule.design_power)
    return {
        "design_win_rate": rule.design_win_rate,
        "design_power": rule.design_power,
        "decisive_votes_sequential": decisive,
        "decisive_votes_fixed_sample": fixed,
        "votes_per_pair": math.ceil(decisive / (1.0 - rule.expected_tie_share)),
    }


def question_checks(row: dict[str, Any], rule: PromotionConfig, bound: float) -> dict[str, bool]:
    """Each promotion check of one question's row (`AnalysisResult.win_rate` seen from the challenger)."""
    return {
        "decisive_votes": row["decisive"] >= rule.min_decisive_votes,
        "raters": row["raters"] >= rule.min_raters,
        "prompts": row["prompts"] >= rule.min_prompts,
        "sequential": sequential_evidence(row["wins"], row["losses"], rule) >= 1.0 / rule.alpha,
        "clustered_bound": row["lower"] > bound,
    }


def _failure(check: str, row: dict[str, Any], rule: PromotionConfig, bound: float) -> str:
    return {
        "decisive_votes": f"{row['decisive']} decisive votes < {rule.min_decisive_votes}",
        "raters": f"{row['raters']} distinct raters < {rule.min_raters}",
        "prompts": f"{row['prompts']} distinct prompts < {rule.min_prompts}",
        "sequential": (
            f"sequential evidence {sequential_evidence(row['wins'], row['losses'], rule):.3g} < "
            f"{1.0 / rule.alpha:.3g} ({row['wins']}:{row['losses']} decisive)"
        ),
        "clustered_bound": f"lower bound {row['lower']:.3f} <= {bound} (win rate {row['win_rate']:.3f})",
    }[check]


def _question_evidence(
    result: AnalysisResult,
    challenger: str,
    champion: str,
    question: str,
    bound: float,
    rule: PromotionConfig,
) -> dict[str, Any]:
    if question not in result.questions:
        return {"passed": False, "reason": f"question {question!r} has no analysed votes"}
    row = result.win_rate(challenger, champion, question)
    if row is None:
        return {"passed": False, "reason": f"no votes compare {challenger!r} with {champion!r}"}
    checks = question_checks(row, rule, bound)
    failed = [_failure(name, row, rule, bound) for name, ok in checks.items() if not ok]
    passed = not failed
    reason = (
        f"{row['wins']}:{row['losses']} decisive from {row['raters']} raters on {row['prompts']} prompts; "
        f"sequential evidence >= {1.0 / rule.alpha:.3g}; lower bound {row['lower']:.3f} > {bound}"
        if passed
        else "; ".join(failed)
    )
    return {
        **{k: v for k, v in row.items() if k not in ("model", "opponent")},
        "sequential_evidence": sequential_evidence(row["wins"], row["losses"], rule),
        "checks": checks,
        "passed": passed,
        "reason": reason,
    }


def decide_promotion(
    result: AnalysisResult,
    challenger: str,
    champion: str,
    questions: Sequence[str],
    min_lower_bound: float = 0.5,
    *,
    allow_synthetic: bool = False,
    rule: PromotionConfig | None = None,
) -> PromotionDecision:
    """Promote `challenger` only if it beats `champion` on every question in `questions` (see module doc)."""
    rule = rule or PromotionConfig()
    if not questions:
        raise InputError("decide_promotion needs at least one question (e.g. ['visual_quality'])")
    if challenger == champion:
        raise InputError(f"challenger and champion are the same model {challenger!r}; pick two models")
    if not 0.0 <= min_lower_bound < 1.0:
        raise InputError(f"min_lower_bound={min_lower_bound} must be in [0, 1) (0.5 = significantly better)")
    per_question = {
        q: _question_evidence(result, challenger, champion, q, min_lower_bound, rule) for q in questions
    }
    blocked_by_synthetic = result.synthetic and not allow_synthetic
    promote = all(e["passed"] for e in per_question.values()) and not blocked_by_synthetic
    evidence = {
        "challenger": challenger,
        "champion": champion,
        "min_lower_bound": min_lower_bound,
        "synthetic": result.synthetic,
        "blocked_by_synthetic": blocked_by_synthetic,
        "confidence": result.config.get("confidence"),
        "cluster": result.config.get("cluster"),
        "rule": rule.to_dict(),
        "study_plan": study_plan(rule),
        "excluded_raters": list(result.excluded_raters),
        "questions": per_question,
    }
    return PromotionDecision(promote=promote, evidence=evidence)
