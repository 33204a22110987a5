"""Per-clip time of each learned scorer, and the speed-ups of batching and sharing, measured side by side.

Run: .venv/bin/python bench/learned_scorers.py [--size real|tiny] [--repeats N] [--device cpu]

CRAFT uses the real shipped weights. The other models are random-weight networks of the real architectures'
sizes (`--size real`: CLIP ViT-L/14 as LAION's aesthetic predictor uses, BLIP-large, a GPT-2-medium-size (355M) LLM);
speed does not depend on weight values, and generation is forced to its full token budget (worst case).
The clip is 9 scoring frames at 256x455 (the LVD build's default downscale of a 16:9 video at 2 fps).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from svd_core.curation.captioners import frame_grid
from svd_core.curation.config import LearnedScorersConfig
from svd_core.curation.learned import build_learned_scorers
from svd_core.video.frames import SampledFrames

SIZES = {
    "real": dict(
        clip_vision=dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16
        ),
        clip_text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        clip_patch=14,
        clip_image=224,
        projection=768,
        blip_vision=dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16
        ),
        blip_text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        blip_image=384,
        llm=dict(n_embd=1024, n_layer=24, n_head=16),  # GPT-2 medium, 355M
        vocab=30524,
        llm_vocab=50257,
    ),
    "tiny": dict(
        clip_vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        clip_text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        clip_patch=16,
        clip_image=64,
        projection=32,
        blip_vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        blip_text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        blip_image=64,
        llm=dict(n_embd=64, n_layer=2, n_head=2),
        vocab=1000,
        llm_vocab=1000,
    ),
}


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(vocab_size - 4)]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    ).save_pretrained(folder)


def full_budget(model: torch.nn.Module) -> None:
    """Never stop early: time the whole max_new_tokens budget."""
    model.generation_config.suppress_tokens = [0, 1, 2, 3]
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3


def build_models(root: Path, size: dict, captioners: bool) -> dict[str, Path]:
    from safetensors.torch import save_file
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from svd_core.curation.aesthetic import AestheticHead

    torch.manual_seed(0)
    clip = CLIPConfig(
        text_config=dict(**size["clip_text"], vocab_size=size["vocab"], bos_token_id=2, eos_token_id=3),
        vision_config=dict(
            **size["clip_vision"], image_size=size["clip_image"], patch_size=size["clip_patch"]
        ),
        projection_dim=size["projection"],
    )
    CLIPModel(clip).save_pretrained(root / "clip")
    write_tokenizer(root / "clip", size["vocab"])
    image = size["clip_image"]
    CLIPImageProcessorPil(
        size={"shortest_edge": image}, crop_size={"height": image, "width": image}
    ).save_pretrained(root / "clip")
    save_file(AestheticHead(size["projection"]).state_dict(), str(root / "head.safetensors"))
    paths = {"clip": root / "clip", "head": root / "head.safetensors"}
    if not captioners:
        return paths

    blip_text = dict(
        **size["blip_text"], vocab_size=size["vocab"], bos_token_id=2, eos_token_id=3, pad_token_id=0
    )
    blip_text["encoder_hidden_size"] = size["blip_vision"]["hidden_size"]
    blip = BlipForConditionalGeneration(
        BlipConfig(
            text_config=blip_text,
            vision_config=dict(**size["blip_vision"], image_size=size["blip_image"], patch_size=16),
        )
    )
    full_budget(blip)
    blip.save_pretrained(root / "blip")
    write_tokenizer(root / "blip", size["vocab"])
    side = size["blip_image"]
    BlipImageProcessorPil(size={"height": side, "width": side}).save_pretrained(root / "blip")

    # GPT-2 layout: transformers 5 maps a Qwen2/Llama config.json to their own tokenizer classes, which
    # ignore the synthetic WordLevel tokenizer written here (a real model folder ships its own tokenizer)
    llm = GPT2LMHeadModel(
        GPT2Config(
            **size["llm"], vocab_size=size["llm_vocab"], n_positions=1024, bos_token_id=2, eos_token_id=3
        )
    )
    full_budget(llm)
    llm.save_pretrained(root / "llm")
    write_tokenizer(root / "llm", size["llm_vocab"])
    return {**paths, "blip": root / "blip", "llm": root / "llm"}


def a_clip(seed: int = 0) -> SampledFrames:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 256, 455, 3), dtype=np.uint8)
    frames = np.clip(base.astype(np.int16) + rng.integers(-20, 20, (9, 1, 1, 3)), 0, 255).astype(np.uint8)
    return SampledFrames(frames, np.arange(9) / 2.0, 2.0, 1280, 720)


def compare(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds per case, the cases interleaved so a busy shared CPU hits them alike."""
    for fn in cases.values():
        fn()  # warm-up (allocations, lazy kernels)
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_craft(craft, clip: SampledFrames, repeats: int) -> dict[str, float]:
    keys = clip.key_frames()

    def at(side: int) -> Callable[[], object]:
        def run() -> object:
            craft.long_side = side
            return craft.score(clip, {})

        return run

    def one_by_one() -> object:
        craft.long_side = 512
        return [craft.frame_ratios(keys[i : i + 1]) for i in range(len(keys))]

    cases = {f"text (CRAFT), 3 key frames batched, long side {side}": at(side) for side in (256, 384, 512)}
    cases["text (CRAFT), long side 512, frames one by one"] = one_by_one
    out = compare(cases, repeats)
    craft.long_side = 512
    return out


