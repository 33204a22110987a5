"""Dataset versions still in use, so retention never deletes what a model or a queued run needs.

Two kinds of user:
- Registered model versions carry their training data's lineage tags (`svd.dataset_version`: the table's
  content hash; `svd.dataset_uri`: where it was read), written by `training_run`.
- Prefect flow runs that have not finished (scheduled, late, pending, running, paused) carry their
  parameters, and a training run queued against a pinned version names it there: a table URI inside the
  version folder, the folder itself, the version name, or a content version, anywhere in the parameters
  (a nested config, a list of `key=value` overrides). A run that reads the dataset's CURRENT pointer needs
  nothing kept: CURRENT is never pruned.

Publishing (svd_core.curation.publish) keeps any version one of these refs points at, whatever
`keep_versions` says. `dataset_refs_in_use` asks both the MLflow registry and the Prefect API (the
configured server, or the ephemeral one with its local database); an unreachable one raises instead of
letting retention guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mlflow.tracking import MlflowClient

from flows.integrations import tags, tracking
from svd_core.curation.publish import VERSION_PATTERN

PAGE = 1000
FLOW_RUN_PAGE = 200
"""Flow runs per API call (the Prefect server's default cap on `limit`)."""
IN_FLIGHT_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
"""Flow-run state types that may still read their dataset. Late and AwaitingRetry are SCHEDULED-type
states; a paused run resumes with the same parameters."""


def dataset_refs_in_use(flow_runs: bool = True) -> set[str]:
    """Every dataset ref a registered model version's lineage tags hold, plus (with `flow_runs`) every
    ref in the parameters of a flow run that has not finished (`queued_run_refs`)."""
    refs = registered_model_refs()
    if flow_runs:
        refs |= queued_run_refs()
    return refs


def registered_model_refs() -> set[str]:
    """Every `svd.dataset_version` and `svd.dataset_uri` tag value over all registered model versions."""
    tracking.configure()
    client = MlflowClient()
    refs: set[str] = set()
    token: str | None = None
    while True:
        page = client.search_model_versions(max_results=PAGE, page_token=token)
        for version in page:
            for tag in (tags.DATASET_VERSION, tags.DATASET_URI):
                value = (version.tags or {}).get(tag)
                if value:
                    refs.add(str(value))
        token = page.token
        if not token:
            return refs


def queued_run_refs() -> set[str]:
    """Dataset refs in the parameters of every flow run in an IN_FLIGHT_STATES state (see
    `refs_in_parameters`)."""
    tracking.configure()  # exports the configured PREFECT_API_URL (or the ephemeral server's home) first
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    states = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in IN_FLIGHT_STATES]))
    refs: set[str] = set()
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=states),
                sort=FlowRunSort.ID_DESC,
                limit=FLOW_RUN_PAGE,
                offset=offset,
            )
            for run in runs:
                refs |= refs_in_parameters(run.parameters)
            if len(runs) < FLOW_RUN_PAGE:
                return refs
            offset += FLOW_RUN_PAGE


def refs_in_parameters(parameters: Any) -> set[str]:
    """The strings of a flow run's parameters that can name a dataset version, as `publish._in_use`
    matches them: every string at any depth; the value of a `key=value` override; and a version folder
    (a path ending in a version name) also as `<folder>/`, so that everything inside it counts as used."""
    refs: set[str] = set()
    for text in _strings(parameters):
        for candidate in (text, text.partition("=")[2]) if "=" in text else (text,):
            value = candidate.strip()
            if not value:
                continue
            refs.add(value)
            if VERSION_PATTERN.match(value.rstrip("/").rsplit("/", 1)[-1]) and "/" in value.rstrip("/"):
                refs.add(value.rstrip("/") + "/")
    return refs


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        yield from _strings_of(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        yield from _strings_of(value)


def _strings_of(values: Iterable[Any]) -> Iterator[str]:
    for item in values:
        yield from _strings(item)
