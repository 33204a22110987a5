"""Activation memory per sample with activation checkpointing off / diffusers' own / ours, in one run.

Run: .venv/bin/python bench/bench_activation_memory.py [--small 14x256x384] [--svd 4x128x192|none] [--device cpu]
     (on a GPU: --device cuda --small 14x256x384 --svd 14x256x384 --svd 14x320x576)

For each UNet (`small`, and the real 1.5B `svd` UNet, with random weights: activation sizes do not depend
on the values; bf16 on GPU, fp32 on CPU where bf16 is emulated) one sample of FRAMES x HEIGHT x WIDTH
pixels goes forward and backward three times: without checkpointing, with diffusers' `enable_gradient_checkpointing()` (resnets only), and with
`svd_core.training.activation_checkpointing` (every spatial and temporal resnet and transformer). Memory
comes from the allocator (`svd_core.training.activation_memory`: torch's profiler memory events on CPU,
CUDA's counters on GPU): `retained` = left allocated by forward for backward, `peak` = highest point of
forward + backward (parameter gradients excluded). Target: ours <= 0.35x of `off` in activation memory
(retained) and in peak. The defaults are the paper's video shape for `small` and the largest `svd` shape that
runs without checkpointing in this box's memory (~5 min in all on 2 cores). At tiny shapes (4x64x128) the
peak is set by single ~145 MB allocations inside CPU `aten::convolution_backward` (a kernel workspace, not
activations) and its ratio says little (0.80-0.90 measured there); at the defaults it is 0.17-0.20.

Then every paper preset (configs/train/paper/*.yaml) is checked against an 80 GB GPU: ZeRO model states
per rank (Adam, bf16: 2 psi weights + 2 psi grads + 12 psi fp32 master/moments + 4 psi fp32 EMA, divided
per ZeRO stage as in the ZeRO paper) plus micro_batch x (the measured `svd` activations retained per sample
+ the backward transient: the measured one, or the recomputation of the largest checkpointed layer, whichever
is larger). When `svd` was measured at a smaller shape (CPU), the retained bytes
are scaled linearly in frames x pixels to the preset's shape (printed as `scaled from`: an estimate, not a
measurement) and fp32 bytes are halved for bf16.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNetSpatioTemporalConditionModel

from svd_core.config import load_config
from svd_core.model import config as model_config
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.training.activation_checkpointing import (
    disable_activation_checkpointing,
    enable_activation_checkpointing,
)
from svd_core.training.activation_memory import ActivationMemory, measure_activation_memory

GIB = 2**30
GPU_BYTES = 80 * 10**9  # an A100/H100 80 GB
TARGET = 0.35
SHARES: dict[str, float] = {}
"""Per preset: the largest checkpointed layer's share of the activations (its recomputation in backward)."""
BF16_SCALE = 1.0
"""Measured bytes -> bf16 bytes for the preset check (0.5 when the measurement ran in fp32 on CPU)."""
PAPER_DIR = Path(__file__).resolve().parents[1] / "configs" / "train" / "paper"


