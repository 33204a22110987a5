"""A small, deterministic set of generated long videos with known cuts and camera motion, plus bad files.

Every hazard the LVD build must handle is planted: hard cuts, dissolves (short and slow), fades through
black, camera flashes inside a shot (must not split), a fast pan (must not split), pure pans, zooms, a
static camera with a moving object, rotation (complex), large on-screen text, variable frame rate, and
broken inputs (zero bytes, truncated, not a video, audio only, unknown codec, a huge resolution, a still
image). `ground_truth.json` next to the videos lists cut frame indices, shot labels and why each bad file
is bad; tests and the precision/recall report read it.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from svd_core.storage import atomic_local_write

WIDTH, HEIGHT, FPS = 320, 192, 25
GROUND_TRUTH = "ground_truth.json"


@dataclass(frozen=True)
class Shot:
    """One shot: a view of a generated scene through a moving camera."""

    seconds: float
    camera: str  # expected label: static|horizontal|vertical|zoom_in|zoom_out|complex
    pan: tuple[float, float] = (0.0, 0.0)  # camera velocity, frame widths / heights per second
    zoom: float = 0.0  # d ln(scale)/dt per second (> 0 zooms in)
    rotate_deg_s: float = 0.0
    moving_object: bool = False
    text: str | None = None
    flash_at_s: float | None = None
    transition: str = "hard"  # how this shot begins: hard | dissolve | fade
    transition_s: float = 0.0


@dataclass
class VideoSpec:
    name: str
    shots: list[Shot]
    vfr: bool = False


@dataclass
class ShotTruth:
    start: int
    end: int
    camera: str
    text: bool
    moving_object: bool
    flash_frames: list[int] = field(default_factory=list)
    cam_tx: float = 0.0
    cam_ty: float = 0.0
    cam_zoom: float = 0.0


def sample_specs() -> list[VideoSpec]:
    """The planted videos (about 100 s in all at 320x192, 25 fps)."""
    return [
        VideoSpec(
            "v00_static_cuts.mp4",
            [
                Shot(4, "static"),
                Shot(4, "static", text="BIG SALE|50% OFF"),
                Shot(4, "static"),
            ],
        ),
        VideoSpec(
            "v01_pans_dissolve.mp4",
            [
                Shot(6, "horizontal", pan=(0.25, 0.0)),
                Shot(5, "vertical", pan=(0.0, 0.25), transition="dissolve", transition_s=1.0),
                Shot(5, "static", flash_at_s=2.0),
            ],
        ),
        VideoSpec(
            "v02_zoom_fades.mp4",
            [
                Shot(5, "zoom_in", zoom=0.15),
                Shot(5, "zoom_out", zoom=-0.15, transition="fade", transition_s=0.6),
                Shot(6, "static", moving_object=True, transition="dissolve", transition_s=2.0),
            ],
        ),
        VideoSpec(
            "v03_fast_pan.mp4",
            [
                Shot(6, "horizontal", pan=(0.8, 0.0)),  # 13 px per frame; near the 2 fps limit (0.9)
                Shot(4, "static", flash_at_s=1.5),
                Shot(4, "static", moving_object=True, text="LIVE|NEWS 24"),
            ],
        ),
        VideoSpec(
            "v04_vfr.mp4",
            [Shot(6, "horizontal", pan=(-0.2, 0.0)), Shot(6, "vertical", pan=(0.0, -0.2))],
            vfr=True,
        ),
        VideoSpec(
            "v05_mixed.mp4",
            [
                Shot(3, "static", text="CHAPTER|ONE"),
                Shot(5, "complex", pan=(0.08, 0.05), rotate_deg_s=20.0),
                Shot(4, "zoom_out", zoom=-0.12, transition="dissolve", transition_s=0.4),
                Shot(5, "horizontal", pan=(0.3, 0.0), flash_at_s=2.5),
                Shot(1, "static"),  # shorter than min_clip_s: gives no clip
                Shot(4, "static", moving_object=True),
            ],
        ),
    ]


def _scene(rng: np.random.Generator, height: int, width: int, hue: int | None = None) -> np.ndarray:
    """A textured world image around one hue (OpenCV scale 0-180)."""
    hue = int(rng.integers(0, 180)) if hue is None else hue
    hsv = np.empty((height, width, 3), np.uint8)
    hsv[..., 0] = (hue + rng.integers(-12, 12, (height, width))) % 180
    hsv[..., 1] = 150
    hsv[..., 2] = np.linspace(90, 200, width, dtype=np.uint8)[None, :]
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    for _ in range(int(height * width / 900)):
        color = cv2.cvtColor(
            np.array(
                [[[(hue + rng.integers(-40, 40)) % 180, rng.integers(60, 255), rng.integers(40, 255)]]],
                np.uint8,
            ),
            cv2.COLOR_HSV2RGB,
        )[0, 0]
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(4, 28))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), size, color.tolist(), -1)
        else:
            cv2.rectangle(img, (x, y), (x + size, y + int(rng.integers(4, 28))), color.tolist(), -1)
    noise = cv2.GaussianBlur(rng.normal(0, 18, (height, width)).astype(np.float32), (0, 0), 1.2)
    return np.clip(img.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)


class ShotRenderer:
    """Renders frame t (seconds from the shot start) of one shot."""

    def __init__(self, shot: Shot, rng: np.random.Generator, hue: int | None = None):
        self.shot = shot
        travel = max(abs(shot.pan[0]), abs(shot.pan[1])) * shot.seconds
        widen = float(np.exp(max(-shot.zoom, 0.0) * shot.seconds))  # a zoom out ends this much wider
        margin = 1.0 + travel + widen + (1.0 if shot.rotate_deg_s else 0.0)
        self.world = _scene(rng, int(HEIGHT * margin), int(WIDTH * margin), hue)
        self.center0 = np.array([self.world.shape[1] / 2, self.world.shape[0] / 2], np.float64)
        self.center0 -= np.array(shot.pan) * np.array([WIDTH, HEIGHT]) * shot.seconds / 2
        contrast = None if hue is None else (hue + 90) % 180  # the object stands out from its background
        self.object_sprite = _scene(rng, 96, 96, contrast) if shot.moving_object else None

    def frame(self, t: float) -> np.ndarray:
        shot = self.shot
        # World pixels per output pixel: exp(-zoom * t), so the image scale changes by exp(zoom * t).
        world_per_px = float(np.exp(-shot.zoom * t))
        theta = np.deg2rad(shot.rotate_deg_s * t)
        center = self.center0 + np.array(shot.pan) * np.array([WIDTH, HEIGHT]) * t
        cos, sin = np.cos(theta) * world_per_px, np.sin(theta) * world_per_px
        # Inverse map: output (x, y) -> world coordinates around `center`.
        m = np.array(
            [
                [cos, -sin, center[0] - (cos * WIDTH / 2 - sin * HEIGHT / 2)],
                [sin, cos, center[1] - (sin * WIDTH / 2 + cos * HEIGHT / 2)],
            ]
        )
        img = cv2.warpAffine(self.world, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if self.object_sprite is not None:
            self._draw_object(img, t)
        if shot.text:
            _draw_text(img, shot.text)
        return img

    def _draw_object(self, img: np.ndarray, t: float) -> None:
        """A textured disc crossing the frame left to right (about 12% of the frame area)."""
        x = int(40 + (WIDTH - 80) * t / self.shot.seconds)
        y = int(HEIGHT / 2 + 30 * np.sin(t))
        r = 50
        assert self.object_sprite is not None  # only called for shots with a moving object
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.circle(mask, (x, y), r, 255, -1)
        sprite = np.zeros_like(img)
        x0, y0 = x - 48, y - 48
        xs, ys = slice(max(x0, 0), min(x0 + 96, WIDTH)), slice(max(y0, 0), min(y0 + 96, HEIGHT))
        sprite[ys, xs] = self.object_sprite[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        img[mask > 0] = sprite[mask > 0]


def _draw_text(img: np.ndarray, text: str) -> None:
    for k, line in enumerate(text.split("|")):
        org = (18, 70 + 62 * k)
        cv2.putText(img, line, org, cv2.FONT_HERSHEY_DUPLEX, 1.7, (0, 0, 0), 9, cv2.LINE_AA)
        cv2.putText(img, line, org, cv2.FONT_HERSHEY_DUPLEX, 1.7, (255, 255, 255), 3, cv2.LINE_AA)


def _frame_times(spec: VideoSpec, seconds: float, rng: np.random.Generator) -> np.ndarray:
    if not spec.vfr:
        return np.arange(round(seconds * FPS)) / FPS
    # Variable frame rate: gaps of 1/30 s .. 1/12 s in runs, as phone footage has.
    gaps = np.repeat(rng.choice([1 / 30, 1 / 25, 1 / 15, 1 / 12], size=int(seconds * 3)), 10)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    return np.round(times[times < seconds] * 1000) / 1000


def render_video(spec: VideoSpec, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Frames, their timestamps (s) and the ground truth (cuts + shot labels) of one planted video."""
    starts, t = [], 0.0
    for k, shot in enumerate(spec.shots):
        overlap = shot.transition_s if shot.transition == "dissolve" and k else 0.0
        t -= overlap
        starts.append(t)
        t += shot.seconds
    times = _frame_times(spec, t, rng)
    # Consecutive shots get hues at least 45 degrees (of 180) apart: distinct shots, as in edited footage.
    hues = np.cumsum(rng.integers(45, 136, len(spec.shots))) % 180
    renderers = [ShotRenderer(shot, rng, int(hue)) for shot, hue in zip(spec.shots, hues, strict=True)]
    frames, owner = [], []
    for ts in times:
        frames.append(_compose(spec, renderers, starts, ts))
        owner.append(max(k for k, s in enumerate(starts) if ts >= s - 1e-9))
    return frames, times, _truth(spec, starts, times, np.array(owner))


