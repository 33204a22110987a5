"""Configs of the evaluation stages, one schema per stage: sampling, study design, vote analysis, a whole
evaluation run (samples -> study -> votes -> analysis -> promotion) and ablations (defaults from the SVD paper).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from svd_core.config import StageConfig, parse_override
from svd_core.curation.config import FilterConfig
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.evaluation.schema import QUESTIONS


# --- from _samp_cfg.py ------------------------------------------------------------
class SamplingConfig(StageConfig):
    """How evaluation videos are generated (defaults: the released SVD inference settings)."""

    num_frames: int | None = Field(None, ge=2)
    """Frames per video; None uses the model's training frame count (svd_model.json)."""
    height: int | None = Field(None, ge=8)
    """Height in pixels; None uses the model's training height."""
    width: int | None = Field(None, ge=8)
    """Width in pixels; None uses the model's training width."""
    fps: int = Field(7, ge=1, le=60)
    """Frame-rate conditioning and MP4 rate (released default 7; the pipeline feeds fps-1)."""
    motion_bucket_id: int = Field(127, ge=0, le=255)
    """Motion conditioning (released default 127)."""
    noise_aug_strength: float = Field(0.02, ge=0)
    """cond_aug of the conditioning image (released default 0.02)."""
    num_inference_steps: int = Field(25, ge=1)
    """Euler steps (SVD: 25, SVD-XT: 30)."""
    guidance_scale: float = Field(3.0, ge=1.0)
    """Classifier-free guidance (image mode: max_guidance_scale, ramped across frames as the paper)."""
    device: str = "auto"
    """auto, cpu, cuda[:N]."""

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


# --- from config_study.py ------------------------------------------------------------
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
    """Share of the study's tasks that are attention checks (the pool raters' checks are drawn from)."""
    gold_per_rater: int = Field(default=8, ge=0)
    """Attention checks every rater gets at least (topped up from the pool; capped by the distinct checks
    the eval set allows). 8 lets the binomial exclusion test (attentive accuracy 0.9, alpha 0.05) catch a
    rater who always clicks one side (50% right) with probability 0.86 (`rater_quality.checks_needed`)."""
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
    cluster: Literal["rater_prompt", "rater", "prompt", "vote"] = "rater_prompt"
    """What the bootstrap resamples: rater_prompt (default) draws raters and prompts with replacement
    (multiway cluster bootstrap, corrected to the two-way variance): intervals that hold when raters
    have tastes and prompts have difficulty (>= 93% coverage of 95% intervals in 200 simulated studies);
    vote: the public arenas' vote bootstrap, right only for independent votes (~74% there)."""
    prior: float = Field(default=0.01, ge=0.0)
    """Precision of the Gaussian prior on log-strengths (choix's `alpha`): a model that never lost gets
    a finite rating inside its interval; 0.01 moves a model with 50+ votes by < 0.1%. 0: plain MLE."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Coverage of every interval (bootstrap rating intervals and clustered win-rate intervals)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the bootstrap draws and of the paper-style Elo orderings."""
    elo_scale: float = Field(default=400.0, gt=0)
    """Elo points per tenfold odds (the chess/arena convention)."""
    elo_anchor: float = 1000.0
    """Mean rating of the models on the Elo scale (the paper starts every model at 1000)."""
    paper_elo_orderings: int = Field(default=1000, ge=0)
    """Random vote orderings averaged by the paper's online Elo (K=1, start 1000); 0 skips that column."""
    attentive_accuracy: float = Field(default=0.9, gt=0.0, lt=1.0)
    """Hit rate of an attentive rater on attention checks; the exclusion test's null hypothesis."""
    exclusion_alpha: float = Field(default=0.05, ge=0.0, lt=1.0)
    """A rater is excluded when P(hits this low | attentive) < this: at most this share of attentive
    raters is lost, whatever their number of checks (a fixed 0.8 cut loses ~19% at 8 checks). 0: never."""
    min_gold_votes: int = Field(default=3, ge=1)
    """Gold votes a rater needs before the exclusion test applies (fewer: the rater is 'unchecked')."""
    exclude_unchecked_raters: bool = False
    """Also exclude raters with fewer than `min_gold_votes` gold votes."""
    allow_synthetic_mix: bool = False
    """Analyse human and synthetic votes together; otherwise a mix is refused (never mixed silently)."""
    max_rejected_share: float = Field(default=0.05, ge=0.0, le=1.0)
    """Commands reading a vote file list every rejected row with its reason and refuse the file when more
    than this share of its rows is rejected (a wrong export, not a few typos)."""
    power_alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of the pairwise binomial tests and of the votes-needed estimate."""
    power_target: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Power the votes-needed estimate aims for (svd-facts: ~800 decisive votes detect 55%)."""

    @model_validator(mode="after")
    def _check(self) -> AnalysisConfig:
        _check_questions(self.questions, "questions")
        return self


# --- from config_evaluate.py ------------------------------------------------------------
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


