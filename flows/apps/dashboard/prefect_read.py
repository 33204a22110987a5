"""Recent Prefect flow runs from a Prefect server's API (the dashboard's "Flow runs" section).

Only a server is read: with the embedded default (Prefect's ephemeral server) there is no API to ask
without starting one, and the page shows the command that serves a UI on that database instead.
"""

from __future__ import annotations

from datetime import UTC

from flows.apps.dashboard.model import FlowRun

MAX_FLOW_RUNS = 50


def recent_flow_runs(api_url: str, limit: int = MAX_FLOW_RUNS) -> list[FlowRun]:
    """The newest flow runs (by expected start) with their flow names; raises on an unreachable API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit)
        flow_ids = sorted({run.flow_id for run in runs}, key=str)
        flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids))) if flow_ids else []
    names = {flow.id: flow.name for flow in flows}
    out = []
    for run in runs:
        start = run.start_time or run.expected_start_time
        state = run.state
        out.append(
            FlowRun(
                id=str(run.id),
                name=run.name,
                flow_id=str(run.flow_id),
                flow_name=names.get(run.flow_id, ""),
                state=(state.name if state is not None else "") or "",
                state_type=(state.type.value if state is not None else "").lower(),
                started=start.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if start is not None else "",
                duration_s=run.total_run_time.total_seconds() if run.total_run_time else None,
                deployment_id=str(run.deployment_id or ""),
            )
        )
    return out
