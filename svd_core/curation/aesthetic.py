"""LAION aesthetic predictor: L2-normalised CLIP image embedding -> small MLP -> score on a ~1..10 scale.

Same layout as LAION's improved-aesthetic-predictor (`layers.0` ... `layers.7`, e.g. the public
`sac+logos+ava1-l14-linearMSE.pth` on CLIP ViT-L/14), so its weights load unchanged. The paper (section
3.1) scores the first, middle and last frame; the clip's score is their mean (`clip_frames: key`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svd_core.curation.clip_score import ClipEncoder, frames_for
from svd_core.curation.model_loading import read_state_dict, short_hash, weights_fingerprint
from svd_core.curation.schema import SCORE_RANGES
from svd_core.errors import InputError
from svd_core.video.frames import SampledFrames

CODE_VERSION = "aesthetic-v1"


class AestheticHead(nn.Module):
    """Linear(d,1024)-Dropout-Linear(1024,128)-Dropout-Linear(128,64)-Dropout-Linear(64,16)-Linear(16,1)."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds).squeeze(-1)


def load_aesthetic_head(path: Path) -> AestheticHead:
    """Build the head with the input size found in the file and load it strictly."""
    state = read_state_dict(path, "aesthetic_head_path")
    first = state.get("layers.0.weight")
    if first is None or first.ndim != 2:
        raise InputError(
            f"aesthetic_head_path: {path} has no layers.0.weight; it must be a LAION improved-aesthetic-"
            "predictor MLP state dict (keys layers.0 ... layers.7)"
        )
    head = AestheticHead(int(first.shape[1]))
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(
            f"aesthetic_head_path: {path} does not match the LAION MLP layout ({str(exc).splitlines()[0]})"
        ) from exc
    return head.eval().requires_grad_(False)


class AestheticScorer:
    """ClipScorer filling `aesthetic_score`: mean LAION score of the key (or middle) frames, clamped to the
    schema range because the regression head can extrapolate slightly past the 1..10 rating scale."""

    name = "aesthetic"
    columns = ("aesthetic_score",)

    def __init__(self, encoder: ClipEncoder, head: AestheticHead, head_path: Path, clip_frames: str = "key"):
        if head.input_size != encoder.embed_dim:
            raise InputError(
                f"aesthetic_head_path: the head takes {head.input_size}-dim embeddings but the CLIP model at "
                f"aesthetic_clip_path gives {encoder.embed_dim}; pair the head with the CLIP it was trained "
                "on (LAION's sac+logos+ava1-l14 head needs ViT-L/14, 768)"
            )
        self.encoder = encoder
        self.head = head.to(encoder.device)  # float32: the head is tiny and its inputs are normalised
        self.clip_frames = clip_frames
        self.version = f"{CODE_VERSION}+w{encoder.fingerprint}.{weights_fingerprint(head_path)}+{short_hash(clip_frames)}"

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        return self.score_batch([frames], [row])[0]

    def score_batch(
        self, frames: Sequence[SampledFrames], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """`score` of each clip: every clip's frames through one CLIP forward and one head forward."""
        if not frames:
            return []
        groups = self.encoder.image_embeddings_batch([frames_for(f, self.clip_frames) for f in frames])
        with torch.inference_mode():
            values = self.head(torch.cat(groups).to(self.encoder.device)).float().cpu()
        low, high = SCORE_RANGES["aesthetic_score"]
        means = [float(v.mean()) for v in torch.split(values, [len(g) for g in groups])]
        return [{"aesthetic_score": min(high, max(low, value))} for value in means]
