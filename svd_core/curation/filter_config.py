"""Configs of the LVD -> LVD-F stage: filters, the LVD-10M subset and the validation gate.

Defaults are the thresholds the SVD paper chose by human-preference ablations on LVD-10M (section 3.1,
appendix E.2.2): drop the 25% most static clips (flow), the 25% with most text area (OCR), the bottom 25%
by aesthetics and the bottom 50% by CLIP score. Thresholds are percentiles of the LVD distribution by
default; each can instead be an absolute number (`{abs: 0.07}` on `text_area_ratio` is appendix C's rule:
drop clips whose text boxes cover more than 7% of the frame). Percentiles resolve to absolute numbers at
run time and those numbers are recorded in the funnel statistics, so a run can be reproduced exactly.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from svd_core.config import StageConfig
from svd_core.curation.schema import LVD_SCHEMA, SCORE_COLUMNS

FILTER_NAMES: tuple[str, ...] = ("duration", "caption", *SCORE_COLUMNS)
"""Every filter the stage knows, in the default funnel order."""

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LVD_10M_FRACTION = round(9.8 / 577, 4)
"""LVD-10M's share of LVD in the paper (9.8M of 577M clips, table 1)."""


def _check_dataset_name(value: str) -> str:
    if not _NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a file-safe dataset name (letters, digits, '_', '-', '.')")
    return value


