"""Promotion decision from an analysis: pure logic (moving the registry alias is the caller's job).

A challenger is promoted over the champion only if, on every configured question, the lower end of the
Wilson interval of its win rate against the champion (ties count half) is above `min_lower_bound`: with
the default 0.5 that means "significantly preferred", not merely "ahead by chance". Synthetic votes never
promote a model unless the caller allows it explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from svd_core.errors import InputError
from svd_core.evaluation.analyze import AnalysisResult


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    """Per question: wins, losses, ties, n, win_rate, lower, upper, p_value, passed, reason; plus context."""


def _question_evidence(
    result: AnalysisResult, challenger: str, champion: str, question: str, bound: float
) -> dict[str, Any]:
    if question not in result.questions:
        return {"passed": False, "reason": f"question {question!r} has no analysed votes"}
    row = result.win_rate(challenger, champion, question)
    if row is None:
        return {"passed": False, "reason": f"no votes compare {challenger!r} with {champion!r}"}
    passed = row["lower"] > bound
    reason = (
        f"lower bound {row['lower']:.3f} > {bound}"
        if passed
        else f"lower bound {row['lower']:.3f} <= {bound} (win rate {row['win_rate']:.3f} over {row['n']} votes)"
    )
    return {
        **{k: v for k, v in row.items() if k not in ("model", "opponent")},
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
) -> PromotionDecision:
    """Promote `challenger` only if it beats `champion` on every question in `questions` (see module doc)."""
    if not questions:
        raise InputError("decide_promotion needs at least one question (e.g. ['visual_quality'])")
    if challenger == champion:
        raise InputError(f"challenger and champion are the same model {challenger!r}; pick two models")
    if not 0.0 <= min_lower_bound < 1.0:
        raise InputError(f"min_lower_bound={min_lower_bound} must be in [0, 1) (0.5 = significantly better)")
    per_question = {
        q: _question_evidence(result, challenger, champion, q, min_lower_bound) for q in questions
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
        "excluded_raters": list(result.excluded_raters),
        "questions": per_question,
    }
    return PromotionDecision(promote=promote, evidence=evidence)
