"""One config for an evaluation run: samples -> study -> votes -> analysis -> promotion decision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from svd_core.config import StageConfig
from svd_core.evaluation.eval_config import AnalysisConfig, StudyConfig, TaskKind
from svd_core.evaluation.sampling import SamplingConfig


class SyntheticRaterConfig(StageConfig):
    """The automatic rater used without humans (demo, CI); its votes are always marked synthetic."""

    enabled: bool = False
    """Rate with the synthetic rater instead of waiting for human votes."""
    proxy: Literal["sharpness", "temporal_consistency"] = "temporal_consistency"
    """Measurable frame proxy the rater prefers (svd_core.evaluation.synthetic)."""
    noise: float = Field(0.5, ge=0)
    """Per-judgement noise in standard deviations of the proxy."""
    raters: int = Field(3, ge=1)
    """Synthetic raters (each votes once per task)."""
    seed: int = 0
    """Seed of the rater noise."""


class EvaluateConfig(StageConfig):
    """`svd eval run` / `svd eval promote` and the `evaluate_models` / `promote_challenger` flows."""

    task: TaskKind = "image-to-video"
    """image-to-video (question: overall) or text-to-video (prompt alignment, visual quality)."""
    eval_set: str | None = None
    """Eval set file or folder; null uses the set shipped for the task."""
    sampling: SamplingConfig = SamplingConfig()
    """How samples are generated."""
    study: StudyConfig = StudyConfig(task="image-to-video")
    """Pairs, raters, gold checks."""
    analysis: AnalysisConfig = AnalysisConfig()
    """Bradley-Terry, intervals, rater screening."""
    synthetic: SyntheticRaterConfig = SyntheticRaterConfig()
    """Automatic rater (off by default: humans rate through `svd eval serve`)."""
    promotion_questions: list[str] | None = None
    """Questions the challenger must win; null: the study's questions."""
    min_lower_bound: float = Field(0.5, ge=0.0, lt=1.0)
    """Promote only if the lower confidence bound of the challenger's win rate exceeds this."""
    allow_synthetic_promotion: bool = False
    """Let synthetic votes move the champion alias (demo only; real promotions need humans)."""
    experiment: str = "evaluation"
    """Tracking experiment of the studies."""

    @model_validator(mode="before")
    @classmethod
    def _study_task_follows_task(cls, data: Any) -> Any:
        # `study.task` defaults to the top-level task, so `study: {axes: ...}` alone is valid.
        if isinstance(data, dict) and isinstance(data.get("study"), dict) and "task" not in data["study"]:
            return {**data, "study": {**data["study"], "task": data.get("task", "image-to-video")}}
        return data

    @model_validator(mode="after")
    def _task_matches(self) -> EvaluateConfig:
        if self.study.task != self.task:
            raise ValueError(f"study.task ({self.study.task}) must equal task ({self.task})")
        return self

    def questions(self) -> list[str]:
        return list(self.promotion_questions or self.study.resolved_questions())
