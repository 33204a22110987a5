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
    experiment_id: str = ""
    prefect_flow_run: str = ""


@dataclass
class Curve:
    """A metric's full step history as MLflow holds it (never thinned here: `curves.py` downsamples
    only what it draws)."""

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
    experiment_id: str = ""
    prefect_flow_run: str = ""
    """Id of the Prefect flow run that logged this run (tag `svd.prefect_flow_run_id`), when recorded."""


@dataclass
class Video:
    """A video copied into the site (`media/...`) and where it came from."""

    src: str
    """Site-relative path of the copy."""
    uri: str
    """Where the platform stored it (file://, s3://, a local path)."""
    caption: str = ""


@dataclass
class Sample:
    """One evaluation sample of a registered version (written by `svd eval run` / `promote`)."""

    prompt_id: str
    prompt: str
    video: Video
    eval_set: str = ""


@dataclass
class ModelVersion:
    name: str
    version: str
    run_id: str
    created: str
    aliases: list[str]
    tags: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    samples_total: int = 0
    """Samples found for this version (more than `samples` when the page shows only some)."""
    samples_where: str = ""
    """Folder the samples were found under."""

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
class Pair:
    """One side-by-side task of a study as raters saw it, with the votes it received."""

    task_id: str
    question: str
    prompt_id: str
    prompt: str
    left_model: str
    right_model: str
    left: Video | None
    right: Video | None
    votes: dict[str, int]
    """Outcome as shown -> count: left, right, tie, both_bad, broken."""


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
    experiment_id: str = ""
    pairs: list[Pair] = field(default_factory=list)
    pairs_total: int = 0
    """Non-gold tasks in the design (more than `pairs` when the page shows only some)."""
    gold_pairs: int = 0
    """Attention-check tasks (real sample vs degraded copy), counted but not shown."""
    prefect_flow_run: str = ""


@dataclass
class FlowRun:
    """A Prefect flow run (read from the Prefect API when a server is configured)."""

    id: str
    name: str
    flow_id: str
    flow_name: str
    state: str
    """State name as Prefect shows it: Completed, Failed, Running, ..."""
    state_type: str
    started: str
    duration_s: float | None
    deployment_id: str = ""


@dataclass
class UiLinks:
    """Where the MLflow and Prefect UIs are, or the command that starts one (never a dead link)."""

    mlflow_ui: str = ""
    """Base URL of the MLflow UI (links are `<base>/#/...`); empty when none is known."""
    mlflow_command: str = ""
    """How to start an MLflow UI on this store, shown when `mlflow_ui` is empty."""
    prefect_ui: str = ""
    """Base URL of the Prefect UI (links are `<base>/runs/flow-run/<id>`); empty when none is known."""
    prefect_command: str = ""
    """How to start a Prefect UI on the embedded database, shown when `prefect_ui` is empty."""
    rebuild_hint: str = ""
    """The `svd dashboard` call that makes the links once the UIs run."""


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
    links: UiLinks = field(default_factory=UiLinks)
    flow_runs: list[FlowRun] | None = None
    """Recent Prefect flow runs; None when no Prefect API was read (no server configured)."""
    training_total: int = 0
    """Training runs in the store (more than `training` when only the newest are shown)."""
