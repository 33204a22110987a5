"""Ablations as in the SVD paper (section 3, appendix E): train variants, rate them in one preference study.

A variant is a dataset variant x an initialisation x a stage-II training config:
- dataset: a table as given (LVD, LVD-10M, a published LVD-F folder), or that table filtered, either by
  dropping the bottom X% of one score (the paper's threshold sweeps: 12.5 / 25 / 50%) or by a full LVD-F
  filter config (curated vs uncurated);
- init: `image_pretrained` (stage I, then stage II inflated from it, as the paper starts from an image
  model) or `scratch` (stage II from random weights);
- config: a base stage-II YAML plus dotted overrides (spec-wide, then per variant).
Variants are listed explicitly, or as a `grid` expanded into every combination (in the listed order, so
the same spec always expands to the same variants).

This module is the library half: the spec, its expansion into runnable stage configs, the dataset
materialisation and the report files. `flows.ablation_flow` trains, samples, rates and tracks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from svd_core import io as svd_io
from svd_core.config import StageConfig, apply_overrides, parse_override, read_yaml, validate_config
from svd_core.curation.filter_config import FilterConfig
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.errors import ConfigError
from svd_core.evaluation.analyze import QuestionResult, jsonable
from svd_core.evaluation.evaluate_config import EvaluateConfig
from svd_core.training.stage_config import TrainStageConfig

InitKind = Literal["image_pretrained", "scratch"]
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
"""Spec and variant names: lower case (sample folders and model names must not differ by case only)."""
IMAGE_STAGE_SUFFIX = "image"
"""The shared stage-I model is `ablation-<spec>-image`, so no variant may be called `image`."""
RESERVED_KEYS = ("stage", "init.kind", "init.image_unet_uri", "init.pipeline_uri", "data.table_uri")
"""Stage-II keys the runner sets (from `init` and `dataset`); a variant override of them is refused."""


def _check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-48 lower-case letters, digits, '_', '.' or '-' (starting with a "
            "letter or digit); it becomes part of registered model names"
        )
    return value


def _check_overrides(values: list[str]) -> list[str]:
    for text in values:
        parse_override(text)  # raises ConfigError naming the bad override
    return values


class DatasetVariant(StageConfig):
    """The training table of a variant: a table as given, or that table filtered."""

    table_uri: str | None = None
    """LVD(-F) Parquet table or published dataset folder; null: the spec's `data`."""
    score: str | None = None
    """Score column whose bottom `drop_bottom_pct` percent is dropped (one of the LVD score columns)."""
    drop_bottom_pct: float | None = Field(None, gt=0.0, lt=100.0)
    """Drop clips below this percentile of `score` on the table (paper sweeps: 12.5, 25, 50)."""
    filter: FilterConfig | None = None
    """A full LVD -> LVD-F filter config instead (e.g. the paper's curated LVD-F; see configs/data/filter.yaml)."""

    @field_validator("score")
    @classmethod
    def _known_score(cls, value: str | None) -> str | None:
        if value is not None and value not in SCORE_COLUMNS:
            raise ValueError(f"unknown score {value!r}; use one of {SCORE_COLUMNS}")
        return value

    @model_validator(mode="after")
    def _one_way_to_filter(self) -> DatasetVariant:
        if (self.score is None) != (self.drop_bottom_pct is None):
            raise ValueError("score and drop_bottom_pct go together: give both (or neither)")
        if self.filter is not None and self.score is not None:
            raise ValueError("give either score + drop_bottom_pct or filter, not both")
        return self

    def filter_config(self, name: str) -> FilterConfig | None:
        """The filter this variant applies (None: the table is used as is)."""
        if self.filter is not None:
            return self.filter.model_copy(update={"name": name})
        if self.score is None:
            return None
        # Only the swept score filters: the other scores (and captions) may be absent from the table.
        scores: dict[str, Any] = {s: {"enabled": False} for s in SCORE_COLUMNS}
        scores[self.score] = {"min": {"pct": self.drop_bottom_pct}, "max": None}
        return FilterConfig.model_validate({"name": name, "scores": scores, "caption": {"enabled": False}})