def _compose(spec: VideoSpec, renderers: list[ShotRenderer], starts: list[float], ts: float) -> np.ndarray:
    k = max(i for i, s in enumerate(starts) if ts >= s - 1e-9)
    shot = spec.shots[k]
    img = renderers[k].frame(ts - starts[k]).astype(np.float32)
    local = ts - starts[k]
    if k and shot.transition == "dissolve" and local < shot.transition_s:
        alpha = (local + 1 / FPS) / (shot.transition_s + 1 / FPS)
        prev = renderers[k - 1].frame(ts - starts[k - 1]).astype(np.float32)
        img = alpha * img + (1 - alpha) * prev
    if shot.transition == "fade" and k and local < shot.transition_s:
        img *= local / shot.transition_s
    if k + 1 < len(spec.shots) and spec.shots[k + 1].transition == "fade":
        remaining = starts[k + 1] - ts
        fade = spec.shots[k + 1].transition_s
        if remaining <= fade:
            img *= max(remaining - 1 / FPS, 0.0) / fade
    if shot.flash_at_s is not None and 0 <= local - shot.flash_at_s < 3 / FPS:
        img = 0.25 * img + 0.75 * 255
    return np.clip(img, 0, 255).astype(np.uint8)


def _truth(spec: VideoSpec, starts: list[float], times: np.ndarray, owner: np.ndarray) -> dict:
    cuts, shots = [], []
    for k, shot in enumerate(spec.shots):
        first = int(np.searchsorted(times, starts[k] - 1e-9))
        if k:
            middle = starts[k] + (shot.transition_s / 2 if shot.transition == "dissolve" else 0.0)
            frame = int(np.searchsorted(times, middle - 1e-9))
            tol = max(2, round(shot.transition_s * FPS / 2)) if shot.transition != "hard" else 0
            cuts.append({"frame": frame, "kind": shot.transition, "tolerance": tol})
        end = int(np.searchsorted(times, starts[k] + shot.seconds - 1e-9))
        flashes = []
        if shot.flash_at_s is not None:
            flashes = [
                int(i)
                for i in np.nonzero(owner == k)[0]
                if 0 <= times[i] - starts[k] - shot.flash_at_s < 0.12
            ]
        shots.append(
            asdict(
                ShotTruth(
                    start=first,
                    end=end,
                    camera=shot.camera,
                    text=shot.text is not None,
                    moving_object=shot.moving_object,
                    flash_frames=flashes,
                    cam_tx=shot.pan[0],
                    cam_ty=shot.pan[1],
                    cam_zoom=shot.zoom,
                )
            )
        )
    truth = {"num_frames": len(times), "vfr": spec.vfr, "cuts": cuts, "shots": shots}
    if spec.vfr:
        truth["frame_times"] = [round(float(t), 6) for t in times]  # frame index <-> time for VFR
    return truth


