"""The whole dataset build in one config: raw videos -> LVD -> LVD-F (+ LVD-10M, LVD-10M-F) -> gate."""

from __future__ import annotations

from pydantic import Field

from svd_core.config import StageConfig
from svd_core.curation.filter_config import FilterConfig, SubsetConfig, ValidationConfig
from svd_core.curation.lvd_config import LvdConfig


class DatasetBuildConfig(StageConfig):
    """`svd data build` and the `build_dataset` Prefect flow (one code path, see flows/dataset_flow.py)."""

    source: str = "data/raw"
    """Raw long videos: a folder, an s3:// prefix, or a CSV/Parquet manifest of URIs."""
    out: str = "data"
    """Output root (path, file:// or s3://): LVD goes to OUT/lvd, published datasets to OUT/curated."""
    lvd: LvdConfig = LvdConfig()
    """Cut detection, clips and scores."""
    filter: FilterConfig = FilterConfig()
    """LVD -> LVD-F thresholds (the paper's percentiles by default)."""
    subset: SubsetConfig | None = SubsetConfig()
    """LVD-10M / LVD-10M-F; null to skip the subsets."""
    validation: ValidationConfig = ValidationConfig()
    """Great Expectations gate that every published table must pass."""
    keep_versions: int = Field(2, ge=1)
    """Published versions kept per dataset (the current one plus older ones for rollback)."""
    experiment: str = "datasets"
    """Tracking experiment the build is logged to."""

    @property
    def lvd_uri(self) -> str:
        return f"{self.out.rstrip('/')}/lvd"

    @property
    def curated_uri(self) -> str:
        return f"{self.out.rstrip('/')}/curated"
