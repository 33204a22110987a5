"""Orbit folders -> multi-view training samples.

Layout (see `svd_core.tasks.multiview.orbits`): `ROOT/<object>/cameras.json` plus one image per view. A sample
is one orbit in azimuth order starting from the input view: `frames` (N, 3, S, S) in [-1, 1] with the
input view first, `elevation` (degrees, the conditioning), and SVD's micro-conditioning (`fps_id`,
`motion_bucket_id` fixed; `cond_aug` ~ exp(N(-3, 0.5^2)) with the seed of its pixel noise). Item `i` is a
function of (seed, i) only, like `VideoClipDataset`, so workers and resumed runs see the same data.

Every folder is checked when the orbit list is built (before any training starts): a folder without
cameras.json, a cameras.json that is not valid, a view file it names that is missing, or a view count other
than `num_views` raises InputError naming the folder and the file.
"""

from __future__ import annotations

import hashlib
import io as pyio
import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from svd_core import storage as svd_io
from svd_core.errors import InputError, StorageError
from svd_core.tasks.multiview.orbits import CAMERAS_FILE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class OrbitView:
    file: str
    azimuth_deg: float
    elevation_deg: float


@dataclass(frozen=True)
class Orbit:
    """One object's orbit; `views` sorted by azimuth in [0, 360)."""

    name: str
    uri: str
    views: tuple[OrbitView, ...]
    cameras_sha: str

    def view_uri(self, index: int) -> str:
        return svd_io.join_uri(self.uri, self.views[index].file)

    def order_from(self, start: int) -> list[int]:
        """View indices in azimuth order starting at `start` (the input view)."""
        n = len(self.views)
        return [(start + k) % n for k in range(n)]


def _object_folders(root_uri: str) -> dict[str, set[str]]:
    """Object folder name -> file names in it (one listing of the whole root, so it is cheap on S3)."""
    prefix = root_uri.rstrip("/") + "/"
    folders: dict[str, set[str]] = defaultdict(set)
    for uri in svd_io.list_uris(root_uri):
        rel = uri[len(prefix) :] if uri.startswith(prefix) else None
        if rel is None or rel.count("/") != 1:
            continue
        folder, file = rel.split("/")
        folders[folder].add(file)
    return folders


