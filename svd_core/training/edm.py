"""The EDM training objective of SVD, in the form its released training code uses.

Reference values followed (Stability-AI/generative-models, sgm/modules/diffusionmodules/):
- `denoiser_scaling.VScalingWithEDMcNoise` (configs/inference/svd.yaml):
  c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = 0.25 ln s.
  The denoiser is D(x; s) = c_skip * x + c_out * F(c_in * x, c_noise): F is a v-prediction, which is why
  diffusers' `EulerDiscreteScheduler(prediction_type="v_prediction", timestep_type="continuous")` samples
  the trained network unchanged.
- `DiscreteDenoiser` (SD 2.1's configs): a discrete-time model reads the timestep t of a 1000-step DDPM
  schedule instead of c_noise; `sigma_to_timestep` gives it (objective.noise_conditioning=discrete), the
  mapping diffusers' `EulerDiscreteScheduler(timestep_type="discrete")` samples with.
- `loss_weighting.VWeighting` = `EDMWeighting(sigma_data=1)`: w(s) = (s^2 + 1) / s^2.
- `sigma_sampling.EDMSampling`: ln s ~ N(P_mean, P_std^2), one sigma PER SAMPLE (not one per batch);
  paper section 4 uses P_mean 0.7, P_std 1.6 for video (EDM's image defaults are -1.2 / 1.2).
- `loss.StandardDiffusionLoss` (type l2): mean over elements of w * (D - x0)^2, then mean over the batch.
- Image-to-video concatenates the conditioning-frame latent to the network input AFTER c_in scaling and
  unscaled, as the released pipeline does (`torch.cat([scheduler.scale_model_input(x), image_latents], 2)`).
- Classifier-free guidance dropout: the InstructPix2Pix-style scheme common in SVD trainers; one uniform
  draw per sample decides "context only", "both" or "frame only" is replaced by zeros. Zeros are what
  the diffusers pipeline feeds in its unconditional branch (zero image embedding and zero image latents).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

NetworkFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""F(scaled_input, c_noise) -> raw network output of the same shape as the latents."""


@dataclass(frozen=True)
class EdmScalings:
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def v_scalings(sigma: torch.Tensor, log_sigmas: torch.Tensor | None = None) -> EdmScalings:
    """VScalingWithEDMcNoise for a 1-D tensor of per-sample sigmas; with `log_sigmas` (a discrete-time
    schedule, `discrete_log_sigmas`) c_noise is the schedule's timestep instead (`sigma_to_timestep`)."""
    denom = sigma**2 + 1.0
    return EdmScalings(
        c_skip=1.0 / denom,
        c_out=-sigma / denom.sqrt(),
        c_in=1.0 / denom.sqrt(),
        c_noise=0.25 * sigma.log() if log_sigmas is None else sigma_to_timestep(sigma, log_sigmas),
    )


def discrete_log_sigmas(scheduler_config: Mapping[str, Any]) -> torch.Tensor:
    """ln sigma_t, t = 0..T-1, of the discrete-time DDPM schedule a scheduler config describes
    (num_train_timesteps, beta_start/end, beta_schedule), computed by diffusers as its samplers do."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config({**scheduler_config, "timestep_type": "discrete"})
    alphas = scheduler.alphas_cumprod.double()
    return (((1 - alphas) / alphas) ** 0.5).log().float()


def sigma_to_timestep(sigma: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """The fractional timestep of a discrete-time model whose sigma is `sigma`: ln sigma interpolated
    linearly between the schedule's neighbouring steps and clipped to [0, T-1], the mapping diffusers'
    `EulerDiscreteScheduler(timestep_type="discrete")` uses when it samples (so training and sampling feed
    the network the same values)."""
    log_sigmas = log_sigmas.to(sigma.device, torch.float32)
    log_sigma = sigma.float().clamp_min(1e-10).log()
    below = (log_sigma[None, :] - log_sigmas[:, None]) >= 0  # (T, B)
    low = below.int().cumsum(0).argmax(0).clamp(max=log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
    return (1 - w) * low + w * (low + 1)


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """VWeighting: (s^2 + 1) / s^2 (EDM weighting with sigma_data = 1)."""
    return (sigma**2 + 1.0) / sigma**2


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Draw on the generator's device, then move: the same numbers whether training runs on CPU or GPU."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def sample_sigma(
    n: int, p_mean: float, p_std: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """EDMSampling: n per-sample noise levels, ln s ~ N(p_mean, p_std^2)."""
    return (p_mean + p_std * _randn((n,), generator, torch.device(device))).exp()


def sample_log_normal(
    n: int, mean: float, std: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """exp(N(mean, std^2)); also the conditioning-frame noise level cond_aug (paper: mean -3.0, std 0.5)."""
    return sample_sigma(n, mean, std, generator, device)


@dataclass(frozen=True)
class DropoutProbs:
    """Per-sample classifier-free-guidance dropout: disjoint events of one uniform draw."""

    context_only: float = 0.05
    both: float = 0.05
    frame_only: float = 0.05

    def __post_init__(self) -> None:
        total = self.context_only + self.both + self.frame_only
        if min(self.context_only, self.both, self.frame_only) < 0 or total > 1:
            raise ValueError(f"dropout probabilities must be >= 0 and sum to <= 1, got {self}")


def sample_dropout(
    n: int, probs: DropoutProbs, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_context, drop_frame) boolean masks of shape (n,).

    u < a: context only; a <= u < a+b: both; a+b <= u < a+b+c: frame only. So the context is dropped with
    probability a+b, the frame with b+c, both together with b (the pipeline's unconditional branch).
    """
    u = _rand((n,), generator, torch.device(device))
    a, b, c = probs.context_only, probs.both, probs.frame_only
    drop_context = u < a + b
    drop_frame = (u >= a) & (u < a + b + c)
    return drop_context, drop_frame


def apply_dropout(tensor: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Zero the rows of `tensor` (batch first) where `drop` is true."""
    keep = (~drop).to(tensor.dtype).view(-1, *([1] * (tensor.ndim - 1)))
    return tensor * keep


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against `like`."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def edm_loss(
    network: NetworkFn,
    x0: torch.Tensor,
    p_mean: float,
    p_std: float,
    generator: torch.Generator,
    concat: torch.Tensor | None = None,
    channel_dim: int = 2,
    log_sigmas: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted denoising loss (fp32 scalar) for clean latents x0 (batch first).

    `concat` (same shape as x0 except channels) is appended along `channel_dim` to the c_in-scaled noisy
    input, unscaled (image-to-video conditioning). For a video UNet (B, T, C, h, w) the channels are dim 2;
    for the 2D image UNet (B, C, h, w) pass channel_dim=1. `log_sigmas`: the network takes discrete-time
    timesteps (`v_scalings`).
    """
    x0 = x0.float()
    sigma = sample_sigma(x0.shape[0], p_mean, p_std, generator, x0.device)
    noise = _randn(tuple(x0.shape), generator, x0.device)
    noisy = x0 + _per_sample(sigma, x0) * noise
    s = v_scalings(sigma, log_sigmas)
    net_in = _per_sample(s.c_in, x0) * noisy
    if concat is not None:
        net_in = torch.cat([net_in, concat.float()], dim=channel_dim)
    output = network(net_in, s.c_noise).float()
    denoised = _per_sample(s.c_skip, x0) * noisy + _per_sample(s.c_out, x0) * output
    per_sample = ((denoised - x0) ** 2).flatten(1).mean(dim=1)
    return (loss_weight(sigma) * per_sample).mean()
