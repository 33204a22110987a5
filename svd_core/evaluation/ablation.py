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

The report ranks the variants pooled over the questions and per question; each question's pairwise tests
carry p-values adjusted across that question's variant pairs (Holm or Benjamini-Hochberg,
`AblationConfig.correction`), so a sweep of many variants does not report chance wins as findings.

This module is the library half: the spec, its expansion into runnable stage configs, the dataset
materialisation and the report files. `flows.ablation_flow` trains, samples, rates and tracks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from svd_core import storage as svd_io
from svd_core.config import apply_overrides, read_yaml, validate_config
from svd_core.errors import ConfigError
from svd_core.evaluation.analyze import AnalysisResult, QuestionResult, jsonable
from svd_core.evaluation.config import (  # noqa: F401
    IMAGE_STAGE_SUFFIX,
    NAME_PATTERN,
    RESERVED_KEYS,
    AblationConfig,
    DatasetVariantConfig,
    EvaluateConfig,
    GridConfig,
    InitKind,
    VariantConfig,
)
from svd_core.evaluation.stats import adjust_p_values
from svd_core.tasks.stages.config import TrainStageConfig


@dataclass(frozen=True)
class PlannedVariant:
    """A variant ready to train: its spec and resolved stage-II config (data is set when it is prepared)."""

    spec: VariantConfig
    model_name: str
    train_config: TrainStageConfig

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class AblationPlan:
    spec: AblationConfig
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


def plan_ablation(spec: AblationConfig) -> AblationPlan:
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


def prepare_dataset(
    dataset: DatasetVariantConfig, default_uri: str, out_dir: str, name: str
) -> PreparedDataset:
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
def study_id(spec: AblationConfig, labels: list[str], cfg: EvaluateConfig) -> str:
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


def study_axes(spec: AblationConfig, label_of: dict[str, str]) -> dict[str, list[str]]:
    """The study's axes in model labels: the spec's variant groups, or one axis of every variant."""
    groups = spec.evaluation.study.axes or {spec.name: list(label_of)}
    return {axis: [label_of[v] for v in members] for axis, members in groups.items()}


def variant_leaderboard(board: pd.DataFrame, variant_of: dict[str, str], synthetic: bool) -> pd.DataFrame:
    """The study's leaderboard (models as `name/version`) keyed by variant, best first."""
    out = board.rename(columns={"model": "model_version"})
    out.insert(0, "variant", out["model_version"].map(variant_of))
    out["synthetic"] = synthetic
    return out.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


PAIR_REPORT_COLUMNS = [
    "variant_x",
    "variant_y",
    "wins_x",
    "wins_y",
    "ties",
    "n",
    "win_rate_x",
    "lower",
    "upper",
    "p_value",
    "p_adjusted",
    "significant",
    "significant_adjusted",
]


def pair_report(
    pairwise: pd.DataFrame, variant_of: dict[str, str], correction: str, alpha: float
) -> pd.DataFrame:
    """Every variant pair of one question with its raw p-value and the p-value adjusted across those pairs.

    `significant` is the pair's test on its own (raw p < alpha); `significant_adjusted` is what the report
    may claim when all pairs of the question are read together.
    """
    frame = pairwise.copy()
    frame["p_adjusted"] = adjust_p_values(frame["p_value"].to_numpy(np.float64), correction)
    frame["significant"] = frame["p_value"] < alpha
    frame["significant_adjusted"] = frame["p_adjusted"] < alpha
    frame["variant_x"] = frame["model_x"].map(lambda m: variant_of.get(m, m))
    frame["variant_y"] = frame["model_y"].map(lambda m: variant_of.get(m, m))
    return frame[PAIR_REPORT_COLUMNS].reset_index(drop=True)


def question_reports(
    result: AnalysisResult, variant_of: dict[str, str], correction: str, alpha: float
) -> dict[str, dict[str, Any]]:
    """Per analysed question: the variants' ratings and the corrected pairwise tests (`pair_report`)."""
    out: dict[str, dict[str, Any]] = {}
    for question, sliced in result.questions.items():
        board = variant_leaderboard(sliced.leaderboard, variant_of, result.synthetic)
        out[question] = {
            "n_votes": sliced.n_votes,
            "leaderboard": board[["variant", "rating", "lower", "upper", "n_votes"]],
            "pairs": pair_report(sliced.pairwise, variant_of, correction, alpha),
        }
    return out


def pairs_table(questions: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """All questions' pair reports in one table (a `question` column first), for pairs.csv."""
    frames = [q["pairs"].assign(question=name) for name, q in questions.items()]
    if not frames:
        return pd.DataFrame(columns=["question", *PAIR_REPORT_COLUMNS])
    table = pd.concat(frames, ignore_index=True)
    return table[["question", *PAIR_REPORT_COLUMNS]]


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
    out_uri: str,
    report: dict[str, Any],
    board: pd.DataFrame | None,
    pooled: QuestionResult | None,
    pairs: pd.DataFrame | None = None,
) -> list[str]:
    """leaderboard.csv + leaderboard.png (when rated), pairs.csv (the per-question corrected tests, when
    given), then ablation_report.json last (complete marker)."""
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
    if pairs is not None:
        svd_io.write_bytes(svd_io.join_uri(out_uri, "pairs.csv"), pairs.to_csv(index=False).encode())
        written.append(svd_io.join_uri(out_uri, "pairs.csv"))
    report_uri = svd_io.join_uri(out_uri, "ablation_report.json")
    svd_io.write_bytes(report_uri, json.dumps(jsonable(report), indent=2, allow_nan=False).encode())
    return [*written, report_uri]
