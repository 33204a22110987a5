"""Column contract of the LVD table (`OUT/lvd.parquet`) and the quarantine table.

Producers (the LVD build) write these columns; consumers (filters, training data loading, dashboards)
read them by these names. Nullable score columns are null when their scorer is not configured: a
number is never invented.
"""

from __future__ import annotations

import pyarrow as pa

LVD_SCHEMA = pa.schema(
    [
        pa.field(
            "clip_id", pa.string(), nullable=False
        ),  # content address: source hash + frame range + encoding recipe
        pa.field("video_id", pa.string(), nullable=False),  # content hash of the source video
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field(
            "clip_uri", pa.string(), nullable=False
        ),  # shard URI + member, e.g. .../shard-000.tar#<clip_id>.mp4
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("width", pa.int64(), nullable=False),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field(
            "flow_score", pa.float64()
        ),  # mean Farneback magnitude: px on the 16-px map per sampling step (0.5 s at 2 fps)
        pa.field("text_area_ratio", pa.float64()),  # max over first/middle/last frame, in [0, 1]
        pa.field("aesthetic_score", pa.float64()),  # LAION predictor scale (~1..10)
        pa.field("clip_score", pa.float64()),  # cosine similarity caption vs key frames (mean), [-1, 1]
        pa.field(
            "caption", pa.string()
        ),  # the caption filters read: caption_merged, else image, video, metadata
        pa.field(
            "caption_source", pa.string()
        ),  # which: "image+video+llm" (or "image+llm", "video+llm") | "image" | "video" | "metadata"
        pa.field("caption_image", pa.string()),  # image captioner on the middle frame (paper: CoCa)
        pa.field("caption_video", pa.string()),  # video captioner on a frame grid (paper: VideoBLIP)
        pa.field("caption_merged", pa.string()),  # LLM merge of the image and video captions
        pa.field("caption_metadata", pa.string()),  # the source's title/description
        pa.field("caption_provenance", pa.string()),  # JSON {caption column: model class + weights hash}
        pa.field("camera_motion", pa.string()),  # static|horizontal|vertical|zoom_in|zoom_out|complex
        pa.field("cam_tx", pa.float64()),  # frame-widths per second
        pa.field("cam_ty", pa.float64()),  # frame-heights per second
        pa.field("cam_zoom", pa.float64()),  # relative scale change per second
        pa.field("scorer_versions", pa.string()),  # JSON {scorer: version/weights hash}
    ]
)

LVD_COLUMNS = [f.name for f in LVD_SCHEMA]
SCORE_COLUMNS = ["flow_score", "text_area_ratio", "aesthetic_score", "clip_score"]
"""Score columns a filter may threshold."""
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "flow_score": (0.0, 1e4),
    "text_area_ratio": (0.0, 1.0),
    "aesthetic_score": (0.0, 10.0),
    "clip_score": (-1.0, 1.0),
}
"""Valid range of each score (used by validation gates)."""
SCORE_SCORERS: dict[str, str] = {
    "flow_score": "flow",
    "text_area_ratio": "craft",
    "aesthetic_score": "aesthetic",
    "clip_score": "clip_score",
}
"""Score column -> the key its scorer writes into `scorer_versions` (the scorer's `name`): a row whose
`scorer_versions` names the scorer was scored by it, so a null there is the scorer's failure, not a scorer
left unconfigured (used by validation gates)."""
CAPTION_COLUMNS: dict[str, str] = {
    "caption_image": "image",
    "caption_video": "video",
    "caption_merged": "llm",
    "caption_metadata": "metadata",
}
"""Every caption the chain produced, kept in its own column -> the chain step that wrote it
(svd_core.curation.captioners); `caption` holds the one filters read, `caption_provenance` what made each.
Tables built before these columns existed read with them null."""

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # probe|decode|cuts|clip|score
    ]
)
