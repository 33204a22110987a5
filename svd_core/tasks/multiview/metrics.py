"""Multi-view metrics between generated and true views: PSNR, SSIM, and LPIPS / CLIP-S where weights exist.

- PSNR: 10 log10(1 / MSE) on RGB in [0, 1], per view (capped at 100 dB for identical views).
- SSIM: scikit-image's `structural_similarity` (Gaussian-free 7x7 window, RGB channels averaged).
- LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk) in plain torch, since the `lpips` package needs
  torchvision: the module below has the `lpips.LPIPS(net="alex")` parameter names, so its state dict loads
  as saved. Nothing is downloaded: without configured weights LPIPS is None, never a made-up number.
- CLIP-S: cosine similarity of CLIP image embeddings of the true and generated view (transformers'
  `CLIPVisionModelWithProjection` from a local folder); None without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from svd_core.errors import InputError

PSNR_CAP_DB = 100.0


def _unit(image: np.ndarray) -> np.ndarray:
    """uint8 or float image (H, W, 3) -> float64 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def psnr(generated: np.ndarray, true: np.ndarray) -> float:
    mse = float(np.mean((_unit(generated) - _unit(true)) ** 2))
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else float(10 * np.log10(1.0 / mse))


def ssim(generated: np.ndarray, true: np.ndarray) -> float:
    a, b = _unit(generated), _unit(true)
    win = min(7, min(a.shape[:2]) // 2 * 2 - 1)  # odd and no larger than the image
    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0, win_size=win))


def _to_model_range(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8/float (H, W, 3) images -> (N, 3, H, W) float in [-1, 1]."""
    stacked = np.stack([_unit(i) for i in images]).astype(np.float32)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2) * 2 - 1


class _ScalingLayer(torch.nn.Module):
    shift: torch.Tensor  # buffers, registered in __init__
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _alexnet_slices() -> torch.nn.Module:
    """torchvision's AlexNet `features[:12]` cut after each ReLU, with its layer indices as names."""
    nn = torch.nn
    layers = {
        0: nn.Conv2d(3, 64, 11, stride=4, padding=2),
        1: nn.ReLU(),
        2: nn.MaxPool2d(3, 2),
        3: nn.Conv2d(64, 192, 5, padding=2),
        4: nn.ReLU(),
        5: nn.MaxPool2d(3, 2),
        6: nn.Conv2d(192, 384, 3, padding=1),
        7: nn.ReLU(),
        8: nn.Conv2d(384, 256, 3, padding=1),
        9: nn.ReLU(),
        10: nn.Conv2d(256, 256, 3, padding=1),
        11: nn.ReLU(),
    }
    net = nn.Module()
    for number, (lo, hi) in enumerate([(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)], start=1):
        block = nn.Sequential()
        for index in range(lo, hi):
            block.add_module(str(index), layers[index])
        net.add_module(f"slice{number}", block)
    return net


class Lpips(torch.nn.Module):
    """LPIPS v0.1 with the AlexNet trunk; inputs (N, 3, H, W) in [-1, 1]; output (N,) distances."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = _alexnet_slices()
        for k, channels in enumerate(self.CHANNELS):
            lin = torch.nn.Module()
            lin.model = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(channels, 1, 1, bias=False))
            self.add_module(f"lin{k}", lin)
        self.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.scaling_layer(a), self.scaling_layer(b)
        total = torch.zeros(a.shape[0], device=a.device)
        for k in range(len(self.CHANNELS)):
            block = getattr(self.net, f"slice{k + 1}")
            fa, fb = block(fa), block(fb)
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total


def _lpips_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept lpips.LPIPS state dicts and torchvision AlexNet `features.N.*` keys beside `linK.*`."""
    slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {}
    for key, value in raw.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            if index in slice_of:
                key = f"net.slice{slice_of[index]}.{key[len('features.') :]}"
        state[key] = value
    return state


def load_lpips(path: str | Path, device: torch.device | str = "cpu") -> Lpips:
    model = Lpips()
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"eval.lpips_weights {path} cannot be read ({exc})") from None
    state = _lpips_state(dict(raw))
    state.setdefault("scaling_layer.shift", model.scaling_layer.shift)
    state.setdefault("scaling_layer.scale", model.scaling_layer.scale)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"eval.lpips_weights {path} does not hold LPIPS AlexNet weights: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}; save lpips.LPIPS(net='alex').state_dict()"
        )
    return model.to(device)


@torch.no_grad()
def lpips_distances(model: Lpips, generated: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> list[float]:
    device = next(model.parameters()).device
    out = model(_to_model_range(generated).to(device), _to_model_range(true).to(device))
    return [float(v) for v in out.cpu()]


class ClipScorer:
    """CLIP-S between image pairs from a local transformers CLIP vision model folder."""

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu"):
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"eval.clip_model_uri {folder} is not a folder with a CLIP vision model")
        try:
            self.model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
            self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"eval.clip_model_uri {folder}: cannot load a CLIP vision model ({exc})"
            ) from None
        self.model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt").pixel_values.to(self.device)
        emb = self.model(pixel_values=pixels).image_embeds.float()
        return emb / emb.norm(dim=-1, keepdim=True)

    def scores(self, generated: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> list[float]:
        return [float(v) for v in (self.embed(generated) * self.embed(true)).sum(-1).cpu()]
