"""The interface every clip scorer implements (flow, camera motion, text, aesthetics, CLIP, captions).

Scorers run in a fixed order over the same `SampledFrames` (one decode pass per clip). Each returns a
dict of LVD columns; later scorers see earlier results in `row` (CLIP score reads the caption).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from svd_core.video.frames import SampledFrames


class ClipScorer(Protocol):
    name: str
    """Key in the LVD `scorer_versions` JSON, e.g. "flow", "craft", "aesthetic"."""
    version: str
    """Code version plus a hash of the weights used, so results are traceable and caches invalidate."""

    @property
    def columns(self) -> tuple[str, ...]:
        """LVD columns this scorer fills (see svd_core.curation.schema); read-only, so a fixed-size tuple fits."""
        ...

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        """Return values for `columns` (None where the scorer cannot say, never an invented number)."""
        ...