class Threshold(StageConfig):
    """One bound of a score filter: an absolute value or a percentile of the LVD distribution."""

    abs: float | None = None
    """Absolute bound in the score's own units (e.g. 0.07 for 7% text area)."""
    pct: float | None = Field(default=None, ge=0.0, le=100.0)
    """Percentile (0-100) of the non-null scores of the filtered table; resolved to a number at run time."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        if (self.abs is None) == (self.pct is None):
            raise ValueError("give exactly one of abs (a number) or pct (a percentile 0-100)")
        return self

    def describe(self) -> str:
        return f"abs {self.abs:g}" if self.abs is not None else f"pct {self.pct:g}"


class ScoreFilter(StageConfig):
    """Keep rows whose score lies in [min, max] (inclusive); either bound may be left out."""

    enabled: bool = True
    """Set false to skip this score (required when its scorer was not configured and the column is null)."""
    min: Threshold | None = None
    """Lower bound: rows below it are dropped."""
    max: Threshold | None = None
    """Upper bound: rows above it are dropped."""

    @model_validator(mode="after")
    def _bounds_make_sense(self) -> ScoreFilter:
        if self.enabled and self.min is None and self.max is None:
            raise ValueError("an enabled score filter needs min and/or max (or set enabled: false)")
        lo, hi = self.min, self.max
        if lo is None or hi is None:
            return self
        # Mixed abs/pct bounds can only be compared once resolved (filters.resolve_score_threshold).
        crossed_abs = lo.abs is not None and hi.abs is not None and lo.abs > hi.abs
        crossed_pct = lo.pct is not None and hi.pct is not None and lo.pct > hi.pct
        if crossed_abs or crossed_pct:
            raise ValueError(f"min ({lo.describe()}) is greater than max ({hi.describe()})")
        return self


_PAPER_SCORE_FILTERS: dict[str, dict[str, Any]] = {
    "flow_score": {"min": {"pct": 25.0}},  # drop the 25% most static clips
    "text_area_ratio": {"max": {"pct": 75.0}},  # drop the 25% with most text (appendix C alt: abs 0.07)
    "aesthetic_score": {"min": {"pct": 25.0}},  # drop the bottom 25% by aesthetics
    "clip_score": {"min": {"pct": 50.0}},  # drop the bottom 50% by caption-frame similarity
}


class ScoreFilters(StageConfig):
    """One filter per LVD score column. A partial entry is merged onto the paper's default for that score
    (e.g. `clip_score: {enabled: false}` keeps the default bound but skips it); `min: null` removes a bound."""

    flow_score: ScoreFilter = ScoreFilter.model_validate(_PAPER_SCORE_FILTERS["flow_score"])
    """Motion (mean Farneback magnitude): the paper drops the 25% most static clips."""
    text_area_ratio: ScoreFilter = ScoreFilter.model_validate(_PAPER_SCORE_FILTERS["text_area_ratio"])
    """OCR text area: the paper drops the 25% of clips with most text (appendix C: absolute 7% alternative)."""
    aesthetic_score: ScoreFilter = ScoreFilter.model_validate(_PAPER_SCORE_FILTERS["aesthetic_score"])
    """LAION aesthetic score: the paper drops the bottom 25%."""
    clip_score: ScoreFilter = ScoreFilter.model_validate(_PAPER_SCORE_FILTERS["clip_score"])
    """CLIP caption-frame similarity: the paper drops the bottom 50%."""

    @model_validator(mode="before")
    @classmethod
    def _merge_onto_paper_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(SCORE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; filterable scores are {SCORE_COLUMNS}")
        merged: dict[str, Any] = {}
        for name, given in data.items():
            # Merge one level deep only: a bound is replaced as a whole, so {max: {abs: 0.07}} does not
            # inherit the default's pct and trip the exactly-one check.
            merged[name] = {**_PAPER_SCORE_FILTERS[name], **given} if isinstance(given, dict) else given
        return merged

    def items(self) -> list[tuple[str, ScoreFilter]]:
        return [(name, getattr(self, name)) for name in SCORE_COLUMNS]


class CaptionFilter(StageConfig):
    """Caption rules: non-empty text, a minimum word count, an allow-list of caption sources."""

    enabled: bool = True
    """Set false to skip caption rules (required when captioning was not configured and captions are null)."""
    non_empty: bool = True
    """Drop rows whose caption is null or only whitespace."""
    min_words: int = Field(default=0, ge=0)
    """Drop rows whose caption has fewer whitespace-separated words (0 = no minimum)."""
    allowed_sources: tuple[str, ...] | None = None
    """Keep only these `caption_source` values (e.g. ["coca+videoblip+llm"]); null = any source."""

    @field_validator("allowed_sources")
    @classmethod
    def _non_empty_list(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty allow-list would drop every row; use null to allow any source")
        return value

    @property
    def active(self) -> bool:
        return self.enabled and (self.non_empty or self.min_words > 0 or self.allowed_sources is not None)


class FilterConfig(StageConfig):
    """LVD -> LVD-F: which clips to keep, and the order in which the funnel reports each filter."""

    name: str = "lvd_f"
    """Name of the published filtered table (`OUT/<name>/...`)."""
    scores: ScoreFilters = ScoreFilters()
    """Per-score thresholds (defaults: the paper's choices)."""
    min_duration_s: float | None = Field(default=None, ge=0.0)
    """Drop clips shorter than this many seconds (null = no minimum; the paper sets none)."""
    max_duration_s: float | None = Field(default=None, gt=0.0)
    """Drop clips longer than this many seconds (null = no maximum; the paper sets none)."""
    caption: CaptionFilter = CaptionFilter()
    """Caption rules."""
    drop_missing_scores: bool = True
    """A row whose score is null fails an enabled filter on that score (true), or passes it (false)."""
    order: tuple[str, ...] = FILTER_NAMES
    """Order of the filters in the cumulative funnel (a permutation of all filter names)."""
    quantiles: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 95.0)
    """Score percentiles (0-100) reported before and after filtering."""

    @field_validator("name")
    @classmethod
    def _file_safe_name(cls, value: str) -> str:
        return _check_dataset_name(value)

    @field_validator("order")
    @classmethod
    def _order_is_permutation(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if sorted(value) != sorted(FILTER_NAMES):
            raise ValueError(f"must list each of {list(FILTER_NAMES)} exactly once, got {list(value)}")
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles_are_percent(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [q for q in value if not 0.0 <= q <= 100.0]
        if bad:
            raise ValueError(f"percentiles must lie in 0-100, got {bad}")
        return value

    @model_validator(mode="after")
    def _duration_bounds(self) -> FilterConfig:
        lo, hi = self.min_duration_s, self.max_duration_s
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_duration_s ({lo}) is greater than max_duration_s ({hi})")
        return self

    @property
    def duration_active(self) -> bool:
        return self.min_duration_s is not None or self.max_duration_s is not None

    def is_active(self, filter_name: str) -> bool:
        """Whether `filter_name` (one of FILTER_NAMES) removes anything at all under this config."""
        if filter_name == "duration":
            return self.duration_active
        if filter_name == "caption":
            return self.caption.active
        return getattr(self.scores, filter_name).enabled


class SubsetConfig(StageConfig):
    """LVD-10M: a seeded random subset of LVD, and LVD-10M-F: the same filters applied to it."""

    name: str = "lvd_10m"
    """Name of the published random subset."""
    filtered_name: str = "lvd_10m_f"
    """Name of the published filtered subset."""
    seed: int = 0
    """Selection key: the same seed selects the same clips, whatever the row order of LVD."""
    size: int | None = Field(default=None, ge=1)
    """Number of clips in the subset (give this or `fraction`)."""
    fraction: float | None = Field(default=LVD_10M_FRACTION, gt=0.0, le=1.0)
    """Share of LVD in the subset (default 0.017: LVD-10M is 9.8M of LVD's 577M clips)."""
    thresholds_from: Literal["lvd", "subset"] = "lvd"
    """Resolve percentile thresholds on full LVD (so LVD-10M-F is a subset of LVD-F) or on the subset."""

    @field_validator("name", "filtered_name")
    @classmethod
    def _file_safe_names(cls, value: str) -> str:
        return _check_dataset_name(value)

    @model_validator(mode="before")
    @classmethod
    def _size_replaces_default_fraction(cls, data: Any) -> Any:
        # Giving only `size` (e.g. an override size=1000) means "not the default fraction".
        if isinstance(data, dict) and data.get("size") is not None and "fraction" not in data:
            return {**data, "fraction": None}
        return data

    @model_validator(mode="after")
    def _size_or_fraction(self) -> SubsetConfig:
        if (self.size is None) == (self.fraction is None):
            raise ValueError("give exactly one of size (clips) or fraction (0-1); set the other to null")
        if self.name == self.filtered_name:
            raise ValueError(f"name and filtered_name must differ (both are {self.name!r})")
        return self


REQUIRED_LVD_COLUMNS: tuple[str, ...] = tuple(f.name for f in LVD_SCHEMA if not f.nullable)
"""LVD columns that must never be null."""


class ScoreBounds(StageConfig):
    """Expected distribution of one score in a published table (a drift / broken-scorer alarm)."""

    mean: tuple[float | None, float | None] | None = None
    """[low, high] for the column mean (null on either side = unbounded)."""
    quantiles: dict[int, tuple[float | None, float | None]] = Field(default_factory=dict)
    """Percentile (0-100) -> [low, high] for that quantile, e.g. {50: [0.2, 0.4]}."""

    @field_validator("quantiles")
    @classmethod
    def _percent_keys(
        cls, value: dict[int, tuple[float | None, float | None]]
    ) -> dict[int, tuple[float | None, float | None]]:
        bad = [q for q in value if not 0 <= q <= 100]
        if bad:
            raise ValueError(f"percentile keys must lie in 0-100, got {bad}")
        return value


class ValidationConfig(StageConfig):
    """The Great Expectations gate a table must pass before it is published."""

    required_columns: tuple[str, ...] = REQUIRED_LVD_COLUMNS
    """Columns that must exist and contain no nulls."""
    unique_columns: tuple[str, ...] = ("clip_id",)
    """Columns whose values must be unique."""
    positive_columns: tuple[str, ...] = ("duration_s", "fps", "num_frames", "width", "height")
    """Columns whose values must be strictly positive."""
    min_rows: int = Field(default=1, ge=1)
    """Minimum number of rows in a published table."""
    check_score_ranges: bool = True
    """Expect every non-null score inside its valid range (svd_core.curation.schema.SCORE_RANGES)."""
    score_bounds: dict[str, ScoreBounds] = Field(default_factory=dict)
    """Per-score distribution bounds (mean / quantiles) on the published table."""
    kept_fraction: tuple[float, float] = (0.05, 0.6)
    """Band for the share of rows a filter run keeps (paper: LVD-F kept 152M of 577M clips, 0.26)."""

    @field_validator("score_bounds")
    @classmethod
    def _known_scores(cls, value: dict[str, ScoreBounds]) -> dict[str, ScoreBounds]:
        unknown = sorted(set(value) - set(SCORE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; scores are {SCORE_COLUMNS}")
        return value

    @field_validator("kept_fraction")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"must be [low, high] with 0 <= low <= high <= 1, got {list(value)}")
        return value
