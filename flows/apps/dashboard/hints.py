"""What to run when a section of the dashboard is empty: real `svd` commands, filled in from what the
store already holds (the newest LVD-F table, the registered versions), so each one can be pasted as is.

Every command here parses with the real CLI (tests/flows/apps/dashboard/test_dashboard.py checks it).
"""

from __future__ import annotations

import shlex

from flows.apps.dashboard.model import Dashboard

DEMO = "svd demo"
"""The whole loop at once (sample videos -> dataset -> stages I-III -> synthetic study -> dashboard)."""
SAMPLE_DATA = "svd data sample --out data/raw"
BUILD_DATA = "svd data build --config configs/data/build.yaml"
BUILD_LVD = "svd data build-lvd --source data/raw --out data/lvd"
DEFAULT_LVD_F = "data/curated/lvd_f"
"""Where `svd data build --config configs/data/build.yaml` publishes LVD-F (its `out: data`)."""
ABLATION_SPEC = "configs/eval/ablations/image_pretraining.yaml"


def _newest_tables(dash: Dashboard) -> tuple[str, str]:
    """(LVD-F table, LVD table) of the newest dataset build, "" where unknown."""
    if not dash.builds:
        return "", ""
    build = dash.builds[0]
    filtered = next((d.uri for d in build.datasets if d.funnel and d.uri), "")
    return filtered or next((d.uri for d in build.datasets if d.uri), ""), build.lvd_uri


def _sampleable_versions(dash: Dashboard) -> list[str]:
    """`models:/NAME/N` of registered video versions (stage I image models cannot be sampled), newest first."""
    return [
        f"models:/{m.name}/{v.version}"
        for m in dash.models
        for v in m.versions
        if v.tags.get("svd.stage", "") not in ("image", "multiview", "interpolation")
    ]


def suggestions(dash: Dashboard) -> dict[str, list[str]]:
    """Section -> commands that fill it, in order."""
    lvd_f, lvd = _newest_tables(dash)
    train = [f"svd train all --data {shlex.quote(lvd_f)}"] if lvd_f else [
        SAMPLE_DATA, BUILD_DATA, f"svd train all --data {DEFAULT_LVD_F}"
    ]  # fmt: skip
    versions = _sampleable_versions(dash)
    if len(versions) >= 2:
        studies = [f"svd eval run --model {versions[0]} --model {versions[1]} synthetic.enabled=true"]
    else:  # a study needs two video versions; the demo trains them and runs one
        studies = [DEMO]
    ablate = f"svd eval ablate --spec {ABLATION_SPEC}"
    ablations = [f"{ablate} data={shlex.quote(lvd)}"] if lvd else [SAMPLE_DATA, BUILD_LVD, ablate]
    return {
        "datasets": [SAMPLE_DATA, BUILD_DATA],
        "training": train,
        "registry": train,
        "studies": studies,
        "ablations": ablations,
        "flows": [f"{BUILD_DATA} --prefect"],
    }
