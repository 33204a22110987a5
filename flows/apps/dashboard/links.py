"""Links from the dashboard to the MLflow UI and the Prefect UI, or the commands that start one.

A link is made only where a UI is known to be served: the tracking URI is an MLflow server (http/https),
`PREFECT_API_URL` names a Prefect server, or the user passed `--mlflow-ui` / `--prefect-ui` (`PREFECT_UI_URL`
is honoured as Prefect itself does). For the embedded defaults (an SQLite MLflow store, Prefect's ephemeral
server) the page shows the command that starts a UI on those stores instead of a link that cannot open.

URL formats are the UIs' own routes: MLflow `#/experiments/<exp>/runs/<run>`, `#/models/<name>/versions/<v>`,
`#/metric/?runs=[...]&metric=...` (its chart page); Prefect `/runs/flow-run/<id>`, `/flows/flow/<id>`.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

from flows.apps.dashboard.model import UiLinks
from flows.integrations import tags
from flows.settings import Settings, mask_url

PREFECT_FLOW_RUN_TAG = tags.PREFECT_FLOW_RUN
"""MLflow run tag holding the id of the Prefect flow run that logged the run (read when present)."""
MLFLOW_UI_PORT = 5000
PREFECT_UI_PORT = 4200
PREFECT_CLOUD_API = "https://api.prefect.cloud/api"
PREFECT_CLOUD_UI = "https://app.prefect.cloud"


def _without_credentials(url: str) -> str:
    """`https://user:token@host/x` -> `https://host/x` (a link must never carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def prefect_ui_from_api(api_url: str) -> str:
    """The UI of a Prefect API URL, as Prefect derives `PREFECT_UI_URL` (server: drop `/api`; Cloud: the app
    host with account/workspace routes)."""
    url = _without_credentials(api_url)
    if url.startswith(PREFECT_CLOUD_API):
        url = PREFECT_CLOUD_UI + url[len(PREFECT_CLOUD_API) :]
    if url.endswith("/api"):
        url = url[: -len("/api")]
    return url.replace("/api/", "/").replace("/accounts/", "/account/").replace("/workspaces/", "/workspace/")


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def ui_links(s: Settings, mlflow_ui: str | None = None, prefect_ui: str | None = None) -> UiLinks:
    """Where the UIs of the configured stores are, or how to start them."""
    links = UiLinks()
    tracking = s.resolved_tracking_uri
    if mlflow_ui:
        links.mlflow_ui = _without_credentials(mlflow_ui)
    elif _is_http(tracking):
        links.mlflow_ui = _without_credentials(tracking)
    else:
        command = ["mlflow", "ui", "--backend-store-uri", mask_url(tracking)]
        if s.resolved_registry_uri != tracking:
            command += ["--registry-store-uri", mask_url(s.resolved_registry_uri)]
        links.mlflow_command = shlex.join([*command, "--port", str(MLFLOW_UI_PORT)])
    prefect_env_ui = os.environ.get("PREFECT_UI_URL", "")
    if prefect_ui:
        links.prefect_ui = _without_credentials(prefect_ui)
    elif prefect_env_ui:
        links.prefect_ui = _without_credentials(prefect_env_ui)
    elif s.prefect_api_url:
        links.prefect_ui = prefect_ui_from_api(s.prefect_api_url)
    else:
        links.prefect_command = (
            f"PREFECT_HOME={shlex.quote(str(s.prefect_home))} prefect server start --port {PREFECT_UI_PORT}"
        )
    missing = []
    if not links.mlflow_ui:
        missing.append(f"--mlflow-ui http://127.0.0.1:{MLFLOW_UI_PORT}")
    if not links.prefect_ui:
        missing.append(f"--prefect-ui http://127.0.0.1:{PREFECT_UI_PORT}")
    if missing:
        links.rebuild_hint = "svd dashboard --out DIR " + " ".join(missing)
    return links


def prefect_api_of(links: UiLinks, s: Settings) -> str:
    """The Prefect API to read flow runs from: the configured one, else the one behind a given UI."""
    if s.prefect_api_url:
        return s.prefect_api_url
    if links.prefect_ui and not links.prefect_ui.startswith(PREFECT_CLOUD_UI):
        return links.prefect_ui + "/api"  # a self-hosted server serves its API under /api
    return ""


# --- URL builders (Jinja globals; each returns "" when the UI is unknown) ----------------------------------
def mlflow_run(links: UiLinks, experiment_id: str, run_id: str) -> str:
    if not links.mlflow_ui or not run_id:
        return ""
    if not experiment_id:
        return f"{links.mlflow_ui}/#/runs/{run_id}"  # MLflow's direct route redirects to the run page
    return f"{links.mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_experiment(links: UiLinks, experiment_id: str) -> str:
    return f"{links.mlflow_ui}/#/experiments/{experiment_id}" if links.mlflow_ui and experiment_id else ""


def mlflow_model(links: UiLinks, name: str, version: str = "") -> str:
    if not links.mlflow_ui:
        return ""
    base = f"{links.mlflow_ui}/#/models/{quote(name, safe='')}"
    return f"{base}/versions/{version}" if version else base


def mlflow_metric(links: UiLinks, key: str, run_ids: list[str], experiment_ids: list[str], log: bool) -> str:
    """MLflow's own chart of one metric over several runs (its metric page, every logged point)."""
    if not links.mlflow_ui or not run_ids:
        return ""
    query = "&".join(
        [
            f"runs={quote(json.dumps(run_ids, separators=(',', ':')))}",
            f"metric={quote(json.dumps(key))}",
            f"experiments={quote(json.dumps(sorted(set(experiment_ids)), separators=(',', ':')))}",
            f"plot_metric_keys={quote(json.dumps([key]))}",
            "x_axis=step",
            f"y_axis_scale={'log' if log else 'linear'}",
        ]
    )
    return f"{links.mlflow_ui}/#/metric/?{query}"


def prefect_flow_run(links: UiLinks, flow_run_id: str) -> str:
    return f"{links.prefect_ui}/runs/flow-run/{flow_run_id}" if links.prefect_ui and flow_run_id else ""


def prefect_flow(links: UiLinks, flow_id: str) -> str:
    return f"{links.prefect_ui}/flows/flow/{flow_id}" if links.prefect_ui and flow_id else ""


def prefect_deployment(links: UiLinks, deployment_id: str) -> str:
    if not links.prefect_ui or not deployment_id:
        return ""
    return f"{links.prefect_ui}/deployments/deployment/{deployment_id}"


URL_BUILDERS: dict[str, Callable[..., str]] = {
    "mlflow_run": mlflow_run,
    "mlflow_experiment": mlflow_experiment,
    "mlflow_model": mlflow_model,
    "mlflow_metric": mlflow_metric,
    "prefect_flow_run": prefect_flow_run,
    "prefect_flow": prefect_flow,
    "prefect_deployment": prefect_deployment,
}
