"""Deployments (prefect.yaml, work pools, entry flows), the dataset-published event and the run artifacts.

Unit tests check prefect.yaml against the code it names and the artifact/event builders; the integration
test deploys everything to the local stack with the real CLIs, runs the nightly dataset deployment on a
process worker and reads the outcome back through the Prefect API (run state, artifacts, and the training
run that the `svd.dataset.published` event started).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from flows import deployments, reporting
from flows.integrations.registry import ResolvedModel
from svd_core.config import load_config
from svd_core.curation.config import DatasetBuildConfig
from svd_core.errors import ConfigError, InputError
from svd_core.video.sample import GROUND_TRUTH, write_sample_set
from tests.helpers import ROOT, RunningStack

PREFECT_YAML = ROOT / "prefect.yaml"
PREFECT_BIN = str(Path(sys.executable).with_name("prefect"))
SCHEMAS = {  # entry flow -> config parameter -> the class it loads (the config's `# schema:` line)
    "build_dataset_from_config": "svd_core.curation.config:DatasetBuildConfig",
    "build_lvd_from_config": "svd_core.curation.config:LvdConfig",
    "promote_candidate": "svd_core.evaluation.config:EvaluateConfig",
    "train_all_from_config": "svd_core.tasks.stages.config:TrainStageConfig",
}


def _project() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _schema_line(path: str) -> str:
    for line in (ROOT / path).read_text().splitlines():
        if line.lower().startswith("# schema:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path} has no # schema: line")


# --- prefect.yaml against the code ---------------------------------------------------------------------
def test_prefect_yaml_is_valid_for_prefect() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    model = PrefectYamlModel.model_validate(_project())
    assert {d.name for d in model.deployments} == {"nightly", "on-demand", "on-new-dataset", "weekly"}
    for deployment in model.deployments:
        if deployment.triggers:
            assert _initialize_deployment_triggers(deployment.name, deployment.triggers)
    crons = {d.name: [s.cron for s in d.schedules or []] for d in model.deployments}
    assert crons == {"nightly": ["0 2 * * *"], "on-demand": [], "on-new-dataset": [], "weekly": ["0 6 * * 1"]}


def test_entry_points_parameters_and_configs_exist() -> None:
    for spec in _project()["deployments"]:
        path, name = spec["entrypoint"].split(":")
        assert path == "flows/deployments.py"
        entry = getattr(deployments, name)
        inspect.signature(entry.fn).bind(**spec["parameters"])  # every parameter is one the flow takes
        params = spec["parameters"]
        paths = list(params.get("configs", {}).values()) + ([params["config"]] if "config" in params else [])
        assert paths, f"{spec['name']}: names no config"
        for config in paths:
            assert _schema_line(config) == SCHEMAS[name], config
        assert (ROOT / "infra" / "work-pools" / f"{spec['work_pool']['name']}.json").is_file()
    script = (ROOT / "infra" / "create_work_pools.sh").read_text()
    pools = {s["work_pool"]["name"] for s in _project()["deployments"]}
    assert all(pool in script for pool in pools)


def test_training_trigger_matches_the_event_the_dataset_flow_emits() -> None:
    (train,) = [d for d in _project()["deployments"] if d["name"] == "on-new-dataset"]
    (trigger,) = train["triggers"]
    cfg = load_config(DatasetBuildConfig, ROOT / deployments.DEFAULT_BUILD_CONFIG)
    built = {"datasets": {cfg.filter.name: _published(cfg.filter.name, "v2")}}
    (event,) = reporting.dataset_published_events(cfg, built, {}, "run1")
    assert trigger["expect"] == [event["event"]]
    assert trigger["match"] == {"prefect.resource.id": event["resource"]["prefect.resource.id"]}
    for param, template in trigger["parameters"].items():
        assert param in inspect.signature(deployments.train_all_from_config.fn).parameters
        (key,) = re.findall(r"\{\{\s*event\.payload\.(\w+)\s*\}\}", template)
        assert event["payload"][key] == "s3://b/curated/lvd_f/v2/lvd_f.parquet"


def test_stage_defaults_agree_with_the_training_flow() -> None:
    from flows import train_flow

    assert list(deployments.DEFAULT_TRAIN_CONFIGS) == list(train_flow.STAGE_MODEL_NAMES)
    assert train_flow.STAGE_MODEL_NAMES["finetune"] == deployments.PRODUCT_MODEL


def test_unknown_stage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="finetun"):
        deployments.train_all_from_config.fn(configs={"finetun": "configs/train/finetune.yaml"})


def test_unknown_stage_in_stage_overrides_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="vidoe"):
        deployments.train_all_from_config.fn(stage_overrides={"vidoe": ["num_frames=4"]})


def test_lvd_entry_matches_the_lvd_flow_api() -> None:
    from flows.lvd_flow import run_build_lvd

    inspect.signature(run_build_lvd).bind("data/raw", "data/lvd", deployments.DEFAULT_LVD_CONFIG, [])
    summary = {"videos": 2, "clips": 5, "hours": 0.01, "quarantined": 1, "reused": 0, "clips_per_s": 1.5,
               "lvd_uri": "s3://b/lvd/lvd.parquet", "quarantine_uri": "s3://b/lvd/quarantine.parquet"}  # fmt: skip
    art = reporting.lvd_artifacts(summary, home=Path("/h"))
    assert "| 2 | 5 | 0.01 | 1 | 0 | 1.5 |" in art.markdown and "s3://b/lvd/lvd.parquet" in art.markdown


def test_the_challenger_is_the_candidate_alias_never_the_highest_version(svd_home: Path) -> None:
    from mlflow.tracking import MlflowClient

    from flows.integrations import registry, tracking

    tracking.configure()
    client = MlflowClient()
    client.create_registered_model("svd")
    for _ in range(3):
        client.create_model_version("svd", source=str(svd_home))
    with pytest.raises(InputError, match="svd models alias models:/svd/N candidate"):
        deployments.candidate_version("svd")
    registry.set_alias("models:/svd/2", registry.CANDIDATE)
    assert deployments.candidate_version("svd") == "models:/svd/2"  # version 3 (a debug run) is ignored


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    out = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_pull_step_runs_the_deployments_commit_not_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prefect.yaml's own build and pull steps, run by Prefect's step runner: deploy at commit 1, move the
    checkout on (commit 2 plus an uncommitted edit), and a flow run still starts in a clone of commit 1."""
    from prefect.deployments.steps.core import run_steps
    from prefect.utilities.templating import apply_values

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "marker.txt").write_text("one")
    _git(repo, "add", "marker.txt")
    _git(repo, "commit", "-qm", "one")
    first = _git(repo, "rev-parse", "HEAD")
    monkeypatch.delenv("SVD_DEPLOY_REPOSITORY", raising=False)
    monkeypatch.chdir(repo)
    built = asyncio.run(run_steps(_project()["build"], print_function=lambda *a, **k: None))
    assert built["commit"]["stdout"] == first and built["repository"]["stdout"] == str(repo)

    (repo / "marker.txt").write_text("two")
    _git(repo, "commit", "-qam", "two")
    (repo / "marker.txt").write_text("uncommitted")
    worker = tmp_path / "worker"
    worker.mkdir()
    monkeypatch.chdir(worker)
    pull = apply_values(_project()["pull"], built, remove_notset=False)  # what `prefect deploy` stores
    asyncio.run(run_steps(pull, print_function=lambda *a, **k: None))
    assert Path.cwd() == worker / f"svd-mlops-{first}"
    assert Path("marker.txt").read_text() == "one"
    assert _git(Path.cwd(), "rev-parse", "HEAD") == first


