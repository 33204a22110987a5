"""EDM objective: VScalingWithEDMcNoise formulas, weighting, per-sample sigma, CFG dropout rates."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from svd_core.model.config import scheduler_config
from svd_core.training.edm import (
    DropoutProbs,
    apply_dropout,
    edm_loss,
    loss_weight,
    sample_dropout,
    sample_sigma,
    v_scalings,
)


def test_scalings_match_the_reference_formulas() -> None:
    sigma = torch.tensor([0.002, 0.5, 1.0, 3.0, 700.0], dtype=torch.float64)
    s = v_scalings(sigma)
    for i, value in enumerate(sigma.tolist()):
        assert s.c_skip[i].item() == pytest.approx(1 / (value**2 + 1))
        assert s.c_out[i].item() == pytest.approx(-value / math.sqrt(value**2 + 1))
        assert s.c_in[i].item() == pytest.approx(1 / math.sqrt(value**2 + 1))
        assert s.c_noise[i].item() == pytest.approx(0.25 * math.log(value))
        assert loss_weight(sigma)[i].item() == pytest.approx((1 + value**2) / value**2)


def test_training_preconditioning_is_what_the_released_scheduler_samples() -> None:
    """The v-prediction Euler scheduler SVD ships must invert exactly our c_in/c_noise/c_skip/c_out."""
    scheduler = EulerDiscreteScheduler(**scheduler_config())
    scheduler.set_timesteps(5)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 2, 4, 3, 3, generator=gen, dtype=torch.float64)
    output = torch.randn(1, 2, 4, 3, 3, generator=gen, dtype=torch.float64)
    for t, sigma in zip(scheduler.timesteps, scheduler.sigmas[:-1], strict=True):
        s = v_scalings(sigma.double().reshape(1))
        assert t.item() == pytest.approx(s.c_noise.item(), rel=1e-5)
        scheduler._step_index = None
        scaled = scheduler.scale_model_input(sample.clone(), t)
        assert torch.allclose(scaled, s.c_in * sample)
        step = scheduler.step(output, t, sample)
        assert torch.allclose(
            step.pred_original_sample.double(), s.c_skip * sample + s.c_out * output, atol=1e-5
        )


def test_sigma_is_per_sample_log_normal_and_reproducible() -> None:
    sigma = sample_sigma(40_000, 0.7, 1.6, torch.Generator().manual_seed(1))
    logs = sigma.log()
    assert abs(logs.mean().item() - 0.7) < 0.03 and abs(logs.std().item() - 1.6) < 0.03
    batch = sample_sigma(16, 0.7, 1.6, torch.Generator().manual_seed(1))
    assert batch.unique().numel() == 16  # one sigma per sample, not one per batch
    again = sample_sigma(40_000, 0.7, 1.6, torch.Generator().manual_seed(1))
    assert torch.equal(sigma, again)


def test_dropout_event_rates_match_the_configured_probabilities() -> None:
    probs = DropoutProbs(context_only=0.1, both=0.05, frame_only=0.2)
    n = 200_000
    drop_ctx, drop_frame = sample_dropout(n, probs, torch.Generator().manual_seed(3))
    rates = {
        "context_only": (drop_ctx & ~drop_frame).float().mean().item(),
        "both": (drop_ctx & drop_frame).float().mean().item(),
        "frame_only": (~drop_ctx & drop_frame).float().mean().item(),
    }
    for name, expected in (("context_only", 0.1), ("both", 0.05), ("frame_only", 0.2)):
        tolerance = 4 * math.sqrt(expected * (1 - expected) / n)
        assert abs(rates[name] - expected) < tolerance, name
    with pytest.raises(ValueError, match="sum to <= 1"):
        DropoutProbs(0.5, 0.4, 0.2)
    none_ctx, none_frame = sample_dropout(1000, DropoutProbs(0, 0, 0), torch.Generator())
    assert not none_ctx.any() and not none_frame.any()


def test_apply_dropout_zeroes_whole_samples() -> None:
    x = torch.ones(3, 2, 4)
    out = apply_dropout(x, torch.tensor([False, True, False]))
    assert out[1].abs().sum() == 0 and torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])


def _oracle(x0: torch.Tensor, channels: int):
    """The ideal network: returns the F for which the denoiser output is exactly x0."""
    seen = {}

    def network(net_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        seen["in"], seen["c_noise"] = net_in, c_noise
        s = v_scalings((4 * c_noise).exp())
        shape = (-1,) + (1,) * (x0.ndim - 1)
        noisy = net_in[:, :, :channels] / s.c_in.view(shape)
        return (x0 - s.c_skip.view(shape) * noisy) / s.c_out.view(shape)

    return network, seen


def test_loss_is_zero_for_the_ideal_denoiser_and_positive_otherwise() -> None:
    x0 = torch.randn(4, 3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    concat = torch.full((4, 3, 4, 2, 2), 7.0)
    network, seen = _oracle(x0, channels=4)
    loss = edm_loss(network, x0, 0.7, 1.6, torch.Generator().manual_seed(2), concat=concat)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() < 1e-8
    assert seen["in"].shape == (4, 3, 8, 2, 2) and torch.equal(seen["in"][:, :, 4:], concat)  # unscaled
    assert seen["c_noise"].unique().numel() == 4
    zero = edm_loss(lambda x, c: torch.zeros_like(x0), x0, 0.7, 1.6, torch.Generator().manual_seed(2))
    assert zero.item() > 0.01


def test_loss_handles_image_batches_on_channel_dim_1() -> None:
    x0 = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(5))

    def ideal(net_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        s = v_scalings((4 * c_noise).exp())
        noisy = net_in / s.c_in.view(-1, 1, 1, 1)
        return (x0 - s.c_skip.view(-1, 1, 1, 1) * noisy) / s.c_out.view(-1, 1, 1, 1)

    loss = edm_loss(ideal, x0, -1.2, 1.2, torch.Generator().manual_seed(0), channel_dim=1)
    assert loss.item() < 1e-8
