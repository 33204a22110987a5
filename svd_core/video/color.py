"""HDR and wide-gamut sources to SDR BT.709 frames, so every consumer sees the colours a viewer would.

A PQ (SMPTE ST 2084) or HLG (ARIB STD-B67) source, or any BT.2020-primaries source, decoded as if it were
BT.709 SDR looks washed out and desaturated (PQ white at 203 nits is code value 0.58). `SdrConverter` maps
such frames to 8-bit yuv420p BT.709 SDR at the working size: the frame is scaled to that size as 16-bit
R'G'B' (BT.2020 matrix), linearised (PQ: the ST 2084 EOTF in nits; HLG: the BT.2100 inverse OETF and the
OOTF of a 1000-nit display; SDR: BT.1886), divided by the BT.2408 HDR reference white (203 nits = SDR
100%), converted to BT.709 primaries, tone-mapped on max(R, G, B) (`tone_map`: identity up to `KNEE`, an
extended-Reinhard shoulder that reaches SDR white at the source peak; hue is kept, nothing clips), and
encoded with the BT.1886 (gamma 2.4) inverse EOTF. Content up to reference white comes out as an SDR grade
of it would be. The transfer functions are lookup tables over the 16-bit codes, so the conversion costs
about as much as decoding at 360p.

FFmpeg's own alternatives were measured and not used: this PyAV build has no `zscale`, its `tonemap`
filter needs linear input, and FFmpeg 8's colour-managed swscale (`reformat(dst_color_trc=...)`, the
`scale` filter's `out_transfer`) agrees with this conversion (tests/svd_core/video/test_decode_formats.py)
but takes about a second per `reformat` call and 6-8 s to set up per filter graph on this CPU.
"""

from __future__ import annotations

import functools
from typing import Literal

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

Transfer = Literal["sdr", "pq", "hlg"]

TRC_BT709, TRC_PQ, TRC_HLG = 1, 16, 18
"""FFmpeg AVColorTransferCharacteristic values (ITU-T H.273)."""
PRIMARIES_BT709, PRIMARIES_BT2020 = 1, 9
"""FFmpeg AVColorPrimaries values (ITU-T H.273)."""
COLORSPACE_BT2020_NCL, COLORSPACE_BT2020_CL = 9, 10
RANGE_JPEG = 2
SWS_CS_ITU709, SWS_CS_BT2020 = 1, 9
"""swscale's matrix ids (SWS_CS_*), what `reformat`'s colorspace arguments take."""

REFERENCE_WHITE_NITS = 203.0
"""BT.2408 HDR reference white: maps to SDR 100%."""
PEAK_NITS = 1000.0
"""Assumed source peak (the common mastering display; HLG's nominal display)."""
HLG_SYSTEM_GAMMA = 1.2
"""BT.2100 OOTF gamma for a 1000-nit display."""
KNEE = 0.8
"""Tone map: identity below this fraction of SDR white, a soft shoulder above it."""

BT2020_TO_BT709 = np.array(
    [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]], np.float32
)
"""Linear-light BT.2020 RGB -> BT.709 RGB (BT.2087)."""
BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593], np.float32)
BT709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)

_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073
_CODES = np.arange(65536, dtype=np.float64) / 65535.0
"""Every 16-bit code as a 0-1 signal: the domain of the lookup tables."""


def source_transfer(trc: int) -> Transfer:
    """`pq`, `hlg` or `sdr` for an FFmpeg transfer-characteristic value."""
    return "pq" if trc == TRC_PQ else "hlg" if trc == TRC_HLG else "sdr"


def needs_conversion(transfer: Transfer, primaries: int) -> bool:
    """Whether frames must be colour-converted to look right as BT.709 SDR (HDR or BT.2020 gamut)."""
    return transfer != "sdr" or primaries == PRIMARIES_BT2020


def pq_eotf(signal: np.ndarray) -> np.ndarray:
    """ST 2084: non-linear signal (0-1) -> display light in nits (0-10000)."""
    p = np.power(np.clip(signal, 0.0, 1.0), 1.0 / _PQ_M2)
    return 10000.0 * np.power(np.maximum(p - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * p), 1.0 / _PQ_M1)