def bench_clip(aesthetic, clip_score, repeats: int) -> dict[str, float]:
    row = {"caption": "w1 w2 w3 w4 w5 w6 w7 w8"}
    fresh = iter([a_clip(seed) for seed in range(1, 4 * (repeats + 1) + 1)])  # new pixels: no cache hits

    def separate() -> None:
        aesthetic.score(next(fresh), row)
        clip_score.score(next(fresh), row)

    def shared() -> None:
        frames = next(fresh)
        aesthetic.score(frames, row)
        clip_score.score(frames, row)

    return compare(
        {
            "aesthetic + clip_score, vision tower run twice": separate,
            "aesthetic + clip_score, shared encoder (default)": shared,
        },
        repeats,
    )


def bench_captions(chain, clip: SampledFrames, repeats: int) -> dict[str, float]:
    model, grid = chain.image, frame_grid(clip.frames, chain.video_frames)
    return compare(
        {
            "caption: image captioner only (30 tokens)": lambda: model.caption([clip.middle_frame()]),
            "caption: image + video, two generate calls": lambda: (
                model.caption([clip.middle_frame()]),
                model.caption([grid]),
            ),
            "caption: image + video, one batched generate (default)": lambda: chain.learned_captions(clip),
            "caption: full chain incl. LLM merge (48 tokens)": lambda: chain.score(clip, {}),
        },
        repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="real")
    parser.add_argument("--parts", default="craft,clip,caption", help="comma list of craft, clip, caption")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}, model size: {args.size}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_models(Path(tmp), SIZES[args.size], captioners="caption" in parts)
        blip, llm = paths.get("blip"), paths.get("llm")
        cfg = LearnedScorersConfig(
            model_cache_dir=str(Path(tmp) / "cache"),
            aesthetic_clip_path=str(paths["clip"]),
            aesthetic_head_path=str(paths["head"]),
            clip_score_model_path=str(paths["clip"]),
            image_captioner_path=str(blip) if blip else None,
            video_captioner_path=str(blip) if blip else None,
            llm_merger_path=str(llm) if llm else None,
        )
        scorers = {s.name: s for s in build_learned_scorers(cfg, device=args.device)}
        caption, craft = scorers["caption"], scorers["craft"]
        aesthetic, clip_score = scorers["aesthetic"], scorers["clip_score"]
        clip = a_clip()
        report: dict[str, float] = {}
        if "craft" in parts:
            report |= bench_craft(craft, clip, args.repeats)
        if "clip" in parts:
            report |= bench_clip(aesthetic, clip_score, args.repeats)
        if "caption" in parts:
            report |= bench_captions(caption, clip, args.repeats)

    header = f"per clip (best of {args.repeats})"
    print(f"\n{header:62s} seconds")
    for name, seconds in report.items():
        print(f"{name:62s} {seconds:7.3f}")
    print("\nratios (side by side, same run)")
    pairs = [
        (
            "CRAFT frames one by one / batched",
            "text (CRAFT), long side 512, frames one by one",
            "text (CRAFT), 3 key frames batched, long side 512",
        ),
        (
            "CRAFT long side 512 / 256",
            "text (CRAFT), 3 key frames batched, long side 512",
            "text (CRAFT), 3 key frames batched, long side 256",
        ),
        (
            "aesthetic+clip_score vision twice / shared encoder",
            "aesthetic + clip_score, vision tower run twice",
            "aesthetic + clip_score, shared encoder (default)",
        ),
        (
            "image+video captions two calls / one batched",
            "caption: image + video, two generate calls",
            "caption: image + video, one batched generate (default)",
        ),
    ]
    for label, slow, fast in pairs:
        if slow in report and fast in report:
            print(f"{label:52s} {report[slow] / report[fast]:5.2f}x")


if __name__ == "__main__":
    main()