def _parse_views(folder_uri: str, cameras: dict) -> list[OrbitView]:
    where = svd_io.join_uri(folder_uri, CAMERAS_FILE)
    views = cameras.get("views") if isinstance(cameras, dict) else None
    if not isinstance(views, list) or not views:
        raise InputError(f"{where}: no `views` list; each view needs file, azimuth_deg, elevation_deg")
    parsed = []
    for k, view in enumerate(views):
        try:
            parsed.append(
                OrbitView(str(view["file"]), float(view["azimuth_deg"]) % 360.0, float(view["elevation_deg"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{where}: view {k} lacks a valid {exc} (needs file, azimuth_deg, elevation_deg in degrees)"
            ) from None
    return sorted(parsed, key=lambda v: v.azimuth_deg)


def read_orbit(root_uri: str, name: str, files: set[str], num_views: int | None) -> Orbit:
    """Validate one object folder against its listing and return its orbit."""
    folder_uri = svd_io.join_uri(root_uri, name)
    if CAMERAS_FILE not in files:
        raise InputError(
            f"orbit folder {folder_uri} has no {CAMERAS_FILE}; re-render it (svd data orbits) or remove it"
        )
    raw = svd_io.read_bytes(svd_io.join_uri(folder_uri, CAMERAS_FILE))
    try:
        cameras = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{svd_io.join_uri(folder_uri, CAMERAS_FILE)} is not valid JSON ({exc})") from None
    views = _parse_views(folder_uri, cameras)
    missing = [v.file for v in views if v.file not in files]
    if missing:
        raise InputError(
            f"orbit folder {folder_uri}: view file {missing[0]} named in {CAMERAS_FILE} is missing "
            f"({len(missing)} missing in all); re-render the object or fix {CAMERAS_FILE}"
        )
    if num_views is not None and len(views) != num_views:
        raise InputError(
            f"orbit folder {folder_uri} has {len(views)} views but num_views={num_views}; render orbits with "
            f"--views {num_views} or set num_views={len(views)}"
        )
    return Orbit(name, folder_uri, tuple(views), hashlib.sha256(raw).hexdigest()[:16])


def scan_orbits(root_uri: str, num_views: int | None = None) -> list[Orbit]:
    """Every object folder under `root_uri`, validated, sorted by name."""
    try:
        folders = _object_folders(root_uri)
    except StorageError as exc:
        raise InputError(f"orbit data {root_uri} cannot be listed ({exc})") from exc
    if not folders:
        raise InputError(
            f"no orbit folders under {root_uri}: expected {root_uri}/<object>/{CAMERAS_FILE} plus view "
            "images; render some with `svd data orbits --out DIR`"
        )
    orbits = []
    for name in sorted(folders):
        files = folders[name]
        if CAMERAS_FILE not in files and not any(f.lower().endswith(IMAGE_SUFFIXES) for f in files):
            continue  # not an object folder (e.g. a README or DVC metadata)
        orbits.append(read_orbit(root_uri, name, files, num_views))
    if not orbits:
        raise InputError(f"no orbit folders under {root_uri} (no {CAMERAS_FILE} found)")
    return orbits


def _held_out_rank(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def split_orbits(orbits: list[Orbit], held_out: int) -> tuple[list[Orbit], list[Orbit]]:
    """(train, held-out): the `held_out` objects with the smallest name hashes are held out."""
    if held_out >= len(orbits):
        raise InputError(
            f"data.held_out_objects={held_out} leaves no training object out of {len(orbits)}; lower it or "
            "set data.eval_uri to a separate evaluation folder"
        )
    chosen = {o.name for o in sorted(orbits, key=lambda o: _held_out_rank(o.name))[:held_out]}
    return [o for o in orbits if o.name not in chosen], [o for o in orbits if o.name in chosen]


def orbits_version(orbits: list[Orbit]) -> str:
    """Content version of an orbit set: the hashes of its objects' cameras.json files (the views' names and
    poses) and their names. View pixels are not read (150K objects x 21 PNGs); a re-render with new pixels
    under identical cameras needs a new folder name or a DVC version."""
    blob = json.dumps(sorted((o.name, o.cameras_sha) for o in orbits)).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


def load_view(uri: str, size: int) -> torch.Tensor:
    """A view image -> (3, size, size) float32 in [-1, 1]; RGBA is composited onto white."""
    try:
        image: Image.Image = Image.open(pyio.BytesIO(svd_io.read_bytes(uri)))
        image.load()
    except (OSError, StorageError) as exc:
        raise InputError(f"view image {uri} cannot be read ({exc}); re-render the object") from None
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image.alpha_composite(rgba)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class OrbitDataset(torch.utils.data.Dataset):
    """Map-style multi-view samples over validated orbits (see the module docstring)."""

    def __init__(
        self,
        orbits: list[Orbit],
        size: int,
        seed: int = 0,
        every_start_view: bool = True,
        fps_id: int = 6,
        motion_bucket_id: int = 127,
        cond_aug_mean: float = -3.0,
        cond_aug_std: float = 0.5,
    ):
        if not orbits:
            raise InputError("no training orbits; check data.root_uri and data.held_out_objects")
        self.orbits, self.size, self.seed = list(orbits), size, seed
        # With every_start_view each orbit appears once per view, that view as the input: item i is
        # (object i // N, start i % N), so an epoch conditions on every view exactly once.
        self.starts = len(orbits[0].views) if every_start_view else 1
        self.fps_id, self.motion_bucket_id = fps_id, motion_bucket_id
        self.cond_aug_mean, self.cond_aug_std = cond_aug_mean, cond_aug_std

    def __len__(self) -> int:
        return len(self.orbits) * self.starts

    def plan(self, index: int) -> tuple[Orbit, int, float, int]:
        """(orbit, start view, cond_aug, cond_noise_seed) of item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} samples")
        orbit, start = self.orbits[index // self.starts], index % self.starts
        rng = np.random.default_rng([self.seed, index])
        cond_aug = float(np.exp(rng.normal(self.cond_aug_mean, self.cond_aug_std)))
        return orbit, start, cond_aug, int(rng.integers(2**62))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        orbit, start, cond_aug, noise_seed = self.plan(index)
        order = orbit.order_from(start)
        frames = torch.stack([load_view(orbit.view_uri(k), self.size) for k in order])
        return {
            "frames": frames,
            "elevation": torch.tensor(orbit.views[start].elevation_deg, dtype=torch.float32),
            "fps_id": torch.tensor(float(self.fps_id)),
            "motion_bucket_id": torch.tensor(float(self.motion_bucket_id)),
            "cond_aug": torch.tensor(cond_aug, dtype=torch.float32),
            "cond_noise_seed": torch.tensor(noise_seed, dtype=torch.int64),
        }