# --- the GPU cluster material (Docker, Kubernetes, SLURM): validated statically, nothing here runs them ---
POOL_TYPES = ("docker", "kubernetes")


@pytest.mark.parametrize("kind", POOL_TYPES)
@pytest.mark.parametrize("pool", ["svd-cpu", "svd-gpu"])
def test_container_work_pool_templates_render(kind: str, pool: str) -> None:
    """Each template passes the server's own base-job-template check and renders with its defaults."""
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.templating import apply_values, find_placeholders

    template = json.loads((ROOT / "infra" / "work-pools" / kind / f"{pool}.json").read_text())
    WorkPoolCreate(name=pool, type=kind, base_job_template=template)  # every placeholder has a variable
    variables = template["variables"]["properties"]
    defaults = {name: spec.get("default") for name, spec in variables.items()}
    rendered = apply_values(template["job_configuration"], defaults)
    assert not find_placeholders(json.dumps(rendered)), "a placeholder was left unrendered"
    image = (
        rendered["image"]
        if kind == "docker"
        else rendered["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert image == ("svd-mlops:cuda" if pool == "svd-gpu" else "svd-mlops:cpu")
    if pool == "svd-gpu" and kind == "docker":
        assert rendered["container_create_kwargs"]["device_requests"][0]["capabilities"] == [["gpu"]]
    if pool == "svd-gpu" and kind == "kubernetes":
        limits = rendered["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == defaults["gpus"]
    script = (ROOT / "infra" / "create_work_pools.sh").read_text()
    assert "work-pools/$kind/$pool.json" in script


def test_gpu_workers_take_one_run_at_a_time() -> None:
    """The per-worker limit: one machine never takes two GPU trainings (plus the pool-wide limit)."""
    script = (ROOT / "infra" / "start_worker.sh").read_text()
    assert re.search(r"svd-gpu\)\s+limit=1", script), script
    assert "--limit" in script
    proc = subprocess.run(["bash", "-n", str(ROOT / "infra" / "start_worker.sh")], capture_output=True)
    assert proc.returncode == 0, proc.stderr


DOCKER_INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "CMD", "ENTRYPOINT", "LABEL", "USER",
                       "EXPOSE", "VOLUME", "SHELL", "HEALTHCHECK"}  # fmt: skip


def test_dockerfile_parses_and_copies_what_exists() -> None:
    text = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0].startswith(("ARG", "FROM")) and any(ln.startswith("FROM") for ln in lines)
    for line in lines:
        assert line.split()[0] in DOCKER_INSTRUCTIONS, line
    for line in lines:
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    args = {ln.split()[1].split("=")[0] for ln in lines if ln.startswith("ARG")}
    assert {"VARIANT", "TORCH_INDEX_CPU", "TORCH_INDEX_CUDA"} <= args  # the CPU and CUDA variants
    assert "requirements/lock.txt" in text and "torch==2.13.0" in text
    assert "torch==" in (ROOT / "requirements" / "lock.txt").read_text()


def test_slurm_recipe_parses_and_runs_a_recorded_commit() -> None:
    path = ROOT / "infra" / "slurm" / "train.sbatch"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, flags=re.M))
    assert "exclusive" in directives and directives["nodes"] == "1" and directives["gres"].startswith("gpu:")
    assert 'checkout --quiet --detach "$commit"' in text and "train all --ranks" in text


