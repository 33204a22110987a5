"""Cache of per-item encoder outputs (VAE posterior, conditioning latent, CLIP context) by URI.

Because a dataset item is a function of (seed, epoch, index), so is everything the frozen encoders compute
from it (the cache holds the draws of `CACHED_EPOCH`): the VAE posterior mean/std of the frames, the conditioning-frame latent (its pixel noise comes from the
item's `cond_noise_seed`) and the CLIP context. The cache stores those, one safetensors object per item
under `<root>/<fingerprint>/`, where the fingerprint covers the dataset's sampling parameters and the
encoders' weights; a change of either starts a fresh cache. The posterior is stored as mean and std and
sampled at training time from the training generator, so a cached run computes the same loss as an
uncached one. Objects are written atomically through `svd_core.storage` (local or s3://).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from svd_core import storage as svd_io
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.errors import InputError
from svd_core.model import encoders
from svd_core.model.build import Components

CACHED_KEYS = ("latent_mean", "latent_std", "cond_latent", "context")
CACHED_EPOCH = 0
"""The encoder outputs depend on the item's draw (window, cond_aug, caption), so a cached run trains on the
draws of this one epoch in every epoch: the cache trades the per-epoch augmentation for no decoding."""


def weights_digest(*modules: torch.nn.Module | None) -> str:
    """Hash of the modules' parameters and buffers (names, shapes and values)."""
    digest = hashlib.blake2b(digest_size=16)
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_digest(dataset: VideoClipDataset) -> dict[str, Any]:
    """The sampling parameters that decide every item."""
    return {
        "table_uri": dataset.table_uri,
        "rows": len(dataset),
        "num_frames": dataset.num_frames,
        "height": dataset.height,
        "width": dataset.width,
        "fps": [dataset.fps_min, dataset.fps_max],
        "seed": dataset.seed,
        "cond_aug": [dataset.cond_aug_mean, dataset.cond_aug_std],
        "captions": dataset.caption_weights,
    }


def cache_fingerprint(dataset: VideoClipDataset, components: Components) -> str:
    blob = json.dumps(dataset_digest(dataset), sort_keys=True)
    blob += weights_digest(components.vae, components.image_encoder, components.text_encoder)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class LatentCache:
    def __init__(self, root_uri: str, fingerprint: str):
        self.prefix = svd_io.join_uri(root_uri, fingerprint)

    def uri(self, index: int) -> str:
        return svd_io.join_uri(self.prefix, f"{index:09d}.safetensors")

    def get(self, index: int) -> dict[str, torch.Tensor] | None:
        uri = self.uri(index)
        return load_tensors(svd_io.read_bytes(uri)) if svd_io.exists(uri) else None

    def put(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        svd_io.write_bytes(self.uri(index), save_tensors(data))

    def missing(self, count: int) -> list[int]:
        present = {u.rsplit("/", 1)[-1] for u in svd_io.list_uris(self.prefix)}
        return [i for i in range(count) if f"{i:09d}.safetensors" not in present]


@torch.no_grad()
def encode_items(
    components: Components, items: list[dict[str, torch.Tensor]]
) -> list[dict[str, torch.Tensor]]:
    """Encoder outputs of dataset items (a list collated into one batch, split again per item)."""
    frames = torch.stack([item["frames"] for item in items])
    mean, std = encoders.video_latent_dist(components, frames)
    out: dict[str, torch.Tensor] = {"latent_mean": mean, "latent_std": std}
    if components.conditioning == "image":
        cond_aug = torch.stack([item["cond_aug"] for item in items])
        seeds = torch.stack([item["cond_noise_seed"] for item in items])
        out["cond_latent"] = encoders.cond_frame_latent(components, frames[:, 0], cond_aug, seeds)
        out["context"] = encoders.image_context(components, frames[:, 0])
    else:
        out["context"] = encoders.text_context(components, torch.stack([item["input_ids"] for item in items]))
    return [{k: v[i] for k, v in out.items()} for i in range(len(items))]


def fill_cache(
    dataset: VideoClipDataset,
    components: Components,
    cache: LatentCache,
    indices: Iterable[int],
    batch_size: int = 4,
) -> int:
    """Encode and store the given items; returns how many were written."""
    pending = list(indices)
    dataset.set_epoch(CACHED_EPOCH)
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        for index, tensors in zip(chunk, encode_items(components, [dataset[i] for i in chunk]), strict=True):
            cache.put(index, tensors)
    return len(pending)


class CachedLatentDataset(torch.utils.data.Dataset):
    """Items with cached encoder outputs in place of `frames` (no decoding at training time)."""

    def __init__(self, dataset: VideoClipDataset, cache: LatentCache):
        self.dataset, self.cache = dataset, cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cached = self.cache.get(index)
        if cached is None:
            raise InputError(
                f"latent cache {self.cache.prefix} lacks item {index}; fill it (SvdTrainTask.build_dataset "
                "does) or unset data.latent_cache_uri"
            )
        plan = self.dataset.plan(index, epoch=CACHED_EPOCH)
        return {**self.dataset.conditioning(plan), **cached}
