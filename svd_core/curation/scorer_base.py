"""The interface every clip scorer implements (flow, camera motion, text, aesthetics, CLIP, captions).

Scorers run in a fixed order over the same `SampledFrames` (one decode pass per clip). Each returns a
dict of LVD columns; later scorers see earlier results in `row` (CLIP score reads the caption).

Learned scorers may also implement the batch interface (`BatchClipScorer.score_batch`): the frames of many
clips stacked into one forward pass per model, with the same results as `score` clip by clip (up to float
rounding). `score_many` calls it when a scorer has it and falls back to `score` per clip otherwise, so the
score stage (svd_core.curation.score_stage) batches any scorer that implements it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class BatchClipScorer(ClipScorer, Protocol):
    """A scorer that scores many clips in one call (one forward per model over all their frames)."""

    def score_batch(
        self, frames: Sequence[SampledFrames], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """One result per clip, in order: what `score(frames[i], rows[i])` returns for each."""
        ...


def is_batched(scorer: ClipScorer) -> bool:
    """Whether the scorer implements `score_batch` (learned scorers do; flow and camera do not)."""
    return callable(getattr(scorer, "score_batch", None))


def score_many(
    scorer: ClipScorer, frames: Sequence[SampledFrames], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`scorer` over many clips: its `score_batch` when it has one, else `score` clip by clip."""
    if len(frames) != len(rows):
        raise ValueError(f"{len(frames)} frame sets for {len(rows)} rows")
    batch = getattr(scorer, "score_batch", None)
    if not callable(batch):
        return [scorer.score(f, r) for f, r in zip(frames, rows, strict=True)]
    results = list(batch(frames, rows))
    if len(results) != len(frames):
        raise ValueError(f"scorer {scorer.name!r} returned {len(results)} results for {len(frames)} clips")
    return results