def test_failure_automation_is_a_valid_prefect_automation() -> None:
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load((ROOT / "infra" / "automations.yaml").read_text())
    (automation,) = spec["automations"]
    automation["actions"][0]["block_document_id"] = "00000000-0000-0000-0000-000000000000"
    parsed = AutomationCore.model_validate(automation)
    assert {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"} <= set(
        parsed.trigger.expect  # type: ignore[union-attr]
    )
    assert parsed.actions[0].type == "send-notification"


# --- events and artifacts ------------------------------------------------------------------------------
def _published(name: str, version: str, funnel: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": version,
        "rows": 2,
        "files": {"table": f"s3://b/curated/{name}/{version}/{name}.parquet"},
        "kept_fraction": 0.5 if funnel else None,
        "funnel": funnel,
        "validation": {"success": True},
    }


FUNNEL = {
    "input_rows": 4,
    "input_hours": 0.01,
    "filters": {
        "flow_score": {"removed_alone_rows": 1, "removed_in_order_rows": 1, "remaining_rows": 3,
                       "remaining_fraction": 0.75, "remaining_hours": 0.007},
        "clip_score": {"removed_alone_rows": 2, "removed_in_order_rows": 1, "remaining_rows": 2,
                       "remaining_fraction": 0.5, "remaining_hours": float("nan")},
    },
}  # fmt: skip


