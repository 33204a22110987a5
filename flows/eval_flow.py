"""Evaluation flows: sample registered versions, run a preference study, analyse, promote.

- `evaluate_models(models, cfg)`: samples for each `models:/` URI (reused on reruns) -> balanced study ->
  votes (synthetic rater when enabled, else the study is created in the rating app and the flow returns
  the rater links) -> analysis with intervals -> report, all logged to MLflow (experiment "evaluation").
- `promote_challenger(challenger, cfg)`: the same study of challenger vs `@champion`; the alias moves only
  if the decision rule holds on every question (minimum decisive votes, raters and prompts; the mixture
  SPRT, valid however often it is re-run; the clustered lower bound above the threshold).
Steps are plain functions (the CLI runs them without Prefect); the flows wrap them in tasks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import flow, task

from flows import reporting
from flows.integrations import registry, tracking
from flows.settings import load_settings
from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.evaluation.analyze import AnalysisResult, analyze
from svd_core.evaluation.config import EvaluateConfig
from svd_core.evaluation.evalsets import EvalSet, resolve_eval_set
from svd_core.evaluation.promotion import PromotionDecision, decide_promotion
from svd_core.evaluation.report import write_report
from svd_core.evaluation.sampling import sample_eval_set
from svd_core.evaluation.study import StudyDesign, design_study, render_gold_copies
from svd_core.evaluation.synthetic import SyntheticRater, frame_scores
from svd_core.video.writer import read_frames


def model_label(model: registry.ResolvedModel) -> str:
    """How a model version appears in studies and leaderboards."""
    return f"{model.name}/{model.version}"


def step_sample(model_uri: str, cfg: EvaluateConfig, eval_set: EvalSet) -> dict[str, str]:
    """Samples of one registered version for the eval set (finished ones are reused)."""
    model = registry.resolve(model_uri)
    base = svd_io.join_uri(
        load_settings().resolved_artifact_root,
        "samples",
        model.name,
        model.version,
        f"{eval_set.name}-{eval_set.version}",
    )
    pipeline = registry.download_pipeline(model.uri)
    return sample_eval_set(pipeline, eval_set, base, cfg.sampling, model.uri)


def step_design(
    samples: dict[str, dict[str, str]], cfg: EvaluateConfig, eval_set: EvalSet, study_id: str
) -> StudyDesign:
    study_cfg = cfg.study.model_copy(update={"study_id": study_id})
    gold_dir = svd_io.join_uri(load_settings().resolved_artifact_root, "studies", study_id, "gold")
    study_cfg = study_cfg.model_copy(update={"gold_dir": study_cfg.gold_dir or gold_dir})
    design = design_study(eval_set, samples, study_cfg)
    render_gold_copies(design)
    design.write(svd_io.join_uri(load_settings().resolved_artifact_root, "studies", study_id, "design.json"))
    return design


def step_synthetic_votes(design: StudyDesign, cfg: EvaluateConfig) -> pd.DataFrame:
    """Votes from the automatic rater, marked synthetic, from a frame proxy of each sample."""
    uris = sorted({u for t in design.tasks for u in (t["sample_a_uri"], t["sample_b_uri"])})
    frames = {}
    for uri in uris:
        with svd_io.local_copy(uri) as path:
            frames[uri] = read_frames(path)[0]
    scores = frame_scores(frames, cfg.synthetic.proxy)
    rater = SyntheticRater(cfg.synthetic.proxy, noise=cfg.synthetic.noise, seed=cfg.synthetic.seed)
    return rater.vote(design.tasks, scores, raters=cfg.synthetic.raters)


def study_tags(votes: pd.DataFrame, cfg: EvaluateConfig, study_id: str) -> dict[str, str]:
    """MLflow tags of a study run: who rated it is always said (tag, rater kind and the run description)."""
    synthetic = bool(votes["synthetic"].astype(bool).any())
    raters = f"synthetic:{cfg.synthetic.proxy}" if synthetic else "human"
    note = (
        f"SYNTHETIC votes: rated by the automatic rater ({cfg.synthetic.proxy} proxy), not by humans."
        if synthetic
        else "Human-preference study: rated by people."
    )
    return {
        "svd.kind": "study",
        "svd.study_id": study_id,
        "svd.synthetic": str(synthetic).lower(),
        "svd.raters": raters,
        "mlflow.note.content": note,
    }


def step_analyze(
    votes: pd.DataFrame, cfg: EvaluateConfig, design: StudyDesign, models: list[str]
) -> AnalysisResult:
    """Analyse the votes, write the report and log everything to MLflow."""
    result = analyze(votes, cfg.analysis)
    tags = study_tags(votes, cfg, design.study_id)
    run_name = ("synthetic-" if tags["svd.synthetic"] == "true" else "") + f"study-{design.study_id}"
    with tracking.run(cfg.experiment, run_name, tags), tempfile.TemporaryDirectory() as tmp:
        tracking.log_config(cfg, "evaluate_config")
        mlflow.log_param("models", ",".join(models))
        mlflow.log_metric("votes", len(votes))
        write_report(result, tmp)
        votes.to_csv(Path(tmp) / "votes.csv", index=False)
        mlflow.log_artifacts(tmp)
        mlflow.log_dict(design.to_dict(), "design.json")
    return result


def step_decide(
    result: AnalysisResult, challenger: str, champion: str, cfg: EvaluateConfig
) -> PromotionDecision:
    return decide_promotion(
        result,
        challenger,
        champion,
        cfg.questions(),
        cfg.min_lower_bound,
        allow_synthetic=cfg.allow_synthetic_promotion,
        rule=cfg.promotion,
    )


def run_study(
    models: list[str], cfg: EvaluateConfig, study_id: str
) -> tuple[AnalysisResult | None, StudyDesign]:
    """Samples -> design -> (synthetic votes -> analysis) for `models:/` URIs; without the synthetic rater
    the design is returned for human rating (svd eval create-study) and no analysis happens yet."""
    eval_set = resolve_eval_set(cfg.eval_set, cfg.task)
    resolved = [registry.resolve(uri) for uri in models]
    samples = {model_label(m): step_sample(m.uri, cfg, eval_set) for m in resolved}
    design = step_design(samples, cfg, eval_set, study_id)
    if not cfg.synthetic.enabled:
        return None, design
    votes = step_synthetic_votes(design, cfg)
    return step_analyze(votes, cfg, design, list(samples)), design


def run_promotion(
    challenger_uri: str, cfg: EvaluateConfig, votes: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Study challenger vs `@champion` and move the alias if the rule holds; the first model becomes champion."""
    challenger = registry.resolve(challenger_uri)
    champion = registry.resolve_or_none(f"models:/{challenger.name}@{registry.CHAMPION}")
    if champion is None:
        registry.promote(
            challenger.name, challenger.version, {"decision": "first champion (nothing to compare)"}
        )
        return {"promoted": True, "champion": challenger.uri, "reason": "no champion yet"}
    if champion.version == challenger.version:
        return {"promoted": False, "champion": champion.uri, "reason": "challenger is already the champion"}
    study_id = f"promote-{challenger.name}-{challenger.version}-vs-{champion.version}"
    if votes is None:
        result, design = run_study([challenger.uri, champion.uri], cfg, study_id)
        if result is None:
            return {
                "promoted": False,
                "study": design.study_id,
                "reason": "waiting for human votes",
                "design": design,
            }
    else:
        eval_set = resolve_eval_set(cfg.eval_set, cfg.task)
        design = StudyDesign(study_id, [], {}, [], {"eval_set": {"name": eval_set.name}})
        result = step_analyze(votes, cfg, design, [model_label(challenger), model_label(champion)])
    decision = step_decide(result, model_label(challenger), model_label(champion), cfg)
    evidence = {"study": study_id, **{k: str(v) for k, v in _flat(decision.evidence).items()}}
    if decision.promote:
        registry.promote(challenger.name, challenger.version, evidence)
    current = registry.resolve(f"models:/{challenger.name}@{registry.CHAMPION}")
    return {"promoted": decision.promote, "champion": current.uri, "evidence": decision.evidence}


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