def hlg_inverse_oetf(signal: np.ndarray) -> np.ndarray:
    """BT.2100 HLG: non-linear signal (0-1) -> normalised scene light (0-1)."""
    e = np.clip(signal, 0.0, 1.0)
    high = (np.exp((np.maximum(e, 0.5) - _HLG_C) / _HLG_A) + _HLG_B) / 12.0
    return np.where(e <= 0.5, e * e / 3.0, high)


def tone_map(rgb: np.ndarray, peak: float) -> np.ndarray:
    """Linear RGB relative to SDR white (1.0) with highlights up to `peak` -> linear RGB in 0-1.

    Scales each pixel by f(m)/m for m = max(R, G, B): f is the identity below `KNEE`; above it, the extended
    Reinhard curve t(1 + t/w^2)/(1 + t) of the rescaled excess t, which has slope 1 at the knee and reaches
    SDR white exactly at `peak`.
    """
    if peak <= 1.0:
        return np.clip(rgb, 0.0, 1.0)
    m = rgb.max(axis=-1)
    span = 1.0 - KNEE
    w = (peak - KNEE) / span
    t = np.maximum(m - KNEE, 0.0) / span
    shoulder = KNEE + span * np.minimum(t * (1.0 + t / (w * w)) / (1.0 + t), 1.0)
    scale = np.where(m > KNEE, shoulder / np.maximum(m, 1e-6), 1.0).astype(rgb.dtype)
    return np.clip(rgb * scale[..., None], 0.0, 1.0)


@functools.cache
def _linearise_lut(transfer: Transfer) -> np.ndarray:
    """16-bit code -> linear light (float32): display light / reference white (PQ), scene light (HLG, its
    OOTF needs the pixel's luminance and is applied after), BT.1886 display light (SDR)."""
    if transfer == "pq":
        return (pq_eotf(_CODES) / REFERENCE_WHITE_NITS).astype(np.float32)
    if transfer == "hlg":
        return hlg_inverse_oetf(_CODES).astype(np.float32)
    return np.power(_CODES, 2.4).astype(np.float32)


@functools.cache
def _encode_lut() -> np.ndarray:
    """Linear 0-1 (as a 16-bit code) -> 8-bit BT.1886 signal."""
    return np.round(np.power(_CODES, 1.0 / 2.4) * 255.0).astype(np.uint8)


class SdrConverter:
    """Converts HDR / wide-gamut frames to yuv420p BT.709 SDR at a given size (see the module docstring)."""

    def __init__(self, transfer: Transfer):
        self.transfer = transfer
        self.linearise = _linearise_lut(transfer)
        self.encode = _encode_lut()
        self.reformatter = VideoReformatter()  # source -> 16-bit RGB at the working size
        self.encoder = VideoReformatter()  # 8-bit RGB -> yuv420p: each keeps its own scaler

    def __call__(self, frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
        bt2020 = frame.colorspace in (COLORSPACE_BT2020_NCL, COLORSPACE_BT2020_CL)
        rgb16 = self.reformatter.reformat(
            frame,
            width=size[0],
            height=size[1],
            format="rgb48le",
            interpolation="AREA",
            src_colorspace=SWS_CS_BT2020 if bt2020 else None,
            src_color_range="JPEG" if frame.color_range == RANGE_JPEG else "MPEG",
        ).to_ndarray()
        linear = self.linearise[rgb16]
        wide = frame.color_primaries == PRIMARIES_BT2020
        peak = 1.0
        if self.transfer == "hlg":  # OOTF: display light = peak x Ys^(gamma - 1) x scene light
            luma = np.atleast_3d(cv2.transform(linear, (BT2020_LUMA if wide else BT709_LUMA)[None, :]))
            gain = PEAK_NITS / REFERENCE_WHITE_NITS * np.power(np.maximum(luma, 1e-6), HLG_SYSTEM_GAMMA - 1)
            linear = linear * gain
        if self.transfer != "sdr":
            peak = PEAK_NITS / REFERENCE_WHITE_NITS
        if wide:
            linear = np.maximum(cv2.transform(linear, BT2020_TO_BT709), 0.0)
        sdr = tone_map(linear, peak)
        rgb8 = self.encode[(sdr * 65535.0 + 0.5).astype(np.uint16)]
        out = self.encoder.reformat(
            av.VideoFrame.from_ndarray(rgb8, format="rgb24"),
            format="yuv420p",
            dst_colorspace=SWS_CS_ITU709,
            dst_color_range="MPEG",
        )
        out.pts, out.time_base = frame.pts, frame.time_base
        return out