def test_events_only_for_versions_that_changed() -> None:
    cfg = DatasetBuildConfig(out="s3://b")
    built = {"datasets": {"lvd_f": _published("lvd_f", "v2"), "lvd_10m": _published("lvd_10m", "v1")}}
    events = reporting.dataset_published_events(cfg, built, {"lvd_f": "v1", "lvd_10m": "v1"}, "run9")
    assert [e["resource"]["prefect.resource.id"] for e in events] == ["svd.dataset.lvd_f"]
    payload = events[0]["payload"]
    assert payload["previous_version"] == "v1" and payload["version"] == "v2"
    assert payload["curated_uri"] == "s3://b/curated" and payload["mlflow_run_id"] == "run9"
    assert reporting.dataset_published_events(cfg, built, {"lvd_f": "v2", "lvd_10m": "v1"}, "r") == []


def test_current_dataset_versions_reads_the_pointers(tmp_path: Path) -> None:
    import pandas as pd

    from svd_core.curation.publish import publish_dataset

    cfg = DatasetBuildConfig(out=str(tmp_path))
    assert reporting.current_dataset_versions(cfg) == {"lvd_f": None, "lvd_10m": None, "lvd_10m_f": None}
    published = publish_dataset(cfg.curated_uri, "lvd_f", pd.DataFrame({"clip_id": ["a"]}))
    assert reporting.current_dataset_versions(cfg)["lvd_f"] == published.version


def test_dataset_artifacts_funnel_versions_and_dashboard_links(tmp_path: Path) -> None:
    built = {"datasets": {"lvd_f": _published("lvd_f", "v2", FUNNEL), "lvd_10m": _published("lvd_10m", "v1")}}
    lvd = {"videos": 2, "clips": 4, "hours": 0.01, "quarantined": 1, "lvd_uri": "s3://b/lvd/lvd.parquet"}
    art = reporting.dataset_artifacts(lvd, built, "run1", ["lvd_f"], home=tmp_path)
    funnel = art.tables["svd-dataset-funnel"]
    assert [(r["dataset"], r["step"], r["remaining_rows"]) for r in funnel] == [
        ("lvd_f", "input", 4), ("lvd_f", "flow_score", 3), ("lvd_f", "clip_score", 2)
    ]  # fmt: skip
    assert funnel[2]["remaining_hours"] is None  # NaN is not JSON
    assert {tuple(r) for r in funnel} == {tuple(funnel[0])}  # same columns on every row
    assert "| lvd_f | v2 | True | 2 | 0.5 | True |" in art.markdown
    assert "| lvd_10m | v1 | False |" in art.markdown and "run1" in art.markdown
    assert reporting.DASHBOARD_URL in art.markdown
    assert f"{tmp_path / 'dashboard' / 'index.html'}" in art.markdown and "not built yet" in art.markdown
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "dashboard" / "index.html").write_text("<html></html>")
    assert "not built yet" not in reporting.dataset_artifacts(lvd, built, "r", home=tmp_path).markdown