class VariantSpec(StageConfig):
    """One trained model of the ablation."""

    name: str
    """Variant name (lower case; it becomes the registered model `ablation-<spec>-<name>`)."""
    dataset: DatasetVariant = DatasetVariant()
    """Training table (default: the spec's `data` as is)."""
    init: InitKind = "image_pretrained"
    """image_pretrained: stage II inflated from the shared stage-I model; scratch: random initial weights."""
    overrides: list[str] = Field(default_factory=list)
    """Dotted overrides of the stage-II config for this variant only (e.g. trainer.lr=3e-5)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == IMAGE_STAGE_SUFFIX:
            raise ValueError(f"{value!r} is reserved for the shared stage-I model; pick another name")
        return _check_name(value, "variant name")

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, values: list[str]) -> list[str]:
        return _check_variant_overrides(values)


def _check_variant_overrides(values: list[str]) -> list[str]:
    reserved = [t for t in values if t.partition("=")[0] in RESERVED_KEYS]
    if reserved:
        raise ValueError(
            f"{reserved} set keys the runner owns ({list(RESERVED_KEYS)}); use the variant's init and "
            "dataset fields instead"
        )
    return _check_overrides(values)


class GridSpec(StageConfig):
    """Every combination of datasets x inits x configs, named `<dataset>_<init>_<config>` (a part only when
    its axis has more than one choice)."""

    datasets: dict[str, DatasetVariant] = Field(default_factory=lambda: {"data": DatasetVariant()})
    """Dataset name -> dataset variant."""
    inits: list[InitKind] = Field(default_factory=lambda: ["image_pretrained"])
    """Initialisations to cross with every dataset."""
    configs: dict[str, list[str]] = Field(default_factory=lambda: {"base": []})
    """Config name -> dotted stage-II overrides."""

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        for field in ("datasets", "inits", "configs"):
            if not getattr(self, field):
                raise ValueError(f"grid.{field} is empty; list at least one choice")
        if len(set(self.inits)) != len(self.inits):
            raise ValueError(f"grid.inits lists an init twice: {self.inits}")
        for name in (*self.datasets, *self.configs):
            _check_name(name, "grid name")
        for overrides in self.configs.values():
            _check_variant_overrides(overrides)
        if any(name == IMAGE_STAGE_SUFFIX for name, *_ in self.combinations()):
            raise ValueError(f"grid: a variant would be named {IMAGE_STAGE_SUFFIX!r}, reserved for stage I")
        return self

    def combinations(self) -> list[tuple[str, str, str, str]]:
        """(variant name, dataset, init, config) for every combination, in the listed order."""
        axes = [list(self.datasets), list(self.inits), list(self.configs)]
        shown = [len(axis) > 1 for axis in axes]
        out = []
        for choice in itertools.product(*axes):
            parts = [p for p, keep in zip(choice, shown, strict=True) if keep] or [choice[0]]
            out.append(("_".join(parts), *choice))
        return out

    def expand(self) -> list[VariantSpec]:
        return [
            VariantSpec(name=name, dataset=self.datasets[dataset], init=init, overrides=self.configs[config])
            for name, dataset, init, config in self.combinations()
        ]


class AblationSpec(StageConfig):
    """`svd eval ablate`: variants to train, and the preference study that ranks them."""

    name: str
    """Ablation name: registered models are `ablation-<name>-<variant>`, the study `ablation-<name>-<hash>`."""
    description: str = ""
    """What the ablation asks (shown in the report)."""
    data: str = "data/lvd/lvd.parquet"
    """The LVD table every variant starts from unless it names its own (path, file:// or s3://)."""
    train_config: str = "configs/train/video.yaml"
    """Base stage-II (video) TrainStageConfig YAML of every variant."""
    train_overrides: list[str] = Field(default_factory=list)
    """Dotted overrides applied to every variant's stage-II config (before the variant's own)."""
    image_config: str = "configs/train/image.yaml"
    """Stage-I (image) config of the shared image model that `image_pretrained` variants inflate."""
    image_overrides: list[str] = Field(default_factory=list)
    """Dotted overrides of the stage-I config."""
    image_data: str | None = None
    """Table stage I trains on; null: `data` (one shared image model, as the paper's common SD 2.1 init)."""
    variants: list[VariantSpec] = Field(default_factory=list)
    """Variants listed one by one (run in this order, before the grid's)."""
    grid: GridSpec | None = None
    """Variants as every combination of datasets x inits x configs."""
    evaluation: EvaluateConfig = EvaluateConfig()
    """Sampling, study, analysis and synthetic rater. `study.axes` may group variant names; empty: one axis
    with every variant (a full round-robin, as the paper's studies)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "ablation name")

    @model_validator(mode="before")
    @classmethod
    def _study_task_follows_task(cls, data: Any) -> Any:
        # EvaluateConfig insists study.task == task, and StudyConfig defaults to text-to-video: let a spec
        # that names only `evaluation.task` (or nothing) mean the same task for its study.
        evaluation = data.get("evaluation") if isinstance(data, dict) else None
        if isinstance(evaluation, dict) and isinstance(evaluation.get("study", {}), dict):
            study = evaluation.get("study", {})
            if "task" not in study:
                task = evaluation.get("task", "image-to-video")
                data = {**data, "evaluation": {**evaluation, "study": {**study, "task": task}}}
        return data

    @field_validator("train_overrides", "image_overrides")
    @classmethod
    def _overrides(cls, values: list[str]) -> list[str]:
        return _check_overrides(values)

    @model_validator(mode="after")
    def _check_variants(self) -> AblationSpec:
        names = [v.name for v in self.expanded()]
        if len(names) < 2:
            raise ValueError(
                f"variants: an ablation compares at least two variants, got {len(names)}; list them under "
                "`variants` or describe a `grid`"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variants: names must be unique, {twice} appear more than once")
        for axis, members in self.evaluation.study.axes.items():
            unknown = [m for m in members if m not in names]
            if unknown:
                raise ValueError(
                    f"evaluation.study.axes.{axis}: unknown variant(s) {unknown}; variants: {names}"
                )
        return self

    def expanded(self) -> list[VariantSpec]:
        """Every variant: the listed ones, then the grid's combinations (deterministic order)."""
        return [*self.variants, *(self.grid.expand() if self.grid else [])]

    def model_name(self, variant: str) -> str:
        return f"ablation-{self.name}-{variant}"


@dataclass(frozen=True)
class PlannedVariant:
    """A variant ready to train: its spec and resolved stage-II config (data is set when it is prepared)."""

    spec: VariantSpec
    model_name: str
    train_config: TrainStageConfig

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class AblationPlan:
    spec: AblationSpec
    variants: tuple[PlannedVariant, ...]
    image_config: TrainStageConfig | None
    """Stage I of the shared image model; None when every variant starts from scratch."""

    @property
    def image_model_name(self) -> str:
        return self.spec.model_name(IMAGE_STAGE_SUFFIX)

    @property
    def image_data(self) -> str:
        return self.spec.image_data or self.spec.data


SCRATCH_INIT = ["init.kind=scratch", "init.image_unet_uri=null", "init.pipeline_uri=null"]


def _stage_config(path: str, overrides: list[str], stage: str, where: str) -> TrainStageConfig:
    cfg = validate_config(TrainStageConfig, apply_overrides(read_yaml(path), overrides), f"{path} ({where})")
    if cfg.stage != stage:
        raise ConfigError(
            f"{where}: {path} is a stage-{cfg.stage} config; it must be stage {stage} "
            f"(e.g. configs/train/{stage}.yaml)"
        )
    return cfg


def plan_ablation(spec: AblationSpec) -> AblationPlan:
    """Resolve every variant's stage-II config (and the shared stage-I config when needed)."""
    planned = []
    for variant in spec.expanded():
        init = SCRATCH_INIT if variant.init == "scratch" else []
        overrides = [*spec.train_overrides, *variant.overrides, *init]
        cfg = _stage_config(spec.train_config, overrides, "video", f"variant {variant.name}")
        planned.append(PlannedVariant(variant, spec.model_name(variant.name), cfg))
    needs_image = any(v.spec.init == "image_pretrained" for v in planned)
    image = (
        _stage_config(spec.image_config, spec.image_overrides, "image", "image_config")
        if needs_image
        else None
    )
    return AblationPlan(spec, tuple(planned), image)


# --- datasets ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedDataset:
    """The table a variant trains on and how it was made."""

    table_uri: str
    source_uri: str
    rows: int
    source_rows: int
    thresholds: dict[str, Any]
    """Score -> absolute bounds the filter resolved (empty when unfiltered)."""

    def to_dict(self) -> dict[str, Any]:
        kept = self.rows / self.source_rows if self.source_rows else None
        return {**dataclasses.asdict(self), "kept_fraction": kept}


def prepare_dataset(dataset: DatasetVariant, default_uri: str, out_dir: str, name: str) -> PreparedDataset:
    """The variant's table: the source as is, or filtered and written (atomically) to
    `out_dir/<name>-<sha256 prefix>.parquet`, so a registered model's dataset URI never changes content."""
    import tempfile
    from pathlib import Path

    from svd_core.curation.filters import apply_filters
    from svd_core.curation.publish import read_table, write_table
    from svd_core.data.video_dataset import resolve_table_uri

    # A published folder is pinned to its current version, so the variant trains on fixed bytes.
    source = resolve_table_uri(dataset.table_uri or default_uri)
    table = read_table(source)
    cfg = dataset.filter_config(name)
    if cfg is None:
        return PreparedDataset(source, source, len(table), len(table), {})
    result = apply_filters(table, cfg, source=source)
    with tempfile.TemporaryDirectory(prefix="svd-ablation-") as tmp:
        local = Path(tmp) / "table.parquet"
        digest = write_table(result.kept, str(local))
        out_uri = svd_io.join_uri(out_dir, f"{name}-{digest[:12]}.parquet")
        if not svd_io.exists(out_uri):
            svd_io.put_file(local, out_uri)
    thresholds = {k: v.to_dict() for k, v in result.thresholds.items()}
    return PreparedDataset(out_uri, source, len(result.kept), len(table), thresholds)


# --- study and report --------------------------------------------------------------------------------
def study_id(spec: AblationSpec, labels: list[str], cfg: EvaluateConfig) -> str:
    """Same variants' versions and same sampling/design settings -> same study (human votes find it)."""
    key = {
        "labels": sorted(labels),
        "task": cfg.task,
        "eval_set": cfg.eval_set,
        "sampling": cfg.sampling.key(),
        "study": cfg.study.model_dump(mode="json", exclude={"study_id", "axes"}),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"ablation-{spec.name}-{digest}"


def study_axes(spec: AblationSpec, label_of: dict[str, str]) -> dict[str, list[str]]:
    """The study's axes in model labels: the spec's variant groups, or one axis of every variant."""
    groups = spec.evaluation.study.axes or {spec.name: list(label_of)}
    return {axis: [label_of[v] for v in members] for axis, members in groups.items()}


def variant_leaderboard(board: pd.DataFrame, variant_of: dict[str, str], synthetic: bool) -> pd.DataFrame:
    """The study's leaderboard (models as `name/version`) keyed by variant, best first."""
    out = board.rename(columns={"model": "model_version"})
    out.insert(0, "variant", out["model_version"].map(variant_of))
    out["synthetic"] = synthetic
    return out.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


def report_variants(
    plan: AblationPlan,
    models: dict[str, str],
    datasets: dict[str, PreparedDataset],
    board: pd.DataFrame | None,
) -> list[dict[str, Any]]:
    """One entry per variant: what it is, where it is registered, and its rating (None until rated)."""
    rows = {} if board is None else {r["variant"]: r for r in board.to_dict(orient="records")}
    out = []
    for variant in plan.variants:
        rated = rows.get(variant.name, {})
        out.append(
            {
                "variant": variant.name,
                "dataset": {
                    **variant.spec.dataset.model_dump(mode="json"),
                    **datasets[variant.name].to_dict(),
                },
                "init": variant.spec.init,
                "overrides": [*plan.spec.train_overrides, *variant.spec.overrides],
                "model_uri": models[variant.name],
                **{k: rated.get(k) for k in ("rating", "lower", "upper", "n_votes")},
            }
        )
    return out


def write_ablation_report(
    out_uri: str, report: dict[str, Any], board: pd.DataFrame | None, pooled: QuestionResult | None
) -> list[str]:
    """leaderboard.csv + leaderboard.png (when rated), then ablation_report.json last (complete marker)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from svd_core.evaluation.report import leaderboard_figure

    written = []
    if board is not None and pooled is not None:
        svd_io.write_bytes(svd_io.join_uri(out_uri, "leaderboard.csv"), board.to_csv(index=False).encode())
        # A rating that never lost is capped by Bradley-Terry at another bound than its bootstrap draws, so
        # the point can sit outside its interval: widen the drawn bar only (the CSV keeps the fitted numbers).
        by_variant = board.rename(columns={"variant": "model"}).assign(
            lower=board[["lower", "rating"]].min(axis=1), upper=board[["upper", "rating"]].max(axis=1)
        )
        panel = dataclasses.replace(pooled, leaderboard=by_variant, question=f"ablation {report['name']}")
        figure = leaderboard_figure([panel], bool(report["synthetic"]))
        FigureCanvasAgg(figure)
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=110, bbox_inches="tight")
        svd_io.write_bytes(svd_io.join_uri(out_uri, "leaderboard.png"), png.getvalue())
        written += [svd_io.join_uri(out_uri, n) for n in ("leaderboard.csv", "leaderboard.png")]
    report_uri = svd_io.join_uri(out_uri, "ablation_report.json")
    svd_io.write_bytes(report_uri, json.dumps(jsonable(report), indent=2, allow_nan=False).encode())
    return [*written, report_uri]
