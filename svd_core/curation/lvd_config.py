"""Config of the LVD build: decoding limits, the cut-detection cascade, clip encoding, scoring, camera labels.

Defaults follow the paper where it gives numbers (Farneback at 2 fps, flow maps with a 16 px short side)
and were tuned on the generated sample set (`svd data sample`) elsewhere; each such field says why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from svd_core.config import StageConfig
from svd_core.curation.learned_config import LearnedScorersConfig


class DecodeConfig(StageConfig):
    """What the decoder accepts and how long it may take."""

    timeout_s: float = Field(900.0, gt=0)
    """Wall-clock limit for one source video (probe, decode, clip encoding and scoring). A video that
    takes longer (a decoder stuck on a corrupt stream) is quarantined with stage `decode` and the run goes
    on. Budget about 4x real time for 720p on one CPU core plus the learned scorers."""
    max_pixels: int = Field(3840 * 2160, ge=64 * 64)
    """Largest width*height accepted (4K UHD). Bigger headers (e.g. 8192x8192) are quarantined at the probe
    before a single frame is decoded: they are rare, memory-hungry and usually broken or synthetic."""
    min_decoded_fraction: float = Field(0.9, gt=0, le=1)
    """A video whose decodable frames end before this fraction of its declared duration is truncated and
    quarantined (its tail was lost in transfer; the clips it would give are incomplete)."""
    decoder_threads: int = Field(0, ge=0)
    """Decoder threads per video (0 = FFmpeg's choice). With one task per core, 1 avoids oversubscription."""


class GradualLevel(StageConfig):
    """One level of the cascade for gradual transitions: frames sampled at `fps`, compared two samples apart."""

    fps: float = Field(gt=0)
    """Sampling rate of this level; it sees transitions lasting up to about 2/fps seconds."""
    threshold: float = Field(gt=0)
    """Smallest mean absolute difference (0-255, YUV thumbnails) between the samples before and after."""
    max_residual: float = Field(gt=0, lt=1)
    """The middle sample must lie within this relative distance of the straight line between its
    neighbours (a dissolve is a linear blend; motion is not). Coarser levels see more motion inside a
    window, so they allow more."""


class CutConfig(StageConfig):
    """The cut-detection cascade (paper: PySceneDetect detectors at several frame rates and thresholds).

    Levels: (1) hard cuts at the full frame rate, a jump that stands out from its neighbours (adaptive, so a
    fast pan does not split) and whose old content does not come back within `flash_window_s` (so a camera
    flash does not split); (2) fades through black, from runs of dark frames; (3) dissolves at each level of
    `gradual_levels`, accepted only where the middle sample is a blend of its neighbours (a pan or a moving
    object is not). Differences are mean absolute values on YUV thumbnails with a `analysis_short_side`.
    """

    analysis_short_side: int = Field(32, ge=8, le=256)
    """Short side (px) of the thumbnails every level compares; small keeps detection cheap and noise-free."""
    hard_threshold: float = Field(12.0, gt=0)
    """Smallest frame-to-frame difference (0-255) that can be a hard cut. Sample set: cuts 25-70, a 1.0
    frame-width/s pan at most 9, static shots below 1."""
    hard_ratio: float = Field(3.0, gt=1)
    """A hard cut's difference must be this many times the median of its neighbours'; a fast pan has large
    but steady differences (ratio ~1), a cut inside it still stands out (ratio > 4 on the sample set)."""
    adaptive_window_s: float = Field(0.2, gt=0)
    """Neighbours on each side that set the local level for `hard_ratio`."""
    flash_window_s: float = Field(0.4, gt=0)
    """A jump whose previous content returns within this time is a flash (or a very short insert), not a cut."""
    flash_return_ratio: float = Field(0.35, gt=0, lt=1)
    """Content 'returns' when it differs from the pre-jump frame by less than this fraction of the jump (or no
    more than the same lag differed before the jump, which covers flashes during camera motion)."""
    dark_luma_max: float = Field(28.0, gt=0, lt=255)
    """A frame whose mean luma (coded Y, video black = 16) is below this is dark; a run of dark frames between
    brighter content is a fade through black and its middle is the cut."""
    fade_max_dark_s: float = Field(3.0, gt=0)
    """Longest dark run still read as a fade; longer dark stretches are content (a night scene)."""
    gradual_levels: tuple[GradualLevel, ...] = (
        GradualLevel(fps=6.0, threshold=14.0, max_residual=0.3),
        GradualLevel(fps=2.0, threshold=16.0, max_residual=0.5),
        GradualLevel(fps=0.6, threshold=18.0, max_residual=0.55),
    )
    """Dissolve levels (highest fps first); each compares samples 2/fps s apart on a grid of 0.5/fps s, so
    a level sees transitions up to ~1.5/fps s whole: 6 fps ~0.25 s, 2 fps ~0.75 s, 0.6 fps ~2.5 s. They run
    coarsest first; a finer detection inside an accepted transition is dropped. Residuals measured on the
    sample set (32 px thumbnails): dissolves 0.02-0.27 at 6 fps, <= 0.44 at 2 fps, <= 0.47 at 0.75 fps;
    pans, zooms and moving objects >= 0.48, >= 0.64 and >= 0.77 at the same rates. Thresholds: planted
    dissolves differ by 30-70 across, static shots by < 2, slow pans by 12-24 over 1-3 s."""
    min_clip_s: float = Field(2.0, gt=0)
    """Shots shorter than this give no clip (the SVD models train on 14-25 frames at 3-30 fps)."""
    short_clip_policy: Literal["drop", "merge"] = "drop"
    """`drop`: a shot shorter than min_clip_s is discarded. `merge`: the cut that starts the next shot is
    ignored, so the short shot joins it (the clip then spans a cut: use only for very fragmented footage).
    A short last shot is dropped either way."""
    max_clip_s: float | None = Field(None, gt=0)
    """Split shots longer than this into consecutive clips (null: one clip per shot, as in the paper)."""

    @model_validator(mode="after")
    def _check(self) -> CutConfig:
        fps = [level.fps for level in self.gradual_levels]
        if fps != sorted(fps, reverse=True):
            raise ValueError("cuts.gradual_levels must go from the highest fps to the lowest")
        if self.max_clip_s is not None and self.max_clip_s < self.min_clip_s:
            raise ValueError("cuts.max_clip_s must be >= cuts.min_clip_s (or null)")
        return self

    def lookahead_s(self) -> float:
        """How far past a frame the cascade must look before that frame's cut decision is final."""
        gradual = 2.5 / min((level.fps for level in self.gradual_levels), default=1e9)
        return max(self.flash_window_s + 2 * self.adaptive_window_s, self.fade_max_dark_s, gradual) + 0.5


class ClipConfig(StageConfig):
    """How clips are encoded and stored."""

    codec: str = "libx264"
    """FFmpeg encoder (H.264). Clips are re-encoded so their first and last frames are exact."""
    crf: int = Field(18, ge=0, le=51)
    """x264 constant rate factor: 18 is visually lossless for training data."""
    preset: str = "veryfast"
    """x264 speed preset; veryfast is ~2.5x faster than `fast` at ~5% larger files (measured here)."""
    max_short_side: int | None = Field(720, ge=16)
    """Clips larger than this are downscaled on encode (the models train at <= 576x1024); null keeps the
    source size. Also bounds the memory of the cut-decision buffer, which holds frames at this size."""
    shard_max_mb: float = Field(1024.0, gt=0)
    """A video's clips go to tar shards of at most about this size (WebDataset shards stream well at
    100 MB - 1 GB); a long video gets several."""
    encoder_threads: int = Field(0, ge=0)
    """x264 threads per clip (0 = x264's choice)."""
    x264_params: str = ""
    """Extra x264 options (x264-params syntax, e.g. `bframes=0:ref=2`); empty keeps the preset's."""


class ScoringConfig(StageConfig):
    """Frames every scorer shares (one decode pass) and the Farneback flow that motion and camera share."""

    sample_fps: float = Field(2.0, gt=0)
    """Scoring frames per second of clip (the paper's Farneback runs at 2 fps)."""
    frames_max_short_side: int = Field(256, ge=16)
    """Scoring frames are downscaled once to at most this short side (never upscaled)."""
    flow_compute_short_side: int = Field(64, ge=16)
    """Frames are resized to this short side for Farneback: fine enough for texture, coarse enough that a
    2 fps step of a 0.4 frame-width/s pan stays within the pyramid's reach."""
    flow_map_short_side: int = Field(16, ge=2)
    """Flow maps are area-averaged to this short side (the paper: 16 px) before scoring and camera fits."""
    farneback_levels: int = Field(4, ge=1, le=8)
    """Pyramid levels of cv2.calcOpticalFlowFarneback."""
    farneback_winsize: int = Field(11, ge=3)
    """Averaging window of cv2.calcOpticalFlowFarneback."""
    farneback_iterations: int = Field(3, ge=1)
    """Iterations per pyramid level."""


class CameraConfig(StageConfig):
    """Camera-motion labels from a robust similarity fit to the shared flow field.

    Rates are per second: translation in frame widths/heights, zoom as d ln(scale)/dt. Measured on the
    sample set: static shots (also with a moving object over 12% of the frame) fit below 0.001, the slowest
    planted pan is 0.2 and the slowest zoom 0.12 (measured within 2%): the static limits sit at a fifth of
    the slowest real motion, far above the noise.
    """

    static_max_translation: float = Field(0.04, gt=0)
    """Below this (frame widths or heights per second) on both axes, and zoom below static_max_zoom: static."""
    static_max_zoom: float = Field(0.04, gt=0)
    """Below this relative scale change per second (with small translation): static."""
    dominance_ratio: float = Field(2.5, gt=1)
    """A motion is `horizontal`, `vertical` or `zoom` when its rate is this many times each other's (zoom
    compared in the same units: relative scale per second vs. frame sizes per second)."""
    max_rotation_deg_s: float = Field(6.0, gt=0)
    """Rotation faster than this makes the clip `complex`."""
    min_inlier_fraction: float = Field(0.5, gt=0, le=1)
    """The similarity must explain at least this fraction of flow vectors (the rest: moving objects),
    else `complex`."""
    min_consistency: float = Field(0.6, gt=0, le=1)
    """The label must hold for at least this fraction of frame pairs, else `complex` (shaky, mixed moves)."""
    irls_iterations: int = Field(6, ge=1)
    """Reweighting rounds of the robust fit."""


class RunConfig(StageConfig):
    """How the Prefect flow spreads videos over workers (the library's build_lvd uses max_workers threads)."""

    task_runner: Literal["threads", "processes", "dask"] = "threads"
    """threads: ThreadPoolTaskRunner (one machine; decoding and OpenCV release the GIL). processes: a local
    Dask cluster of `max_workers` processes. dask: an existing Dask scheduler at `dask_address`."""
    max_workers: int = Field(2, ge=1)
    """Parallel videos (threads or local worker processes)."""
    dask_address: str | None = None
    """Scheduler address (tcp://host:8786) for task_runner=dask."""
    task_retries: int = Field(2, ge=0)
    """Retries of a video task after an unexpected error (storage hiccups); bad inputs are quarantined,
    not retried."""
    retry_delay_s: float = Field(5.0, ge=0)
    """Pause before a retry."""

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.task_runner == "dask" and not self.dask_address:
            raise ValueError("run.task_runner=dask needs run.dask_address (tcp://host:8786)")
        return self


class LvdConfig(StageConfig):
    """The LVD build: long videos -> clips (tar shards) + one table row per clip with every score."""

    decode: DecodeConfig = DecodeConfig()
    """Decoder limits and the per-video timeout."""
    cuts: CutConfig = CutConfig()
    """The cut-detection cascade and clip length rules."""
    clips: ClipConfig = ClipConfig()
    """Clip encoding and shard size."""
    scoring: ScoringConfig = ScoringConfig()
    """Shared scoring frames and the Farneback flow."""
    camera: CameraConfig = CameraConfig()
    """Camera-motion label thresholds."""
    models: LearnedScorersConfig = LearnedScorersConfig()
    """Learned scorers (text, aesthetics, CLIP score, captions); unset weights leave their columns null."""
    device: str = "auto"
    """Device for the learned scorers (auto, cpu, cuda[:N]); the non-learned pass runs on CPU."""
    run: RunConfig = RunConfig()
    """Parallelism of the flow."""