class PromotionConfig(StageConfig):
    """Evidence a challenger needs, on every promotion question, before the `champion` alias moves.

    Sizes follow one power calculation for a 60% win rate (~70 Elo, the paper's per-pair design) at a
    one-sided alpha of 0.05 and power 0.8 (`svd_core.evaluation.power`; tests check the defaults against
    it): a fixed-sample exact test needs 153 decisive votes; the anytime-valid sequential test below
    needs 277 (its price for allowing a check after every batch of votes).
    """

    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """False-promotion rate per question, held however often `promote` is re-run as votes arrive: the
    mixture SPRT promotes only once its likelihood ratio reaches 1 / alpha (Ville's inequality)."""
    alternatives: list[float] = Field(default_factory=lambda: [0.6, 0.65, 0.7, 0.75])
    """Win rates the mixture SPRT averages over (equal weights, each > 0.5): centred on the 60% design
    effect, with larger effects so clear wins stop early (80% power at 70% within 58 decisive votes)."""
    design_win_rate: float = Field(default=0.6, gt=0.5, lt=1.0)
    """Win rate the promotion study is sized for (reported with the decision as the study plan)."""
    design_power: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Power the study plan aims for at `design_win_rate`."""
    min_decisive_votes: int = Field(default=37, ge=1)
    """Decisive (non-tie) votes needed before any promotion: 37 is what a fixed-sample one-sided exact test
    needs for power 0.8 against a large 70% win rate, so even an early stop rests on that much."""
    min_raters: int = Field(default=7, ge=1)
    """Distinct raters among the decisive votes: with an intra-rater correlation of 0.02 (assumed), the
    277 votes of the 60% design keep the 153 effective votes a fixed test needs only if spread over >= 7
    raters (design effect 1 + (m - 1) icc; `power.min_clusters(277, 153, 0.02)`). A 4-0 from one rater
    never promotes."""
    min_prompts: int = Field(default=7, ge=1)
    """Distinct prompts among the decisive votes, by the same design-effect calculation with an assumed
    intra-prompt correlation of 0.02 (`power.min_clusters(277, 153, 0.02)` = 7)."""
    expected_tie_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of ties assumed when converting the planned decisive votes into votes per pair."""

    @field_validator("alternatives")
    @classmethod
    def _alternatives(cls, values: list[float]) -> list[float]:
        if not values or any(not 0.5 < v < 1.0 for v in values):
            raise ValueError(f"alternatives {values} must be a non-empty list of win rates in (0.5, 1)")
        return values


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
    """Promote only if the lower bound of the challenger's win rate (ties half; clustered bootstrap over
    raters and prompts, widened to the Wilson interval) exceeds this, besides the `promotion` rules."""
    promotion: PromotionConfig = PromotionConfig()
    """Minimum evidence (decisive votes, raters, prompts) and the sequential test of a promotion."""
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


# --- from _abl_cfg.py ------------------------------------------------------------
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


class DatasetVariantConfig(StageConfig):
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
    def _one_way_to_filter(self) -> DatasetVariantConfig:
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


class VariantConfig(StageConfig):
    """One trained model of the ablation."""

    name: str
    """Variant name (lower case; it becomes the registered model `ablation-<spec>-<name>`)."""
    dataset: DatasetVariantConfig = DatasetVariantConfig()
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


class GridConfig(StageConfig):
    """Every combination of datasets x inits x configs, named `<dataset>_<init>_<config>` (a part only when
    its axis has more than one choice)."""

    datasets: dict[str, DatasetVariantConfig] = Field(
        default_factory=lambda: {"data": DatasetVariantConfig()}
    )
    """Dataset name -> dataset variant."""
    inits: list[InitKind] = Field(default_factory=lambda: list[InitKind](["image_pretrained"]))
    """Initialisations to cross with every dataset."""
    configs: dict[str, list[str]] = Field(default_factory=lambda: {"base": list[str]()})
    """Config name -> dotted stage-II overrides."""

    @model_validator(mode="after")
    def _check(self) -> GridConfig:
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
        axes: list[list[str]] = [list(self.datasets), list(self.inits), list(self.configs)]
        shown = [len(axis) > 1 for axis in axes]
        out: list[tuple[str, str, str, str]] = []
        for dataset, init, config in itertools.product(*axes):
            choice = (dataset, init, config)
            parts = [p for p, keep in zip(choice, shown, strict=True) if keep] or [dataset]
            out.append(("_".join(parts), dataset, init, config))
        return out

    def expand(self) -> list[VariantConfig]:
        return [
            VariantConfig(
                name=name, dataset=self.datasets[dataset], init=init, overrides=self.configs[config]
            )
            for name, dataset, init, config in self.combinations()
        ]


class AblationConfig(StageConfig):
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
    variants: list[VariantConfig] = Field(default_factory=list)
    """Variants listed one by one (run in this order, before the grid's)."""
    grid: GridConfig | None = None
    """Variants as every combination of datasets x inits x configs."""
    evaluation: EvaluateConfig = EvaluateConfig()
    """Sampling, study, analysis and synthetic rater. `study.axes` may group variant names; empty: one axis
    with every variant (a full round-robin, as the paper's studies)."""
    correction: Literal["holm", "bh"] = "holm"
    """Multiple-comparison correction of the pairwise p-values in the report, applied per question across its
    variant pairs (k variants: k(k-1)/2 tests) at `evaluation.analysis.power_alpha`: holm (family-wise error,
    default: every "A beats B" the report claims holds together) or bh (Benjamini-Hochberg false discovery
    rate, less strict for large sweeps)."""

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
    def _check_variants(self) -> AblationConfig:
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

    def expanded(self) -> list[VariantConfig]:
        """Every variant: the listed ones, then the grid's combinations (deterministic order)."""
        return [*self.variants, *(self.grid.expand() if self.grid else [])]

    def model_name(self, variant: str) -> str:
        return f"ablation-{self.name}-{variant}"
