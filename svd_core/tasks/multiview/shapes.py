"""Procedural textured objects for orbit renders: boxes, spheres and cylinders with analytic textures.

An object is a few primitives, each a unit shape (box [-1, 1]^3, unit sphere, cylinder of radius 1 along y
with |y| <= 1 and caps) under a scale, rotation and translation, carrying a procedural texture evaluated at
the hit point's (u, v). Rays are intersected analytically in each primitive's own frame, so the renderer in
`svd_core.tasks.multiview.orbits` needs no mesh, no GPU and no OpenGL context: plain numpy, exact silhouettes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

ShapeKind = Literal["box", "sphere", "cylinder"]
TextureKind = Literal["checker", "stripes", "waves", "dots"]
SHAPES: tuple[ShapeKind, ...] = ("box", "sphere", "cylinder")
TEXTURES: tuple[TextureKind, ...] = ("checker", "stripes", "waves", "dots")
_EPS = 1e-6


@dataclass(frozen=True)
class Texture:
    """Two colours arranged by a pattern over (u, v) in [0, 1]^2."""

    kind: TextureKind
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    frequency: float
    """Pattern repeats per unit of u and v."""
    angle: float
    """Pattern orientation in radians (stripes, waves)."""

    def colors(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(n,) u, v -> (n, 3) linear RGB in [0, 1]."""
        f = self.frequency
        su = u * np.cos(self.angle) + v * np.sin(self.angle)
        if self.kind == "checker":
            mix = ((np.floor(u * f) + np.floor(v * f)) % 2).astype(np.float32)
        elif self.kind == "stripes":
            mix = (np.floor(su * f * 2) % 2).astype(np.float32)
        elif self.kind == "waves":
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * f * su) * np.cos(np.pi * f * v)
        else:  # dots: a disc in every cell
            du, dv = (u * f) % 1 - 0.5, (v * f) % 1 - 0.5
            mix = (du**2 + dv**2 < 0.09).astype(np.float32)
        a, b = np.asarray(self.color_a, np.float32), np.asarray(self.color_b, np.float32)
        return a + (b - a) * mix[:, None].astype(np.float32)