def encode_frames(
    frames: Iterable[np.ndarray],
    times_s: Iterable[float],
    container_options: dict[str, str] | None = None,
    path: Path | None = None,
) -> bytes:
    """H.264 MP4 of RGB frames at the given timestamps (millisecond time base, so VFR works).

    Writes to `path` when given (and returns b""), else returns the bytes. Frames may be a generator.
    """
    with tempfile.TemporaryDirectory() as tmp:
        # A real file, not BytesIO: the faststart option re-opens the output to move the index forward.
        target = path or Path(tmp) / "video.mp4"
        with av.open(str(target), "w", format="mp4", options=container_options or {}) as container:
            stream = None
            for img, ts in zip(frames, times_s, strict=True):
                stream = stream or _h264_stream(container, img.shape[1], img.shape[0])
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = round(ts * 1000), Fraction(1, 1000)
                container.mux(stream.encode(frame))
            if stream is not None:
                container.mux(stream.encode())
        return b"" if path else target.read_bytes()


def _h264_stream(container: av.container.OutputContainer, width: int, height: int) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    # mbtree=0: with mb-tree on, this x264 build wrote different bytes for the same frames run to run.
    stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
    return stream


def _short_clip(seconds: float = 3.0, faststart: bool = False) -> bytes:
    rng = np.random.default_rng(7)
    renderer = ShotRenderer(Shot(seconds, "horizontal", pan=(0.2, 0.0)), rng)
    times = np.arange(int(seconds * FPS)) / FPS
    options = {"movflags": "faststart"} if faststart else None
    return encode_frames([renderer.frame(t) for t in times], times, container_options=options)


