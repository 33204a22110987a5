"""Ablation flow: train every variant of an `AblationConfig`, sample each, rank them in ONE preference study.

Steps (plain functions; `svd eval ablate` runs them without Prefect, the `ablation` flow wraps them in
tasks): materialise each variant's training table -> train the shared stage-I model (when a variant is
`image_pretrained`) -> train each variant's stage II, registered as `ablation-<spec>-<variant>` so it never
collides with the product model `svd` -> sample every variant on the eval set -> one study over all of
them (synthetic rater, or the design for human raters, or given human votes) -> report (leaderboard.csv,
leaderboard.png, pairs.csv, ablation_report.json; per question, pairwise p-values corrected across the
variant pairs) logged to MLflow experiment "evaluation" as a run tagged `svd.kind=ablation` (the dashboard
reads those artifacts).

Reruns are cheap: the training step reuses a registered version trained from the same config, parent and
data; finished samples are reused; the study id is a hash of the variants' versions and the design
settings, so human votes collected later are analysed against the same design.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import flow, task

from flows import eval_flow, train_flow
from flows.integrations import registry, tracking
from flows.settings import load_settings
from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.evaluation.ablation import (
    AblationConfig,
    AblationPlan,
    PlannedVariant,
    PreparedDataset,
    pairs_table,
    plan_ablation,
    prepare_dataset,
    question_reports,
    report_variants,
    study_axes,
    study_id,
    variant_leaderboard,
    write_ablation_report,
)
from svd_core.evaluation.analyze import AnalysisResult
from svd_core.evaluation.config import EvaluateConfig
from svd_core.evaluation.evalsets import resolve_eval_set
from svd_core.evaluation.study import StudyDesign, load_study_design

Say = Callable[[str], None]
WAITING = "waiting for human votes"


def ablation_root(spec: AblationConfig) -> str:
    return svd_io.join_uri(load_settings().resolved_artifact_root, "ablations", spec.name)


def design_uri(sid: str) -> str:
    """Where eval_flow.step_design writes a study's design."""
    return svd_io.join_uri(load_settings().resolved_artifact_root, "studies", sid, "design.json")


def step_prepare_data(plan: AblationPlan) -> dict[str, PreparedDataset]:
    """Each variant's training table (filtered variants are written under the ablation's folder)."""
    data_dir = svd_io.join_uri(ablation_root(plan.spec), "data")
    return {v.name: prepare_dataset(v.spec.dataset, plan.spec.data, data_dir, v.name) for v in plan.variants}


def step_train_image(plan: AblationPlan) -> str | None:
    """The shared stage-I model the `image_pretrained` variants inflate (None if none needs it)."""
    if plan.image_config is None:
        return None
    return train_flow.step_train_stage(
        plan.image_config, plan.image_data, model_name=plan.image_model_name
    ).uri


def step_train_variant(variant: PlannedVariant, table_uri: str, image_model: str | None) -> str:
    """Stage II of one variant, registered under its own model name (reused when already trained)."""
    parent = image_model if variant.spec.init == "image_pretrained" else None
    model = train_flow.step_train_stage(
        variant.train_config, table_uri, parent, model_name=variant.model_name
    )
    return model.uri


def study_config(plan: AblationPlan, label_of: dict[str, str]) -> EvaluateConfig:
    """The spec's evaluation config with the study id and its axes in model labels."""
    cfg = plan.spec.evaluation
    sid = study_id(plan.spec, list(label_of.values()), cfg)
    study = cfg.study.model_copy(update={"study_id": sid, "axes": study_axes(plan.spec, label_of)})
    return cfg.model_copy(update={"study": study})


def step_study(
    plan: AblationPlan, models: dict[str, str], votes: pd.DataFrame | None = None
) -> tuple[AnalysisResult | None, StudyDesign, EvaluateConfig, dict[str, str]]:
    """One study over all variants: synthetic votes, given human votes, or (neither) just the design."""
    label_of = {name: eval_flow.model_label(registry.resolve(uri)) for name, uri in models.items()}
    cfg = study_config(plan, label_of)
    sid = cfg.study.study_id
    if votes is None:
        result, design = eval_flow.run_study(list(models.values()), cfg, sid)
        return result, design, cfg, label_of
    if not svd_io.exists(design_uri(sid)):
        raise InputError(
            f"no study design {design_uri(sid)} for these variants; run the ablation without --votes first "
            "(it writes the design the raters judge), then pass their votes"
        )
    design = load_study_design(design_uri(sid))
    compared = votes[~votes["is_gold"].astype(bool)] if "is_gold" in votes.columns else votes
    # Attention checks pair a variant with its degraded or off-prompt copy: those are not strangers.
    strangers = sorted((set(compared["model_a"]) | set(compared["model_b"])) - set(label_of.values()))
    if strangers:
        raise InputError(
            f"the votes name model(s) {strangers} that are not variants of this ablation "
            f"({sorted(label_of.values())}); pass the votes of study {sid} (svd eval export-votes --study {sid})"
        )
    return eval_flow.step_analyze(votes, cfg, design, list(label_of.values())), design, cfg, label_of


