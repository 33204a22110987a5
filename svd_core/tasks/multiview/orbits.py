"""Orbit renders of procedural objects on the CPU, in the usual multi-view layout.

Renderer choice: a numpy ray caster over analytic primitives (`svd_core.tasks.multiview.shapes`) instead of
pyrender + OSMesa. pyrender has had no release since 2021 and only renders here with PyOpenGL 3.1.7 over its
own 3.1.0 pin (a pip conflict in the lock); a few dozen vectorised numpy lines give exact silhouettes,
depth order, textures and Lambert lighting with no GL context and no new dependency.

Layout (what `svd_core.tasks.multiview.dataset` reads; Objaverse/GSO renders from Blender can be written the same
way): one folder per object with `000.png ... (N-1).png` and `cameras.json`:

    {"object": NAME, "num_views": N, "size": S, "elevation_deg": E, "radius": R, "fov_deg": F,
     "convention": "opengl", "views": [{"file": "000.png", "azimuth_deg": A, "elevation_deg": E,
     "fx": ..., "fy": ..., "cx": ..., "cy": ..., "c2w": 4x4}, ...], "scene": {...}}

`cameras.json` is written last: its presence marks a finished object, so an interrupted run resumes.
The paper's SVD-MV data: 21 views of a 360-degree orbit at 576x576, elevation uniform in [-5, 30] degrees.
"""

from __future__ import annotations

import io as pyio
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from svd_core import storage as svd_io
from svd_core.tasks.multiview.config import OrbitRenderConfig
from svd_core.tasks.multiview.shapes import SceneObject, intersect, random_object, rows_times

CAMERAS_FILE = "cameras.json"
BACKGROUND = 1.0
"""White background, as Objaverse orbit renders are usually composited."""


@dataclass(frozen=True)
class Camera:
    azimuth_deg: float
    elevation_deg: float
    radius: float
    fov_deg: float
    size: int

    @property
    def position(self) -> np.ndarray:
        az, el = np.radians(self.azimuth_deg), np.radians(self.elevation_deg)
        return self.radius * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])

    @property
    def c2w(self) -> np.ndarray:
        """Camera-to-world 4x4, OpenGL convention (x right, y up, looking along -z) at the origin."""
        eye = self.position
        back = eye / np.linalg.norm(eye)
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        mat = np.eye(4)
        mat[:3, 0], mat[:3, 1], mat[:3, 2], mat[:3, 3] = right, up, back, eye
        return mat

    @property
    def focal(self) -> float:
        return self.size / 2 / np.tan(np.radians(self.fov_deg) / 2)

    def to_dict(self, file: str) -> dict:
        return {
            "file": file,
            "azimuth_deg": self.azimuth_deg,
            "elevation_deg": self.elevation_deg,
            "fx": self.focal,
            "fy": self.focal,
            "cx": self.size / 2,
            "cy": self.size / 2,
            "c2w": self.c2w.round(6).tolist(),
        }


def orbit_cameras(views: int, elevation_deg: float, radius: float, fov_deg: float, size: int) -> list[Camera]:
    """`views` cameras evenly spaced over 360 degrees of azimuth, starting at 0, at one elevation."""
    return [Camera(360.0 * k / views, elevation_deg, radius, fov_deg, size) for k in range(views)]


def _sub_pixel_coords(camera: Camera, samples: int) -> np.ndarray:
    """Offset of each sub-pixel centre from the image centre, in pixels (x runs right; rows use -offset)."""
    return ((np.arange(samples) + 0.5) / samples * camera.size - camera.size / 2).astype(np.float32)


def _object_window(scene: SceneObject, camera: Camera, samples: int) -> tuple[slice, slice]:
    """Sub-pixel rows and columns that can see the object: the bounding box of the projected corners of a
    cube around each primitive's bounding sphere (a convex set projects inside its corners' hull)."""
    w2c = np.linalg.inv(camera.c2w)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    points = np.concatenate([np.asarray(p.center) + p.bounding_radius * corners for p in scene.primitives])
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    if (cam[:, 2] > -1e-3).any():  # something at or behind the camera plane: cast every ray
        return slice(0, samples), slice(0, samples)
    scale = samples / camera.size
    px = camera.focal * cam[:, 0] / -cam[:, 2] * scale + samples / 2
    py = -camera.focal * cam[:, 1] / -cam[:, 2] * scale + samples / 2
    cols = slice(
        int(np.clip(np.floor(px.min()), 0, samples)), int(np.clip(np.ceil(px.max()) + 1, 0, samples))
    )
    rows = slice(
        int(np.clip(np.floor(py.min()), 0, samples)), int(np.clip(np.ceil(py.max()) + 1, 0, samples))
    )
    return rows, cols