def test_training_artifacts_list_models_with_lineage(tmp_path: Path) -> None:
    tags = {"svd.stage": "finetune", "svd.parent_model_version": "models:/svd-video/2",
            "svd.dataset_version": "sha256:ab", "svd.dataset_uri": "s3://b/t.parquet",
            "svd.config_hash": "c0ffee", "svd.git_commit": "1234"}  # fmt: skip
    models = [
        ResolvedModel("svd-video", "2", "r2", {"svd.stage": "video"}),
        ResolvedModel("svd", "5", "r5", tags),
    ]
    art = reporting.training_artifacts(models, home=tmp_path)
    rows = art.tables["svd-model-lineage"]
    assert rows[1] == {"model": "models:/svd/5", "stage": "finetune", "parent_model_version": "models:/svd-video/2",
                       "dataset_version": "sha256:ab", "dataset_uri": "s3://b/t.parquet",
                       "config_hash": "c0ffee", "git_commit": "1234"}  # fmt: skip
    assert rows[0]["parent_model_version"] == ""
    assert "svd eval promote --challenger models:/svd/5" in art.markdown
    assert reporting.DASHBOARD_URL in art.markdown


def test_study_and_promotion_artifacts(tmp_path: Path) -> None:
    board = [
        {"model": "svd/2", "rating": 1012.3456789, "lower": float("nan")},
        {"model": "svd/1", "rating": 988.0},
    ]
    art = reporting.leaderboard_artifacts("s1", board, home=tmp_path)
    assert art.tables["svd-leaderboard"][0] == {"model": "svd/2", "rating": 1012.3457, "lower": None}
    waiting = reporting.leaderboard_artifacts("s2", None, home=tmp_path)
    assert waiting.tables == {} and "svd eval create-study" in waiting.markdown
    outcome = {
        "promoted": False,
        "champion": "models:/svd/1",
        "evidence": {"min_lower_bound": 0.5, "synthetic": True, "confidence": 0.95,
                     "questions": {"overall": {"win_rate": 0.6, "lower": 0.45, "passed": False}}},
    }  # fmt: skip
    art = reporting.promotion_artifacts("models:/svd/2", outcome, home=tmp_path)
    assert "**not promoted**" in art.markdown and "models:/svd/1" in art.markdown
    assert art.tables["svd-promotion-evidence"] == [
        {"question": "overall", "win_rate": 0.6, "lower": 0.45, "passed": False}
    ]
    first = reporting.promotion_artifacts("models:/svd/1", {"promoted": True, "champion": "models:/svd/1",
                                                              "reason": "no champion yet"}, home=tmp_path)  # fmt: skip
    assert first.tables == {} and "no champion yet" in first.markdown


# --- integration: deploy to the local stack, run on a worker, read back through the API ---------------
def _cli_env(stack: RunningStack, tmp: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SVD_", "MLFLOW_", "PREFECT_", "AWS_"))}
    return {
        **base,
        **stack.client_env(),
        "SVD_HOME": str(tmp / "svd_home"),  # the stack's URLs come from the environment, not its stack.env
        "PREFECT_API_URL": stack.urls["SVD_PREFECT_API_URL"],
        "PREFECT_HOME": str(tmp / "prefect_home"),
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT": PREFECT_BIN,
    }


def _run(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _worker_run_once(pool: str, env: dict[str, str], log: Path, timeout: float = 240) -> None:
    """A process worker that takes what is due now, runs it to the end and exits; killed on timeout."""
    command = [PREFECT_BIN, "worker", "start", "--pool", pool, "--type", "process", "--run-once",
               "--install-policy", "never"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker did not finish in {timeout}s:\n{log.read_text()[-4000:]}")
    finally:
        if proc.poll() is None:  # timed out or interrupted: stop the worker and its flow-run process
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-4000:]


def _raw_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sample = tmp_path_factory.getbasetemp() / "lvd-sample-0"  # shared with the other LVD tests
    if not (sample / GROUND_TRUTH).exists():
        write_sample_set(sample, seed=0)
    raw = tmp_path_factory.mktemp("deploy-raw")
    shutil.copy(sample / "v00_static_cuts.mp4", raw / "v00_static_cuts.mp4")  # one video: 3 clips
    return raw


async def _read_back(
    api_url: str, run_id: str, train_deployment: str, timeout_s: float = 60
) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            )
            ids = [run.id, *(c.id for c in children)]
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
            deadline, triggered = time.monotonic() + timeout_s, []
            while not triggered and time.monotonic() < deadline:  # the automation acts asynchronously
                triggered = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[train_deployment]))
                )
                await asyncio.sleep(1)
            for flow_run in triggered:  # no worker serves svd-gpu here; leave nothing scheduled behind
                await client.delete_flow_run(flow_run.id)
            automations = await client.read_automations()
    return {"run": run, "children": children, "artifacts": artifacts, "triggered": triggered,
            "automations": automations}  # fmt: skip


