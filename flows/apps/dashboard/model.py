"""The dashboard's plain data model: what `collect` reads from MLflow and the dataset tables, and `render`
turns into a site. Plain dataclasses, no MLflow objects, so rendering is testable without a store.

Every number here was read from a run, a table or the registry; a value that does not exist is None (or
an empty list) and the page says so, it is never filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEADERBOARD_COLUMNS = ("model", "rating", "lower", "upper", "n_votes")


@dataclass
class Histogram:
    """Binned values of one score column of a table (counts over `edges`, len(edges) = len(counts) + 1)."""

    column: str
    edges: list[float]
    counts: list[int]
    values: int
    """Non-null values binned."""
    nulls: int


@dataclass
class ScoreColumn:
    """One score column: its histogram before filtering, after (if known), and the filter's bounds."""

    column: str
    before: Histogram | None
    """None when every value is null: the scorer was not configured for this build."""
    after: Histogram | None = None
    after_name: str = ""
    """Name of the filtered dataset `after` describes (e.g. LVD-F)."""
    threshold_min: float | None = None
    threshold_max: float | None = None


@dataclass
class DatasetVersion:
    """One dataset published by a build (LVD-F, LVD-10M, ...)."""

    name: str
    version: str
    uri: str
    rows: int | None
    gx_success: bool | None
    """None when the build recorded no validation result."""
    funnel: dict[str, Any] | None = None
    """`Funnel.metrics` of a filtered dataset (None for unfiltered subsets)."""
    validation: dict[str, Any] | None = None
    """`ValidationReport.to_dict()`: success, evaluated, failed expectations, docs_index."""


@dataclass
class DatasetBuild:
    """One `svd data build` run (tag svd.kind=dataset)."""

    run_id: str
    run_name: str
    started: str
    data_dvc_md5: str
    lvd: dict[str, float]
    """lvd.videos / lvd.clips / lvd.hours / lvd.quarantined metrics (prefix stripped)."""
    lvd_uri: str
    datasets: list[DatasetVersion]
    scores: list[ScoreColumn] = field(default_factory=list)
    """Score histograms; only filled for the newest build (reading tables is the expensive part)."""
    scores_note: str = ""
    """Why there are no histograms (table unreadable, older build), shown instead of them."""
    data_docs: list[str] = field(default_factory=list)
    """Site-relative links to the GX Data Docs pages copied from the run's `data_docs/` artifacts."""


@dataclass
class Curve:
    steps: list[int]
    values: list[float]


@dataclass
class TrainingRun:
    """One training run (tag svd.kind=train) and its step metrics."""

    run_id: str
    run_name: str
    stage: str
    status: str
    started: str
    registered_model: str
    curves: dict[str, Curve]
    """Metric key (loss, lr, grad_norm, samples_per_s, step_time_s) -> history."""
    config_hash: str = ""


@dataclass
class ModelVersion:
    name: str
    version: str
    run_id: str
    created: str
    aliases: list[str]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def parent(self) -> str:
        return self.tags.get("svd.parent_model_version", "")

    @property
    def promotion(self) -> dict[str, str]:
        prefix = "svd.promotion."
        return {k[len(prefix) :]: v for k, v in sorted(self.tags.items()) if k.startswith(prefix)}


@dataclass
class RegisteredModel:
    name: str
    versions: list[ModelVersion]
    """Newest first."""
    aliases: dict[str, str]
    """Alias (champion, previous) -> version."""


@dataclass
class Leaderboard:
    """Rows of a leaderboard.csv (model, rating, lower, upper, n_votes); lower/upper may be None."""

    title: str
    rows: list[dict[str, Any]]


@dataclass
class Study:
    """A preference study (svd.kind=study) or an ablation (svd.kind=ablation) and what it logged."""

    kind: str
    run_id: str
    run_name: str
    started: str
    synthetic: bool
    leaderboards: list[Leaderboard]
    summary: dict[str, Any] | None = None
    """summary.json (studies) or ablation_report.json (ablations), as logged."""
    images: list[str] = field(default_factory=list)
    """Site-relative paths of PNG plots the run logged (copied into the site)."""
    notes: list[str] = field(default_factory=list)
    """Problems reading this run's artifacts, shown beside it."""


@dataclass
class Dashboard:
    generated_at: str
    tracking_uri: str
    builds: list[DatasetBuild]
    training: list[TrainingRun]
    models: list[RegisteredModel]
    studies: list[Study]
    ablations: list[Study]
    problems: list[str] = field(default_factory=list)
    """Things that could not be read (shown at the top of the page, never silently dropped)."""