def _truncated(faststart: bool, keep: float) -> bytes:
    data = _short_clip(4.0, faststart=faststart)
    return data[: int(len(data) * keep)]


def _audio_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(44100 * 2) / 44100)).astype(np.float32)
        for k in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, k : k + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def _unknown_codec() -> bytes:
    """A valid MP4 whose sample description names a codec no decoder knows (fourcc `zzzz`)."""
    data = bytearray(_short_clip(2.0))
    at = data.index(b"avc1", data.index(b"stsd"))
    data[at : at + 4] = b"zzzz"
    return bytes(data)


def _huge_resolution() -> bytes:
    """8192x8192: a tiny file whose header asks for 64 Mpixel frames (one black MJPEG frame, fast to make)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mjpeg", rate=FPS)
        stream.width = stream.height = 8192
        stream.pix_fmt = "yuvj420p"
        planes = np.full((8192 * 3 // 2, 8192), 128, np.uint8)
        planes[:8192] = 0
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p").reformat(format="yuvj420p")
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def _still_image() -> bytes:
    ok, png = cv2.imencode(".png", _scene(np.random.default_rng(3), HEIGHT, WIDTH))
    assert ok
    return png.tobytes()


BAD_FILES: dict[str, tuple[str, object]] = {
    "bad_zero_byte.mp4": ("zero-byte file", lambda: b""),
    "bad_truncated.mp4": (
        "truncated: first half of an MP4 whose index (moov) is at the end",
        lambda: _truncated(faststart=False, keep=0.5),
    ),
    "bad_truncated_tail.mp4": (
        "truncated: index first (faststart) but the last 45% of the data is missing",
        lambda: _truncated(faststart=True, keep=0.55),
    ),
    "bad_not_a_video.mp4": (
        "not a video: a text file named .mp4",
        lambda: b"this is not a video, just text with an .mp4 name\n" * 20,
    ),
    "bad_audio_only.mp4": ("audio only: no video stream", _audio_only),
    "bad_unknown_codec.mp4": ("unsupported codec: fourcc zzzz has no decoder", _unknown_codec),
    "bad_huge_resolution.mp4": ("huge resolution: 8192x8192 exceeds decode.max_pixels", _huge_resolution),
    "bad_still_image.mp4": ("still image: a PNG named .mp4 (one frame, no clip possible)", _still_image),
}


def write_sample_set(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write the planted videos, the bad files and `ground_truth.json` into `out_dir`; return the video paths.

    Deterministic for a given seed (same frames, same cuts, same labels).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth: dict = {"fps": FPS, "width": WIDTH, "height": HEIGHT, "seed": seed, "videos": {}, "bad": {}}
    paths = []
    for spec in sample_specs():
        frames, times, video_truth = render_video(spec, rng)
        _write(out / spec.name, encode_frames(frames, times))
        truth["videos"][spec.name] = video_truth
        paths.append(out / spec.name)
    for name, (reason, make) in BAD_FILES.items():
        _write(out / name, make())  # type: ignore[operator]
        truth["bad"][name] = reason
        paths.append(out / name)
    _write(out / GROUND_TRUTH, json.dumps(truth, indent=1).encode())
    return paths


def _write(path: Path, data: bytes) -> None:
    with atomic_local_write(path) as tmp:
        tmp.write_bytes(data)
