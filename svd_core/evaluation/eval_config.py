"""Configs of the human-evaluation stages: study design and vote analysis (defaults from the SVD paper)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from svd_core.config import StageConfig
from svd_core.evaluation.schema import QUESTIONS

TaskKind = Literal["text-to-video", "image-to-video"]
DEFAULT_QUESTIONS: dict[str, list[str]] = {
    "text-to-video": ["prompt_alignment", "visual_quality"],
    "image-to-video": ["overall"],
}


def _check_questions(questions: list[str] | None, field: str) -> None:
    if questions is None:
        return
    if not questions:
        raise ValueError(f"{field} is empty; list at least one of {list(QUESTIONS)} or leave it null")
    unknown = [q for q in questions if q not in QUESTIONS]
    if unknown:
        raise ValueError(f"{field}: unknown question(s) {unknown}; use {list(QUESTIONS)}")
    if len(set(questions)) != len(questions):
        raise ValueError(f"{field} lists a question twice: {questions}")


class StudyConfig(StageConfig):
    """Pairwise preference study: which pairs, which questions, how many raters, how many gold checks."""

    study_id: str = Field(default="study", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    """Name of the study; prefix of every task id and the `study_id` column of its votes."""
    task: TaskKind = "text-to-video"
    """Kind of model under test; picks the default questions and the default eval set."""
    questions: list[str] | None = None
    """Questions asked per pair; null: the paper's (prompt_alignment + visual_quality for text-to-video,
    overall for image-to-video)."""
    eval_set: str | None = None
    """URI of an eval set (JSON/YAML file or folder); null: the default set shipped for `task`."""
    axes: dict[str, list[str]] = Field(default_factory=dict)
    """Ablation axes: axis name -> models compared in a full round-robin (the paper's design). Empty: one
    axis holding every model that has samples."""
    raters_per_pair: int = Field(default=3, ge=1)
    """Raters who judge each pair on each prompt and question (the paper: about 3)."""
    num_raters: int = Field(default=6, ge=1)
    """Rater slots in the assignment (rater_0 ... rater_{n-1}); the rating app maps them to people."""
    gold_rate: float = Field(default=0.1, ge=0.0, lt=0.5)
    """Share of each rater's tasks that are attention checks (a sample vs a visibly degraded copy)."""
    gold_dir: str | None = None
    """Where the degraded gold copies are written; null: next to each sample as <name>.degraded.mp4."""
    seed: int = Field(default=0, ge=0)
    """Seed of every random choice (pair sides, gold picks, rater queues): same seed, same design."""

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        _check_questions(self.questions, "questions")
        if self.num_raters < self.raters_per_pair:
            raise ValueError(
                f"num_raters={self.num_raters} < raters_per_pair={self.raters_per_pair}: a rater sees a task "
                "at most once, so raise num_raters or lower raters_per_pair"
            )
        for axis, models in self.axes.items():
            if len(models) < 2 or len(set(models)) != len(models):
                raise ValueError(f"axes.{axis} must list at least two distinct models, got {models}")
        return self

    def resolved_questions(self) -> list[str]:
        return list(self.questions) if self.questions else list(DEFAULT_QUESTIONS[self.task])


class AnalysisConfig(StageConfig):
    """Vote analysis: Bradley-Terry with bootstrap intervals, pairwise tests, rater checks, power."""

    questions: list[str] | None = None
    """Questions to analyse; null: every question present in the votes."""
    bootstrap_rounds: int = Field(default=1000, ge=0)
    """Bootstrap rounds for the rating intervals (public arenas: 100-1000); 0 skips intervals."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Coverage of every interval (bootstrap rating intervals and Wilson win-rate intervals)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the bootstrap draws and of the paper-style Elo orderings."""
    elo_scale: float = Field(default=400.0, gt=0)
    """Elo points per tenfold odds (the chess/arena convention)."""
    elo_anchor: float = 1000.0
    """Mean rating of the models on the Elo scale (the paper starts every model at 1000)."""
    paper_elo_orderings: int = Field(default=1000, ge=0)
    """Random vote orderings averaged by the paper's online Elo (K=1, start 1000); 0 skips that column."""
    min_gold_accuracy: float = Field(default=0.8, ge=0.0, le=1.0)
    """Raters whose accuracy on gold pairs is below this are excluded before the analysis."""
    min_gold_votes: int = Field(default=3, ge=1)
    """Gold votes a rater needs before the accuracy check applies (fewer: the rater is 'unchecked')."""
    exclude_unchecked_raters: bool = False
    """Also exclude raters with fewer than `min_gold_votes` gold votes."""
    allow_synthetic_mix: bool = False
    """Analyse human and synthetic votes together; otherwise a mix is refused (never mixed silently)."""
    power_alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of the pairwise binomial tests and of the votes-needed estimate."""
    power_target: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Power the votes-needed estimate aims for (svd-facts: ~800 decisive votes detect 55%)."""

    @model_validator(mode="after")
    def _check(self) -> AnalysisConfig:
        _check_questions(self.questions, "questions")
        return self
