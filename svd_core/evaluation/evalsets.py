"""Versioned eval sets: prompts and conditioning images with fixed seeds, read by URI.

An eval set is a JSON or YAML file (or a folder holding `evalset.json|yaml|yml`, or a folder of images):

    {"name": "my-prompts",
     "items": [{"prompt_id": "p01", "prompt": "a red panda eating bamboo", "seed": 7},
               {"prompt_id": "p02", "prompt": "waves at dusk", "image": "images/waves.png"}]}

`image` paths are relative to the file (or absolute URIs); a missing `seed` is derived from the prompt id,
so adding items never changes the seeds of the others. The version is a hash of the content (prompts,
seeds and image bytes): two sets with the same version generate the same samples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from svd_core import storage as svd_io
from svd_core.errors import InputError

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_SETS = {
    "text-to-video": DATA_DIR / "t2v_prompts.json",
    "image-to-video": DATA_DIR / "i2v_images.json",
}
MANIFEST_NAMES = ("evalset.json", "evalset.yaml", "evalset.yml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class EvalItem:
    """One prompt (and conditioning image, for image-to-video) with the seed every model samples it with."""

    prompt_id: str
    prompt: str
    image_uri: str | None
    seed: int


@dataclass(frozen=True)
class EvalSet:
    name: str
    version: str
    items: tuple[EvalItem, ...]

    @property
    def prompt_ids(self) -> list[str]:
        return [item.prompt_id for item in self.items]

    def item(self, prompt_id: str) -> EvalItem:
        for item in self.items:
            if item.prompt_id == prompt_id:
                return item
        raise InputError(f"eval set {self.name}@{self.version} has no prompt_id {prompt_id!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "items": [asdict(i) for i in self.items]}


def derived_seed(prompt_id: str) -> int:
    """Seed of an item that names none: stable per prompt id (independent of order and set name)."""
    return int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16)


def content_version(name: str, items: list[EvalItem]) -> str:
    """Short hash of the prompts, seeds and image bytes (not their paths: moving a set keeps its version)."""
    digest = hashlib.sha256(name.encode())
    for item in items:
        image_hash = hashlib.sha256(svd_io.read_bytes(item.image_uri)).hexdigest() if item.image_uri else ""
        digest.update(json.dumps([item.prompt_id, item.prompt, item.seed, image_hash]).encode())
    return digest.hexdigest()[:12]


def _resolve_image(base_uri: str, image: str) -> str:
    if "://" in image or image.startswith("/"):
        return image
    return svd_io.join_uri(base_uri, image)


def _parse_item(raw: Any, index: int, base_uri: str, source: str) -> EvalItem:
    where = f"{source}: item #{index}"
    if not isinstance(raw, dict):
        raise InputError(f"{where} is a {type(raw).__name__}; each item must be an object with a prompt_id")
    unknown = set(raw) - {"prompt_id", "prompt", "image", "seed"}
    if unknown:
        raise InputError(
            f"{where} has unknown keys {sorted(unknown)}; allowed: prompt_id, prompt, image, seed"
        )
    prompt_id = raw.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id.strip():
        raise InputError(f"{where} needs a non-empty string prompt_id")
    prompt = raw.get("prompt", "")
    image = raw.get("image")
    if not isinstance(prompt, str) or (not prompt.strip() and not image):
        raise InputError(f"{where} ({prompt_id}) needs a prompt (text-to-video) or an image (image-to-video)")
    seed = raw.get("seed", derived_seed(prompt_id))
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{where} ({prompt_id}): seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    image_uri = None
    if image is not None:
        if not isinstance(image, str) or not image:
            raise InputError(f"{where} ({prompt_id}): image must be a path or URI string")
        image_uri = _resolve_image(base_uri, image)
        if not svd_io.exists(image_uri):
            raise InputError(f"{where} ({prompt_id}): image {image_uri} does not exist; fix the path")
    return EvalItem(prompt_id=prompt_id, prompt=prompt, image_uri=image_uri, seed=seed)


def eval_set_from_dict(data: Any, base_uri: str, source: str, default_name: str) -> EvalSet:
    """Build and validate an eval set from parsed JSON/YAML; image paths resolve against `base_uri`."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not data["items"]:
        raise InputError(f"{source} must hold an object with a non-empty 'items' list (see evalsets.py)")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: name must be a non-empty string")
    items = [_parse_item(raw, i, base_uri, source) for i, raw in enumerate(data["items"])]
    seen: set[str] = set()
    for item in items:
        if item.prompt_id in seen:
            raise InputError(f"{source}: prompt_id {item.prompt_id!r} appears twice; ids must be unique")
        seen.add(item.prompt_id)
    return EvalSet(name=name, version=content_version(name, items), items=tuple(items))


def _parse_text(text: str, source: str) -> Any:
    try:
        return json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{source} is not valid JSON/YAML: {exc}") from exc


def _parent_uri(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri else "."


def load_eval_set(uri: str | Path) -> EvalSet:
    """Load an eval set from a JSON/YAML file, a folder with an `evalset.*` manifest, or a folder of images."""
    uri = str(uri)
    if uri.lower().endswith((".json", ".yaml", ".yml")):
        text = svd_io.read_bytes(uri).decode("utf-8")
        stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return eval_set_from_dict(_parse_text(text, uri), _parent_uri(uri), uri, stem)
    uri = uri.rstrip("/")
    folder_name = uri.rsplit("/", 1)[-1]
    for manifest in MANIFEST_NAMES:
        manifest_uri = svd_io.join_uri(uri, manifest)
        if svd_io.exists(manifest_uri):
            text = svd_io.read_bytes(manifest_uri).decode("utf-8")
            return eval_set_from_dict(_parse_text(text, manifest_uri), uri, manifest_uri, folder_name)
    files = svd_io.list_uris(uri)
    if not files:
        raise InputError(f"eval set {uri} is neither a JSON/YAML file nor a folder with files in it")
    images = sorted(f for f in files if f.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise InputError(f"folder {uri} has no {MANIFEST_NAMES[0]} manifest and no images; add one of them")
    items = [{"prompt_id": f.rsplit("/", 1)[-1].rsplit(".", 1)[0], "image": f} for f in images]
    return eval_set_from_dict({"name": folder_name, "items": items}, uri, uri, folder_name)


def default_eval_set(task: str = "text-to-video") -> EvalSet:
    """The small eval set shipped with the package for `task` (16 prompts, or 4 conditioning images)."""
    if task not in DEFAULT_SETS:
        raise InputError(f"no default eval set for task {task!r}; use one of {sorted(DEFAULT_SETS)}")
    return load_eval_set(DEFAULT_SETS[task])


def resolve_eval_set(uri: str | None, task: str) -> EvalSet:
    return load_eval_set(uri) if uri else default_eval_set(task)