@pytest.mark.integration
def test_deploy_and_run_the_nightly_build_on_a_worker(
    stack: RunningStack, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = _cli_env(stack, tmp_path)
    raw = _raw_videos(tmp_path_factory)
    _run(["bash", "infra/create_work_pools.sh"], env)
    # The working tree under test may hold uncommitted changes, which the real pull step (a clone of the
    # recorded commit, tested above) would not run: this deploy runs from the working tree instead.
    project = _project()
    project["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    dev_file = tmp_path / "prefect.yaml"
    dev_file.write_text(yaml.safe_dump(project, sort_keys=False))
    deployed = _run([PREFECT_BIN, "deploy", "--all", "--no-prompt", "--prefect-file", str(dev_file)], env)
    for name in ("build_dataset_from_config/nightly", "build_lvd_from_config/on-demand",
                 "train_all_from_config/on-new-dataset", "promote_candidate/weekly"):  # fmt: skip
        assert f"Deployment '{name}' successfully created" in deployed, deployed[-3000:]

    out = tmp_path / "data"
    overrides = [
        f"source={raw}",
        f"out={out}",
        "lvd.models.craft_weights=null",
        "filter.scores.text_area_ratio.enabled=false",  # CPU-cheap
        "validation.kept_fraction=[0.0,1.0]",
    ]  # fmt: skip  (one video: the paper's band is meaningless)
    started = _run([PREFECT_BIN, "deployment", "run", "build_dataset_from_config/nightly",
                    "--param", f"overrides={json.dumps(overrides)}"], env)  # fmt: skip
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started)[1]  # type: ignore[index]
    _worker_run_once("svd-cpu", env, tmp_path / "worker.log")

    got = asyncio.run(_read_back(stack.urls["SVD_PREFECT_API_URL"], run_id, "on-new-dataset"))
    assert got["run"].state.is_completed(), got["run"].state
    (child,) = got["children"]
    assert child.state.is_completed() and child.parameters["cfg"]["source"] == str(raw)
    artifacts = {a.key: a for a in got["artifacts"]}
    assert {a.flow_run_id for a in got["artifacts"]} == {child.id}
    assert set(artifacts) == {"svd-dataset-build", "svd-dataset-funnel"}
    summary = artifacts["svd-dataset-build"].data
    assert reporting.DASHBOARD_URL in summary and str(tmp_path / "svd_home" / "dashboard") in summary
    funnel = json.loads(artifacts["svd-dataset-funnel"].data)
    assert [r["step"] for r in funnel if r["dataset"] == "lvd_f"][:2] == ["input", "flow_score"]

    from svd_core.curation.publish import current_version

    table = current_version(str(out / "curated"), "lvd_f").files["table"]  # type: ignore[union-attr]
    assert f"| lvd_f | {Path(table).parent.name} | True |" in summary
    (training,) = got["triggered"]  # the svd.dataset.published event started exactly one training run
    assert training.parameters["data"] == table
    assert training.parameters["configs"]["finetune"] == "configs/train/finetune.yaml"
    assert any(a.name == "on-new-dataset__automation_1" for a in got["automations"])
