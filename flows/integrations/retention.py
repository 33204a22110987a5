"""Dataset versions still in use, so retention never deletes what a registered model was trained on.

Every registered model version carries its training data's lineage tags (`svd.dataset_version`: the
table's content hash; `svd.dataset_uri`: where it was read), written by `training_run`. Publishing
(svd_core.curation.publish) keeps any version one of them points at, whatever `keep_versions` says.
Queued or scheduled training runs are not consulted: they read the dataset's CURRENT pointer when they
start, and CURRENT is never pruned.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flows.integrations import tags, tracking

PAGE = 1000


def dataset_refs_in_use() -> set[str]:
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