def rows_times(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`rows @ matrix` for many 3-vectors; numpy's (n, 3) @ (3, 3) path is ~7x slower than this layout."""
    return (matrix.T @ rows.T).T


def rotation_matrix(euler_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation R = Rz @ Ry @ Rx from Euler angles in degrees."""
    x, y, z = np.radians(euler_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Primitive:
    shape: ShapeKind
    center: tuple[float, float, float]
    scale: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    texture: Texture

    @property
    def bounding_radius(self) -> float:
        return float(np.linalg.norm(self.scale)) if self.shape != "sphere" else max(self.scale)


@dataclass(frozen=True)
class Hits:
    """Nearest hit per ray: distance (inf on a miss), world normal, texture colour."""

    t: np.ndarray
    normal: np.ndarray
    color: np.ndarray


def _sphere(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a = (d * d).sum(1)
    b = 2 * (o * d).sum(1)
    c = (o * o).sum(1) - 1
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    t = np.where(disc >= 0, (-b - root) / (2 * a), np.inf)
    t = np.where(t > _EPS, t, np.inf)  # cameras stay outside the object: only the near root counts
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    u = np.arctan2(p[:, 2], p[:, 0]) / (2 * np.pi) + 0.5
    v = np.arccos(np.clip(p[:, 1], -1, 1)) / np.pi
    return t, p, u, v


def _cylinder(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2])
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - 1
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = np.where((disc >= 0) & (a > _EPS), (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        y_side = o[:, 1] + t_side * d[:, 1]
        t_side = np.where((t_side > _EPS) & (np.abs(y_side) <= 1), t_side, np.inf)
        t_caps = np.full_like(t_side, np.inf)
        for cap in (-1.0, 1.0):
            t_cap = np.where(np.abs(d[:, 1]) > _EPS, (cap - o[:, 1]) / d[:, 1], np.inf)
            px, pz = o[:, 0] + t_cap * d[:, 0], o[:, 2] + t_cap * d[:, 2]
            t_cap = np.where((t_cap > _EPS) & (px**2 + pz**2 <= 1), t_cap, np.inf)
            t_caps = np.minimum(t_caps, t_cap)
    t = np.minimum(t_side, t_caps)
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    on_side = t_side <= t_caps
    u = np.where(on_side, np.arctan2(p[:, 2], p[:, 0]) / (2 * np.pi) + 0.5, (p[:, 0] + 1) / 2)
    v = np.where(on_side, (p[:, 1] + 1) / 2, (p[:, 2] + 1) / 2)
    return t, p, u, v


def _box(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-1 - o) / d, (1 - o) / d
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    t = np.where((t_far >= t_near) & (t_near > _EPS), t_near, np.inf)
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    axis = np.argmax(np.abs(p), axis=1)  # the face the hit lies on
    other = np.stack([(axis + 1) % 3, (axis + 2) % 3], axis=1)
    rows = np.arange(len(p))
    u = (p[rows, other[:, 0]] + 1) / 2 + axis  # offset per face so faces do not repeat one pattern
    v = (p[rows, other[:, 1]] + 1) / 2
    return t, p, u, v


def _local_normal(shape: ShapeKind, p: np.ndarray) -> np.ndarray:
    if shape == "sphere":
        return p
    if shape == "cylinder":
        cap = np.abs(np.abs(p[:, 1]) - 1) < 1e-4
        side = np.stack([p[:, 0], np.zeros(len(p)), p[:, 2]], axis=1)
        return np.where(
            cap[:, None], np.stack([np.zeros(len(p)), np.sign(p[:, 1]), np.zeros(len(p))], 1), side
        )
    axis = np.argmax(np.abs(p), axis=1)
    normal = np.zeros_like(p)
    normal[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis])
    return normal


_INTERSECT = {"sphere": _sphere, "cylinder": _cylinder, "box": _box}


def intersect(prim: Primitive, origin: np.ndarray, dirs: np.ndarray) -> Hits:
    """Rays from one `origin` (3,) along unit `dirs` (n, 3) against one primitive; t is the distance."""
    n = len(dirs)
    hits = Hits(np.full(n, np.inf, np.float32), np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32))
    center = np.asarray(prim.center, np.float32)
    # Cheap bounding-sphere test first: most rays of a view miss any one primitive.
    oc = (np.asarray(origin) - center).astype(np.float32)
    proj = dirs @ -oc
    dist2 = float(oc @ oc) - proj**2
    cand = np.nonzero((dist2 <= prim.bounding_radius**2) & (proj > 0))[0]
    if cand.size == 0:
        return hits
    rot = rotation_matrix(prim.rotation_deg).astype(np.float32)
    scale = np.asarray(prim.scale, np.float32)
    o_local = (rot.T @ oc) / scale
    d_local = rows_times(dirs[cand], rot) / scale  # row-vector form of R^T d
    t, p, u, v = _INTERSECT[prim.shape](np.broadcast_to(o_local, d_local.shape), d_local)
    hit = np.isfinite(t)
    idx = cand[hit]
    hits.t[idx] = t[hit]
    normal = rows_times(_local_normal(prim.shape, p[hit]) / scale, rot.T)  # inverse-transpose of R diag(s)
    hits.normal[idx] = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    hits.color[idx] = prim.texture.colors(u[hit], v[hit])
    return hits


def random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    """A saturated colour from a random hue (HSV with high saturation and value)."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.45, 0.95), rng.uniform(0.55, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return tuple(float(c) for c in rgb)  # type: ignore[return-value]


def random_texture(rng: np.random.Generator) -> Texture:
    return Texture(
        kind=TEXTURES[rng.integers(len(TEXTURES))],
        color_a=random_color(rng),
        color_b=random_color(rng),
        frequency=float(rng.integers(2, 9)),  # whole repeats: no seam where u wraps around
        angle=float(rng.uniform(0, np.pi)),
    )


def random_primitive(rng: np.random.Generator, main: bool) -> Primitive:
    """The main body near the origin, or a smaller part attached around it."""
    size = rng.uniform(0.35, 0.6) if main else rng.uniform(0.15, 0.35)
    aspect = rng.uniform(0.6, 1.4, size=3)
    center = np.zeros(3) if main else rng.uniform(-0.45, 0.45, size=3)
    return Primitive(
        shape=SHAPES[rng.integers(len(SHAPES))],
        center=tuple(float(c) for c in center),  # type: ignore[arg-type]
        scale=tuple(float(s) for s in size * aspect),  # type: ignore[arg-type]
        rotation_deg=tuple(float(a) for a in rng.uniform(-180, 180, size=3)),  # type: ignore[arg-type]
        texture=random_texture(rng),
    )


@dataclass(frozen=True)
class SceneObject:
    """Primitives plus a fixed directional light (fixed in the world, so views agree with each other)."""

    primitives: tuple[Primitive, ...]
    light_dir: tuple[float, float, float]
    light_color: tuple[float, float, float]
    ambient: float

    def to_dict(self) -> dict:
        return asdict(self)


def fit_in_unit_sphere(parts: list[Primitive]) -> list[Primitive]:
    """Scale the whole object about the origin so the parts' bounding spheres fit in the unit sphere (the
    orbit camera frames that sphere, so no view crops the object)."""
    extent = max(float(np.linalg.norm(p.center)) + p.bounding_radius for p in parts)
    k = 1.0 / extent
    return [
        Primitive(
            shape=p.shape,
            center=tuple(c * k for c in p.center),  # type: ignore[arg-type]
            scale=tuple(s * k for s in p.scale),  # type: ignore[arg-type]
            rotation_deg=p.rotation_deg,
            texture=p.texture,
        )
        for p in parts
    ]


def random_object(rng: np.random.Generator) -> SceneObject:
    """One main primitive and 0-2 attached parts, fitted into the unit sphere, with a light from above."""
    parts = [random_primitive(rng, main=True)]
    parts += [random_primitive(rng, main=False) for _ in range(rng.integers(0, 3))]
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.4, 1.0), rng.uniform(-1, 1)])
    light /= np.linalg.norm(light)
    tint = 1.0 - rng.uniform(0, 0.2, size=3)
    return SceneObject(
        primitives=tuple(fit_in_unit_sphere(parts)),
        light_dir=tuple(float(c) for c in light),  # type: ignore[arg-type]
        light_color=tuple(float(c) for c in tint),  # type: ignore[arg-type]
        ambient=float(rng.uniform(0.25, 0.45)),
    )