def step_report(
    plan: AblationPlan,
    models: dict[str, str],
    datasets: dict[str, PreparedDataset],
    study: tuple[AnalysisResult | None, StudyDesign, EvaluateConfig, dict[str, str]],
) -> dict[str, Any]:
    """Write the report files (kept under the ablation's folder) and log them as the ablation's run."""
    result, design, cfg, label_of = study
    spec = plan.spec
    synthetic = bool(result.synthetic) if result is not None else False
    board, questions, pairs = None, {}, None
    variant_of = {lab: v for v, lab in label_of.items()}
    alpha = cfg.analysis.power_alpha
    if result is not None:
        board = variant_leaderboard(result.leaderboard, variant_of, synthetic)
        questions = question_reports(result, variant_of, spec.correction, alpha)
        pairs = pairs_table(questions)
    report: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "status": "rated" if result is not None else WAITING,
        "synthetic": synthetic,
        "study_id": design.study_id,
        "design_uri": design_uri(design.study_id),
        "eval_set": design.meta.get("eval_set"),
        "image_model": _image_model(plan, models),
        "warnings": result.warnings if result is not None else [],
        "variants": report_variants(plan, models, datasets, board),
        "correction": {
            "method": spec.correction,
            "alpha": alpha,
            "family": "the variant pairs of one question",
        },
        "questions": questions,
    }
    out_uri = svd_io.join_uri(ablation_root(spec), "reports", design.study_id)
    tags = {"svd.kind": "ablation", "svd.ablation": spec.name, "svd.study_id": design.study_id,
            "svd.synthetic": str(synthetic).lower(), "svd.status": report["status"]}  # fmt: skip
    with (
        tracking.run(cfg.experiment, f"ablation-{spec.name}", tags) as active,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tracking.log_config(spec, "ablation_spec")
        for entry in report["variants"]:
            if entry["rating"] is not None:
                mlflow.log_metric(f"rating.{entry['variant']}", float(entry["rating"]))
        for path in write_ablation_report(tmp, report, board, result.pooled if result else None, pairs):
            svd_io.put_file(path, svd_io.join_uri(out_uri, Path(path).name))
        mlflow.log_artifacts(tmp)
        run_id = active.info.run_id
    return {**report, "report_uri": out_uri, "run_id": run_id}


def _image_model(plan: AblationPlan, models: dict[str, str]) -> str | None:
    """The shared stage-I version, read back from a variant's lineage (None when all start from scratch)."""
    for variant in plan.variants:
        if variant.spec.init == "image_pretrained":
            return registry.resolve(models[variant.name]).tags.get("svd.parent_model_version") or None
    return None


def load_human_votes(uri: str, max_rejected_share: float) -> pd.DataFrame:
    """Votes in the vote schema (Parquet or arena CSV). Rejected rows are listed with their reasons (on
    stderr) and skipped; the file is refused when more than `max_rejected_share` of its rows are rejected
    (the rule every command that reads votes applies)."""
    from svd_core.evaluation.imports import check_rejected, load_votes

    loaded = load_votes(uri)
    if len(loaded.rejected):
        print(f"{uri}: {loaded.summary()}", file=sys.stderr)
        for row in loaded.rejected.head(20).to_dict(orient="records"):
            print(f"  rejected: {row}", file=sys.stderr)
    check_rejected(loaded, uri, max_rejected_share)
    if loaded.votes.empty:
        raise InputError(f"{uri}: no valid vote ({len(loaded.rejected)} row(s) rejected)")
    return loaded.votes


def run_ablation(
    spec: AblationConfig, votes: pd.DataFrame | None = None, say: Say | None = None
) -> dict[str, Any]:
    """The whole ablation without Prefect (the CLI's path); `say` hears about each step as it starts."""
    say = say or (lambda _msg: None)
    plan = plan_ablation(spec)
    say("preparing the variants' training tables")
    datasets = step_prepare_data(plan)
    if plan.image_config is not None:
        say(f"stage I: shared image model {plan.image_model_name}")
    image = step_train_image(plan)
    models = {}
    for variant in plan.variants:
        say(f"stage II: variant {variant.name} ({variant.spec.init})")
        models[variant.name] = step_train_variant(variant, datasets[variant.name].table_uri, image)
    say(f"sampling {len(models)} variants and running the study")
    study = step_study(plan, models, votes)
    say("writing the report")
    return step_report(plan, models, datasets, study)


def progress_steps(plan: AblationPlan) -> int:
    """How many times `run_ablation` calls `say` (for a progress bar)."""
    return 3 + len(plan.variants) + (plan.image_config is not None)


prepare_task = task(name="ablation-data")(step_prepare_data)
train_image_task = task(name="ablation-stage-i")(step_train_image)
train_variant_task = task(name="ablation-stage-ii")(step_train_variant)
study_task = task(name="ablation-study")(step_study)
report_task = task(name="ablation-report")(step_report)


@flow(name="ablation", log_prints=True)
def ablation(spec: AblationConfig, votes_uri: str | None = None) -> dict[str, Any]:
    """Prefect flow: the same steps as `run_ablation`, each variant's training and sampling a task."""
    plan = plan_ablation(spec)
    votes = load_human_votes(votes_uri, spec.evaluation.analysis.max_rejected_share) if votes_uri else None
    datasets = prepare_task(plan)
    image = train_image_task(plan)
    models = {
        v.name: train_variant_task.with_options(name=f"train-{v.name}")(v, datasets[v.name].table_uri, image)
        for v in plan.variants
    }
    if votes is None:  # samples as visible tasks; the study step then finds them finished
        eval_set = resolve_eval_set(spec.evaluation.eval_set, spec.evaluation.task)
        for name, uri in models.items():
            eval_flow.sample_task.with_options(name=f"sample-{name}")(uri, spec.evaluation, eval_set)
    outcome = report_task(plan, models, datasets, study_task(plan, models, votes))
    print({v["variant"]: v["rating"] for v in outcome["variants"]})
    return outcome
