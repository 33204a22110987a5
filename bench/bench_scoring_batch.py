"""Batched learned scoring on CPU: CLIP score clips/s at batch sizes 1, 8 and 32 in one run, as ratios.

Run: .venv/bin/python bench/bench_scoring_batch.py [--size tiny|base|large] [--clips 64] [--repeats 3]
     [--threads N]

The CLIP score scorer is built by the real loader (`build_learned_scorers`, `only=["clip_score"]`) from a
random-weight CLIPModel saved to a temp folder (speed does not depend on weight values): `tiny` is a 2-layer
64-wide model at 64 px (mostly per-call overhead), `base` has ViT-B/32's shape (the usual CLIP-score
model), `large` ViT-L/14's (LAION's aesthetic CLIP; slow on CPU). Every clip is 9 scoring frames at 256x455
(the LVD build's default for a 16:9 clip at 2 fps) with its own pixels and caption, so the embedding cache
never hits; the score is the mean over the first, middle and last frame (3 images per clip). A pass scores
all clips in groups of the batch size through `score_many` -> `ClipScoreScorer.score_batch`, as the score
stage does after decoding. Passes of every batch size are interleaved, best of `--repeats` is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd_core.curation.config import LearnedScorersConfig
from svd_core.curation.learned import build_learned_scorers
from svd_core.curation.scorer_base import ClipScorer, score_many
from svd_core.video.frames import SampledFrames

BATCHES = (1, 8, 32)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        patch=16,
        image=64,
        projection=32,
    ),
    "base": dict(  # ViT-B/32
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        patch=32,
        image=224,
        projection=512,
    ),
    "large": dict(  # ViT-L/14
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        patch=14,
        image=224,
        projection=768,
    ),
}
WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(996)]


def save_clip(folder: Path, size: dict[str, Any]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(**size["text"], vocab_size=len(WORDS), bos_token_id=2, eos_token_id=3),
        vision_config=dict(**size["vision"], image_size=size["image"], patch_size=size["patch"]),
        projection_dim=size["projection"],
    )
    CLIPModel(config).save_pretrained(folder)
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    ).save_pretrained(folder)
    side = size["image"]
    CLIPImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(folder)
    return folder


def clips(count: int) -> tuple[list[SampledFrames], list[dict[str, Any]]]:
    rng = np.random.default_rng(0)
    frames, rows = [], []
    for i in range(count):
        base = rng.integers(0, 256, (1, 256, 455, 3), dtype=np.uint8)
        jitter = rng.integers(-20, 20, (9, 1, 1, 3))
        pixels = np.clip(base.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
        frames.append(SampledFrames(pixels, np.arange(9) / 2.0, 2.0, 1280, 720))
        words = rng.integers(4, len(WORDS), rng.integers(5, 25))
        rows.append({"clip_id": str(i), "caption": " ".join(WORDS[w] for w in words)})
    return frames, rows


def one_pass(
    scorer: ClipScorer, frames: list[SampledFrames], rows: list[dict[str, Any]], batch: int
) -> float:
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        score_many(scorer, frames[i : i + batch], rows[i : i + batch])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--clips", type=int, default=64, help="clips per pass (a multiple of 32 is fairest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_clip(Path(tmp) / "clip", SIZES[args.size])
        cfg = LearnedScorersConfig(device="cpu", craft_weights=None, clip_score_model_path=str(folder))
        (scorer,) = build_learned_scorers(cfg, only=["clip_score"])
        frames, rows = clips(args.clips)
        one_pass(scorer, frames[:8], rows[:8], 8)  # warm-up (allocations, lazy kernels)
        best = dict.fromkeys(BATCHES, float("inf"))
        for _ in range(args.repeats):
            for batch in BATCHES:
                best[batch] = min(best[batch], one_pass(scorer, frames, rows, batch))
    rates = {batch: args.clips / seconds for batch, seconds in best.items()}
    print(
        f"CLIP score on CPU ({args.size}, torch threads {torch.get_num_threads()}), {args.clips} clips x 3 frames, "
        f"best of {args.repeats}"
    )
    for batch, rate in rates.items():
        print(f"  batch {batch:>2}: {rate:8.2f} clips/s  {rate / rates[1]:5.2f}x batch 1")


if __name__ == "__main__":
    main()