def _ray_dirs(camera: Camera, samples: int, rows: slice, cols: slice) -> np.ndarray:
    """Unit world-space directions through the sub-pixel centres of the window, row-major."""
    coords = _sub_pixel_coords(camera, samples)
    x, y = np.meshgrid(coords[cols], -coords[rows])
    local = np.stack([x, y, np.full_like(x, -camera.focal)], axis=-1).reshape(-1, 3)
    local /= np.linalg.norm(local, axis=1, keepdims=True)
    return rows_times(local, camera.c2w[:3, :3].T.astype(np.float32))


def render_view(scene: SceneObject, camera: Camera, supersample: int = 2) -> np.ndarray:
    """uint8 (size, size, 3): nearest surface per ray, its texture, Lambert light plus ambient, white sky."""
    samples = camera.size * supersample
    rows, cols = _object_window(scene, camera, samples)
    dirs = _ray_dirs(camera, samples, rows, cols)
    origin = camera.position
    depth = np.full(len(dirs), np.inf, np.float32)
    color = np.full((len(dirs), 3), BACKGROUND, np.float32)
    light = np.asarray(scene.light_dir, np.float32)
    tint = np.asarray(scene.light_color, np.float32)
    for prim in scene.primitives:  # z-buffer over primitives: keep the nearest hit per ray
        hits = intersect(prim, origin, dirs)
        nearer = hits.t < depth
        if not nearer.any():
            continue
        depth[nearer] = hits.t[nearer]
        normal = hits.normal[nearer]
        facing = np.where(((normal * dirs[nearer]).sum(1) > 0)[:, None], -normal, normal)
        diffuse = np.clip(facing @ light, 0, 1)
        shade = (scene.ambient + (1 - scene.ambient) * diffuse)[:, None] * tint
        color[nearer] = hits.color[nearer] * shade
    canvas = np.full((samples, samples, 3), BACKGROUND, np.float32)
    canvas[rows, cols] = color.reshape(rows.stop - rows.start, cols.stop - cols.start, 3)
    image = canvas.reshape(camera.size, supersample, camera.size, supersample, 3).mean(axis=(1, 3))
    return (np.clip(image, 0, 1) ** (1 / 2.2) * 255).round().astype(np.uint8)  # linear -> display gamma


def object_name(index: int) -> str:
    return f"obj_{index:06d}"


def object_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def png_bytes(image: np.ndarray) -> bytes:
    buffer = pyio.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def render_object(cfg: OrbitRenderConfig, index: int) -> tuple[SceneObject, list[Camera], list[np.ndarray]]:
    rng = object_rng(cfg.seed, index)
    scene = random_object(rng)
    elevation = float(rng.uniform(cfg.elevation_min, cfg.elevation_max))
    cameras = orbit_cameras(cfg.views, elevation, cfg.radius, cfg.fov_deg, cfg.size)
    return scene, cameras, [render_view(scene, cam, cfg.supersample) for cam in cameras]


def write_orbit(
    out_uri: str, name: str, scene: SceneObject, cameras: list[Camera], images: list[np.ndarray]
) -> str:
    """Write the views, then cameras.json (the completion marker); returns the object folder URI."""
    folder = svd_io.join_uri(out_uri, name)
    views = []
    for k, (camera, image) in enumerate(zip(cameras, images, strict=True)):
        file = f"{k:03d}.png"
        svd_io.write_bytes(svd_io.join_uri(folder, file), png_bytes(image))
        views.append(camera.to_dict(file))
    first = cameras[0]
    meta = {
        "object": name,
        "num_views": len(cameras),
        "size": first.size,
        "elevation_deg": first.elevation_deg,
        "radius": first.radius,
        "fov_deg": first.fov_deg,
        "convention": "opengl",
        "views": views,
        "scene": scene.to_dict(),
    }
    svd_io.write_bytes(svd_io.join_uri(folder, CAMERAS_FILE), json.dumps(meta, indent=1).encode())
    return folder


def make_orbits(
    out_uri: str, cfg: OrbitRenderConfig, progress: Callable[[str, bool], None] | None = None
) -> list[str]:
    """Render `cfg.objects` orbits under `out_uri` (local path or s3://); objects whose cameras.json already
    exists are kept as they are. Returns every object folder URI; `progress(name, rendered)` per object."""
    folders = []
    for index in range(cfg.objects):
        name = object_name(index)
        folder = svd_io.join_uri(out_uri, name)
        done = svd_io.exists(svd_io.join_uri(folder, CAMERAS_FILE))
        if not done:
            scene, cameras, images = render_object(cfg, index)
            write_orbit(out_uri, name, scene, cameras, images)
        folders.append(folder)
        if progress is not None:
            progress(name, not done)
    return folders
