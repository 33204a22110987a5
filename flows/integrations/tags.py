"""Every MLflow tag name the platform writes (`svd.*`), in one place.

Run tags describe a tracking run; version tags (the lineage) sit on registered model versions, where the
dashboard, promotion and reruns read them. Tag *values* stay strings, as MLflow stores them.
"""

from __future__ import annotations

PREFIX = "svd."

# --- run tags ----------------------------------------------------------------------------------------
KIND = "svd.kind"
"""What a run is: `train`, `dataset`, `study`, `ablation`, ..."""
REGISTERED_MODEL = "svd.registered_model"
"""On a training run: the `models:/NAME/N` it registered."""
STUDY_ID = "svd.study_id"
SYNTHETIC = "svd.synthetic"
SYNTHETIC_LABEL = "SYNTHETIC votes (automatic rater, not humans)"
"""How reports, the CLI and the dashboard name votes from the synthetic rater (issue 15: always labelled)."""
PREFECT_FLOW_RUN = "svd.prefect_flow_run_id"
"""Id of the Prefect flow run that logged an MLflow run (set by `tracking.run` inside a flow)."""
"""`true` when the votes of a study came from the synthetic rater, never from people."""

# --- lineage: on training runs and on the registered versions ----------------------------------------
STAGE = "svd.stage"
LINEAGE_KEY = "svd.lineage_key"
"""sha256 of (config without local paths, exact parent version, data content version): equal keys mean a
rerun would train the same model, so the registered version is reused."""
PARENT_MODEL_VERSION = "svd.parent_model_version"
"""The parent as `models:/NAME/N` (never an alias: an alias moves, a version does not)."""
DATASET_VERSION = "svd.dataset_version"
DATASET_URI = "svd.dataset_uri"
CONFIG_HASH = "svd.config_hash"
GIT_COMMIT = "svd.git_commit"
CONDITIONING = "svd.conditioning"

# --- task-specific lineage ---------------------------------------------------------------------------
MOTION_CLASS = "svd.motion_class"
LORA_RANK = "svd.lora_rank"
LORA_TARGETS = "svd.lora_targets"
INTERPOLATION_FACTOR = "svd.interpolation_factor"
BASE_KIND = "svd.base_kind"

LINEAGE = (STAGE, PARENT_MODEL_VERSION, DATASET_VERSION, DATASET_URI, CONFIG_HASH, LINEAGE_KEY, GIT_COMMIT)
"""The lineage every registered version carries (task-specific tags come on top)."""
