"""Team dashboard: a static site built from MLflow (datasets, training, registry, studies, ablations).

`build_site(out)` collects (`collect.collect`) and renders (`render.render`) into `out/index.html`;
`make_server(out)` serves a built site on loopback. `svd dashboard` (flows.cli.dashboard) runs both.
"""

from flows.apps.dashboard.site import SiteSummary, build_site, make_server

__all__ = ["SiteSummary", "build_site", "make_server"]
