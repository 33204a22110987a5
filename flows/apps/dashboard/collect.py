"""Read MLflow (runs, metric histories, registry) and the dataset tables into the dashboard's data model.

Entry point: `collect(site_dir)`. Files the page links to (Data Docs, a study's own plots) are copied
under `site_dir/artifacts/`, videos (evaluation samples, study pairs) under `site_dir/media/`, so the built
site is self-contained. A run whose artifacts cannot be read becomes a note on the page; it never stops the
whole dashboard. Metric histories are kept whole (every logged point); only drawing downsamples them.
Recent Prefect flow runs are read when a Prefect server is configured (or its UI given).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mlflow.entities import Run
from mlflow.entities.model_registry import RegisteredModel as MlflowRegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import flows.integrations.s3  # noqa: F401  (registers s3:// with svd_core.storage so S3 dataset tables are readable)
from flows.apps.dashboard import links
from flows.apps.dashboard.datasets import collect_build
from flows.apps.dashboard.evaluation import collect_study
from flows.apps.dashboard.media import MediaCopier, samples_folder, version_samples
from flows.apps.dashboard.mlflow_read import READ_ERRORS, iso_time, log, runs_of_kind, tag
from flows.apps.dashboard.model import (
    Curve,
    Dashboard,
    FlowRun,
    ModelVersion,
    RegisteredModel,
    TrainingRun,
    UiLinks,
)
from flows.integrations import tracking
from flows.settings import Settings, mask_url

TRAIN_METRICS = ("loss", "lr", "grad_norm", "samples_per_s", "step_time_s")
MAX_BUILDS = 6
MAX_TRAIN_RUNS = 100
"""Newest training runs shown (each with every point it logged); the page links to MLflow for older ones."""
MAX_STUDIES = 10
MAX_SAMPLED_VERSIONS = 12
"""Versions per model whose sample videos are copied into the site (newest first, plus every aliased one);
older versions name the folder their samples are in."""


def _history(steps: list[int], values: list[float]) -> Curve:
    """One value per step (the last one logged for a step wins, as MLflow's charts show a resumed run)."""
    by_step = dict(zip(steps, values, strict=True))
    ordered = sorted(by_step)
    return Curve(ordered, [by_step[s] for s in ordered])


def training_run(client: MlflowClient, run: Run) -> TrainingRun:
    """A training run with the whole step history of each standard metric it logged."""
    curves: dict[str, Curve] = {}
    for key in TRAIN_METRICS:
        if key not in run.data.metrics:
            continue
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        curves[key] = _history([m.step for m in history], [float(m.value) for m in history])
    return TrainingRun(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        stage=tag(run, "svd.stage", "unknown"),
        status=run.info.status,
        started=iso_time(run.info.start_time),
        registered_model=tag(run, "svd.registered_model"),
        curves=curves,
        config_hash=next((v for k, v in sorted(run.data.tags.items()) if _is_config_hash(k)), ""),
        experiment_id=run.info.experiment_id,
        prefect_flow_run=tag(run, links.PREFECT_FLOW_RUN_TAG),
    )


def _is_config_hash(key: str) -> bool:
    """`svd.config_hash` or what tracking.log_config sets (`svd.<name>_hash`, e.g. svd.train_config_hash)."""
    return key.startswith("svd.") and key.endswith("config_hash")


def registered_models(
    client: MlflowClient, media: MediaCopier | None = None, artifact_root: str = ""
) -> list[RegisteredModel]:
    """Every registered model with its versions (newest first), version tags, aliases and (with `media`)
    the evaluation samples found under `artifact_root`."""
    models: list[MlflowRegisteredModel] = []
    token: str | None = None
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            break
    out = []
    for rm in sorted(models, key=lambda m: m.name):
        # search_model_versions leaves `aliases` empty on some stores: the registered model has them all.
        aliases = {alias: str(version) for alias, version in sorted((rm.aliases or {}).items())}
        escaped = rm.name.replace("'", "\\'")
        versions = [
            ModelVersion(
                name=mv.name,
                version=str(mv.version),
                run_id=mv.run_id or "",
                created=iso_time(mv.creation_timestamp),
                aliases=sorted(a for a, v in aliases.items() if v == str(mv.version)),
                tags=dict(mv.tags or {}),
            )
            for mv in client.search_model_versions(f"name='{escaped}'")
        ]
        versions.sort(key=lambda v: int(v.version), reverse=True)
        if media is not None:  # the newest versions and every aliased one (champion, candidate, ...)
            for index, v in enumerate(versions):
                v.samples_where = samples_folder(artifact_root, v.name, v.version)
                if index < MAX_SAMPLED_VERSIONS or v.aliases:
                    v.samples, v.samples_total, v.samples_where = version_samples(
                        artifact_root, v.name, v.version, media
                    )
        out.append(RegisteredModel(rm.name, versions, aliases))
    return out


def _guarded(problems: list[str], what: str, fn, default):  # type: ignore[no-untyped-def]
    """Run one collector; a failure becomes a visible problem line instead of a crash."""
    try:
        return fn()
    except READ_ERRORS as exc:
        log.warning("dashboard: cannot read %s: %s", what, exc)
        problems.append(f"cannot read {what}: {exc}")
        return default


def _flow_runs(problems: list[str], ui: UiLinks, s: Settings) -> list[FlowRun] | None:
    """Recent Prefect flow runs when a Prefect server is known (None when there is none to ask)."""
    from flows.apps.dashboard.prefect_read import recent_flow_runs

    api = links.prefect_api_of(ui, s)
    if not api:
        return None
    try:
        return recent_flow_runs(api)
    except Exception as exc:  # httpx/Prefect errors vary by version; the page shows what went wrong
        log.warning("dashboard: cannot read Prefect flow runs from %s: %s", api, exc)
        problems.append(f"cannot read Prefect flow runs from {mask_url(api)}: {exc}")
        return []


def collect(
    site_dir: Path,
    settings: Settings | None = None,
    mlflow_ui: str | None = None,
    prefect_ui: str | None = None,
) -> Dashboard:
    """Read everything the dashboard shows from the configured MLflow store (and the dataset tables);
    `mlflow_ui` / `prefect_ui` name where those UIs are served when the settings cannot tell."""
    s = tracking.configure(settings)
    # one tqdm bar per downloaded artifact would flood the CLI's output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient()
    problems: list[str] = []
    media = MediaCopier(site_dir)
    ui = links.ui_links(s, mlflow_ui, prefect_ui)

    def builds():  # type: ignore[no-untyped-def]
        runs = runs_of_kind(client, "dataset", MAX_BUILDS)
        return [collect_build(client, r, site_dir, with_scores=i == 0) for i, r in enumerate(runs)]

    def training():  # type: ignore[no-untyped-def]
        return [training_run(client, r) for r in runs_of_kind(client, "train", MAX_TRAIN_RUNS)]

    def studies(kind: str):  # type: ignore[no-untyped-def]
        return [
            collect_study(client, r, site_dir, kind, media) for r in runs_of_kind(client, kind, MAX_STUDIES)
        ]

    try:
        client.search_experiments(max_results=1)
    except MlflowException as exc:
        raise_unreachable(s, exc)
    dash = Dashboard(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        tracking_uri=mask_url(s.resolved_tracking_uri),
        builds=_guarded(problems, "dataset builds", builds, []),
        training=_guarded(problems, "training runs", training, []),
        models=_guarded(
            problems,
            "the model registry",
            lambda: registered_models(client, media, s.resolved_artifact_root),
            [],
        ),
        studies=_guarded(problems, "preference studies", lambda: studies("study"), []),
        ablations=_guarded(problems, "ablations", lambda: studies("ablation"), []),
        problems=problems,
        links=ui,
        flow_runs=_flow_runs(problems, ui, s),
    )
    dash.training_total = _guarded(
        problems, "the training run count", lambda: count_runs(client, "train"), len(dash.training)
    )
    return dash


def count_runs(client: MlflowClient, kind: str) -> int:
    """How many active runs are tagged `svd.kind=<kind>` (paged, ids only)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    total, token = 0, None
    while experiments:
        page = client.search_runs(
            experiments, filter_string=f"tags.`svd.kind` = '{kind}'", max_results=1000, page_token=token
        )
        total += len(page)
        token = page.token
        if not token:
            break
    return total


def raise_unreachable(s: Settings, exc: Exception) -> None:
    from svd_core.errors import InputError

    raise InputError(
        f"cannot reach the MLflow tracking store {mask_url(s.resolved_tracking_uri)}: {exc}; "
        "start it with `svd stack up` or unset SVD_TRACKING_URI to use the embedded store"
    ) from exc