sample_task = task(name="sample-model", retries=1)(step_sample)
promotion_task = task(name="promotion-study")(run_promotion)


@flow(name="evaluate_models", log_prints=True)
def evaluate_models(
    models: list[str], cfg: EvaluateConfig = EvaluateConfig(), study_id: str = "study"
) -> dict[str, Any]:
    """Prefect flow: a preference study over registered versions (leaderboard in the run's artifacts)."""

    if len(models) < 2:
        raise InputError(f"a study needs at least two models, got {models}")
    eval_set = resolve_eval_set(cfg.eval_set, cfg.task)
    resolved = [registry.resolve(uri) for uri in models]
    futures = {model_label(m): sample_task.submit(m.uri, cfg, eval_set) for m in resolved}
    samples = {label: f.result() for label, f in futures.items()}
    design = task(step_design)(samples, cfg, eval_set, study_id)
    if not cfg.synthetic.enabled:
        reporting.publish_run_artifacts(reporting.leaderboard_artifacts(design.study_id, None))
        return {"study": design.study_id, "tasks": len(design.tasks), "status": "waiting for human votes"}
    votes = task(step_synthetic_votes)(design, cfg)
    result = task(step_analyze)(votes, cfg, design, list(samples))
    board = result.leaderboard.assign(synthetic=result.synthetic).to_dict(orient="records")
    if result.synthetic:
        print(
            f"SYNTHETIC votes (automatic rater {cfg.synthetic.proxy!r}, not humans): study {design.study_id}"
        )
    print(board)
    reporting.publish_run_artifacts(
        reporting.leaderboard_artifacts(design.study_id, board, synthetic=result.synthetic)
    )
    return {"study": design.study_id, "leaderboard": board}


@flow(name="promote_challenger", log_prints=True)
def promote_challenger(challenger: str, cfg: EvaluateConfig = EvaluateConfig()) -> dict[str, Any]:
    """Prefect flow: challenger vs @champion, alias moved only when the rule holds (evidence in the run's
    artifacts)."""

    outcome = promotion_task(challenger, cfg)
    outcome.pop("design", None)
    print(outcome)
    reporting.publish_run_artifacts(reporting.promotion_artifacts(challenger, outcome))
    return outcome
