"""Team dashboard: a static site built from MLflow and Prefect (datasets, interactive training curves,
registry with sample videos, studies with their side-by-side pairs and votes, ablations, flow runs), every
run, model and flow run linked to its page in the MLflow and Prefect UIs (docs/dashboard.md).

`build_site(out)` collects (`collect.collect`) and renders (`render.render`) into `out/index.html`;
`make_server(out)` serves a built site on loopback. `svd dashboard` (flows.cli.dashboard) runs both.
"""

from flows.apps.dashboard.site import SiteSummary, build_site, make_server

__all__ = ["SiteSummary", "build_site", "make_server"]
