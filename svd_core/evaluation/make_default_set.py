"""Regenerate the default eval sets shipped in `svd_core/evaluation/data/`.

    python -m svd_core.evaluation.make_default_set [--out svd_core/evaluation/data]

Writes `t2v_prompts.json` (16 text-to-video prompts in the spirit of the paper's 64) and `i2v_images.json`
with four procedurally drawn 128x128 conditioning images (`images/*.png`): no download, and the same
bytes on every run, so the sets' content-hash versions never drift.
"""

from __future__ import annotations

import argparse
import io as _io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from svd_core.evaluation.evalsets import DATA_DIR

SIZE = 128
T2V_PROMPTS = [
    "A red panda eating bamboo in a misty forest",
    "Ocean waves crashing on black volcanic rocks at sunset",
    "A time-lapse of clouds rolling over snowy mountains",
    "A golden retriever running through a field of sunflowers",
    "City traffic at night seen from a high rooftop, long exposure",
    "A hot air balloon rising over green hills at dawn",
    "Close-up of raindrops falling on a leaf in slow motion",
    "A steam train crossing a stone bridge in autumn",
    "An astronaut floating inside a space station, Earth in the window",
    "Jellyfish drifting in deep blue water, bioluminescent glow",
    "A chef flipping vegetables in a flaming wok",
    "Fireworks exploding over a harbor, reflections on the water",
    "A drone shot flying forward over a winding desert road",
    "Cherry blossom petals blowing across a quiet temple courtyard",
    "A sailboat gliding on a calm lake, camera panning left",
    "Northern lights dancing above a frozen lake",
]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)
    return y, x


def sunset() -> np.ndarray:
    y, x = _grid()
    sky = np.stack([1.0 - 0.3 * y, 0.4 + 0.3 * y, 0.6 * y], axis=-1)
    sun = ((x - 0.5) ** 2 + (y - 0.55) ** 2) < 0.02
    sky[sun] = (1.0, 0.85, 0.3)
    sky[y > 0.7] = (0.05, 0.1, 0.3)
    return sky


def checker_road() -> np.ndarray:
    y, x = _grid()
    img = np.stack([0.3 + 0.4 * (1 - y)] * 3, axis=-1) * np.array([0.5, 0.8, 1.0])
    road = np.abs(x - 0.5) < 0.1 + 0.35 * y
    tiles = ((np.floor(x * 8) + np.floor(y * 8)) % 2).astype(bool)
    img[road & tiles] = (0.25, 0.25, 0.25)
    img[road & ~tiles] = (0.55, 0.55, 0.5)
    return img


def waves() -> np.ndarray:
    y, x = _grid()
    phase = np.sin(2 * np.pi * (6 * x + 3 * y)) * 0.5 + 0.5
    return np.stack([0.1 + 0.2 * phase, 0.3 + 0.3 * phase, 0.6 + 0.4 * phase * (1 - y)], axis=-1)


def mountains() -> np.ndarray:
    y, x = _grid()
    img = np.stack([0.6 + 0.3 * y, 0.7 + 0.2 * y, np.ones_like(y)], axis=-1)
    ridge = 0.45 + 0.15 * np.sin(7 * x) + 0.08 * np.sin(23 * x + 1.0)
    img[y > ridge] = (0.25, 0.3, 0.35)
    img[(y > ridge) & (y < ridge + 0.05)] = (0.95, 0.95, 0.97)
    return img


IMAGES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "sunset": (sunset, "The sun sets over a dark sea"),
    "road": (checker_road, "A tiled road running to the horizon"),
    "waves": (waves, "Blue waves rolling diagonally"),
    "mountains": (mountains, "Snow-capped mountains under a pale sky"),
}


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(
        buf, format="PNG", optimize=True
    )
    return buf.getvalue()


def write_default_sets(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    t2v = {
        "name": "default-t2v",
        "items": [
            {"prompt_id": f"t2v-{i:02d}", "prompt": p, "seed": 1000 + i} for i, p in enumerate(T2V_PROMPTS)
        ],
    }
    (out / "t2v_prompts.json").write_text(json.dumps(t2v, indent=2) + "\n")
    items = []
    for i, (name, (draw, prompt)) in enumerate(IMAGES.items()):
        (out / "images" / f"{name}.png").write_bytes(png_bytes(draw()))
        items.append(
            {"prompt_id": f"i2v-{name}", "prompt": prompt, "image": f"images/{name}.png", "seed": 2000 + i}
        )
    (out / "i2v_images.json").write_text(json.dumps({"name": "default-i2v", "items": items}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write the sets into")
    write_default_sets(parser.parse_args().out)


if __name__ == "__main__":
    main()