@dataclass(frozen=True)
class Shape:
    frames: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        frames, height, width = (int(v) for v in text.lower().split("x"))
        return cls(frames, height, width)

    @property
    def volume(self) -> int:
        return self.frames * self.height * self.width

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def build_unet(preset: str, frames: int, dtype: torch.dtype, device: torch.device):
    cfg = model_config.unet_config(model_config.get_preset(preset), "image", frames)
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**cfg)
    unet = unet.to_empty(device=device)
    if dtype != torch.float32:
        unet = unet.to(dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param in unet.parameters():  # small random weights keep activations finite; values don't matter
            param.normal_(0.0, 0.02, generator=generator)
    return unet.train()


def measure(
    preset: str, shape: Shape, dtype: torch.dtype, device: torch.device
) -> dict[str, ActivationMemory]:
    spec = model_config.get_preset(preset)
    unet = build_unet(preset, shape.frames, dtype, device)
    factor = spec.vae.downsample_factor
    generator = torch.Generator(device=device).manual_seed(1)
    channels = spec.unet_in_channels("image")
    latents = torch.randn(
        1,
        shape.frames,
        channels,
        shape.height // factor,
        shape.width // factor,
        generator=generator,
        device=device,
    ).to(dtype)
    context = torch.randn(1, 1, spec.unet.cross_attention_dim, device=device, generator=generator).to(dtype)
    added = torch.tensor([[6.0, 127.0, 0.02]], device=device, dtype=dtype)
    timestep = torch.tensor([0.25], device=device)

    def forward() -> torch.Tensor:
        out = unet(latents, timestep, encoder_hidden_states=context, added_time_ids=added).sample
        return out.float().square().mean()

    results = {}
    share = largest_layer_share(unet, forward)
    print(
        f"  {preset:5s} {shape!s:12s} largest checkpointed layer: {share:.1%} of the activations", flush=True
    )
    SHARES[preset] = share
    for mode in ("off", "diffusers", "ours"):
        disable_activation_checkpointing(unet)
        if unet.is_gradient_checkpointing:
            unet.disable_gradient_checkpointing()
        if mode == "diffusers":
            unet.enable_gradient_checkpointing()
        elif mode == "ours":
            enable_activation_checkpointing(unet)
        started = time.perf_counter()
        results[mode] = measure_activation_memory(unet, forward, device)
        mem = results[mode]
        print(
            f"  {preset:5s} {shape!s:12s} {mode:9s} retained {mem.retained_bytes / GIB:8.3f} GiB  "
            f"peak {mem.peak_bytes / GIB:8.3f} GiB  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    off = results["off"].peak_bytes
    print(
        f"  {preset} {shape}: activation memory (retained) ours/off "
        f"{results['ours'].retained_bytes / results['off'].retained_bytes:.2f} (target <= {TARGET}), "
        f"diffusers/off {results['diffusers'].retained_bytes / results['off'].retained_bytes:.2f}; peak "
        f"ours/off {results['ours'].peak_bytes / off:.2f}, diffusers/off {results['diffusers'].peak_bytes / off:.2f}",
        flush=True,
    )
    return results


def largest_layer_share(unet: torch.nn.Module, forward) -> float:
    """Share of the un-checkpointed activations saved inside the largest checkpointed layer: what backward
    holds again while it recomputes that layer (saved tensors counted once per storage, parameters not)."""
    from svd_core.training.activation_checkpointing import CHECKPOINTED_LAYERS

    layers: list[torch.nn.Module] = []

    def visit(module: torch.nn.Module) -> None:
        for child in module.children():
            (layers.append if type(child).__name__ in CHECKPOINTED_LAYERS else visit)(child)

    visit(unet)
    current: list[int | None] = [None]
    sizes: dict[int | None, int] = {}
    seen = {p.untyped_storage().data_ptr() for p in unet.parameters()}
    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=index: current.__setitem__(0, i)))
        handles.append(layer.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            sizes[current[0]] = sizes.get(current[0], 0) + storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward()
    finally:
        for handle in handles:
            handle.remove()
    total = sum(sizes.values())
    return max(v for k, v in sizes.items() if k is not None) / total if total else 0.0


def zero_state_bytes(psi: int, stage: int, ranks: int, ema: bool) -> tuple[float, str]:
    """Model-state bytes per rank (bf16 mixed precision, Adam) and the formula used."""
    ema_bytes: float = 4 * psi / ranks if ema and stage >= 1 else (4 * psi if ema else 0)
    if stage == 0:
        states, formula = 16.0 * psi, "16psi"
    elif stage == 1:
        states, formula = 4 * psi + 12 * psi / ranks, "4psi + 12psi/N"
    elif stage == 2:
        states, formula = 2 * psi + 14 * psi / ranks, "2psi + 14psi/N"
    else:
        states, formula = 16 * psi / ranks, "16psi/N"
    return states + ema_bytes, formula + (
        " + 4psi/N EMA" if ema and stage >= 1 else " + 4psi EMA" if ema else ""
    )


def check_presets(measured: dict[Shape, dict[str, ActivationMemory]]) -> bool:
    if not measured:
        print("\nno svd measurement: preset check skipped")
        return True
    psi = 1_524_623_082  # diffusers' UNetSpatioTemporalConditionModel at the released shapes
    print(f"\npaper presets on an 80 GB GPU (psi = {psi:,} UNet parameters):")
    all_fit = True
    for path in sorted(PAPER_DIR.glob("*.yaml")):
        cfg = load_config(TrainStageConfig, path)
        if cfg.preset != "svd" or cfg.stage == "image":
            continue
        t = cfg.trainer
        target = Shape(cfg.num_frames, cfg.height, cfg.width)
        source = target if target in measured else max(measured, key=lambda s: s.volume)
        mode = "ours" if t.gradient_checkpointing else "off"
        mem, scale = measured[source][mode], target.volume / source.volume * BF16_SCALE
        # Retained activations scale with frames x pixels. The backward transient is the larger of the
        # measured one (peak - retained: at a reduced CPU shape mostly a fixed convolution-backward
        # workspace) and the recomputation of the largest checkpointed layer, scaled (on a GPU run at the
        # target shape the measured peak already holds both)
        per_sample = mem.retained_bytes * scale
        recompute = SHARES.get("svd", 0.0) * measured[source]["off"].retained_bytes * scale
        transient = max(
            (mem.peak_bytes - mem.retained_bytes) * BF16_SCALE, recompute if mode == "ours" else 0
        )
        states, formula = zero_state_bytes(psi, t.zero_stage, t.ranks, t.ema)
        total = states + t.micro_batch_size * (per_sample + transient)
        fits = total <= GPU_BYTES
        all_fit &= fits
        how = (
            "measured" if source == target else f"scaled from {source} x {target.volume / source.volume:.1f}"
        )
        if BF16_SCALE != 1.0:
            how += ", fp32 bytes / 2 for bf16"
        print(
            f"  {path.name:22s} {target!s:12s} ZeRO-{t.zero_stage} N={t.ranks} micro={t.micro_batch_size} "
            f"checkpointing={'on' if t.gradient_checkpointing else 'off'}\n"
            f"    states {formula} = {states / 1e9:.1f} GB; activations {t.micro_batch_size} x "
            f"({per_sample / 1e9:.2f} GB retained ({how}) + {transient / 1e9:.2f} GB backward transient "
            f"(max of measured, largest layer recomputed)) = "
            f"{t.micro_batch_size * (per_sample + transient) / 1e9:.1f} GB; "
            f"total {total / 1e9:.1f} GB -> {'fits' if fits else 'DOES NOT FIT'} 80 GB"
        )
    return all_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="append", default=None, help="FxHxW for the small UNet")
    parser.add_argument("--svd", action="append", default=None, help="FxHxW for the 1.5B svd UNet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    # CPUs without AVX-512 BF16 emulate bf16 (orders of magnitude slower): fp32 there, bf16 on GPU
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    global BF16_SCALE
    BF16_SCALE = 0.5 if args.dtype == "fp32" else 1.0
    small = [Shape.parse(s) for s in (args.small or ["14x256x384"])]
    svd = [Shape.parse(s) for s in (args.svd or ["4x128x192"]) if s != "none"]
    print(f"activation memory per sample ({args.dtype}, {device.type}, batch 1):", flush=True)
    results = [measure("small", shape, dtype, device) for shape in small]
    measured_svd = {shape: measure("svd", shape, dtype, device) for shape in svd}
    summarize(results + list(measured_svd.values()), check_presets(measured_svd))


def summarize(results: list[dict[str, ActivationMemory]], fits: bool) -> None:
    retained = max(r["ours"].retained_bytes / r["off"].retained_bytes for r in results)
    peak = max(r["ours"].peak_bytes / r["off"].peak_bytes for r in results)
    print(f"\nworst activation-memory ratio ours/off: retained for backward {retained:.2f} "
          f"({'met' if retained <= TARGET else 'MISSED'}), peak {peak:.2f} "
          f"({'met' if peak <= TARGET else 'MISSED'}); target <= {TARGET}")  # fmt: skip
    print(f"every paper preset fits 80 GB: {'yes' if fits else 'NO'}")


if __name__ == "__main__":
    main()
