"""Measure the activation memory of one forward/backward from the allocator's own statistics.

On CUDA the caching allocator's counters are read directly (`memory_allocated`, `max_memory_allocated`).
On CPU there is no caching allocator with counters, but torch's profiler records every CPU allocation and
free it sees (`profile_memory=True`, the `[memory]` events with signed byte counts): summing them in time
order gives the bytes allocated since the window opened, at every instant. Two numbers come out:

- `retained_bytes`: what the forward pass leaves allocated for backward (the saved activations, the
  inputs that checkpointed layers keep, and the output) - the activation memory of the step;
- `peak_bytes`: the highest point during forward + backward, which adds the transients (a recomputed
  checkpointed layer, gradient buffers of activations). Parameter gradients are excluded: each is freed
  as soon as it is accumulated (a post-accumulate hook), so only activations are compared.

Parameters and inputs allocated before the window do not count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ActivationMemory:
    retained_bytes: int
    """Allocated at the end of forward (what backward needs)."""
    peak_bytes: int
    """Highest allocation during forward + backward."""


def measure_activation_memory(
    model: torch.nn.Module, forward: Callable[[], torch.Tensor], device: torch.device
) -> ActivationMemory:
    """Run `forward()` (returns a scalar loss) and its backward once, measuring the bytes it allocates."""
    handles = [
        p.register_post_accumulate_grad_hook(_drop_grad) for p in model.parameters() if p.requires_grad
    ]
    try:
        if device.type == "cuda":
            return _measure_cuda(forward, device)
        return _measure_cpu(forward)
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)


def _drop_grad(param: torch.Tensor) -> None:
    param.grad = None


def _measure_cuda(forward: Callable[[], torch.Tensor], device: torch.device) -> ActivationMemory:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    loss = forward()
    torch.cuda.synchronize(device)
    retained = torch.cuda.memory_allocated(device) - base
    loss.backward()
    torch.cuda.synchronize(device)
    return ActivationMemory(retained, torch.cuda.max_memory_allocated(device) - base)


def _measure_cpu(forward: Callable[[], torch.Tensor]) -> ActivationMemory:
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("svd_forward"):
            loss = forward()
        loss.backward()
    events = prof.profiler.kineto_results.events()
    forward_end = max(e.end_ns() for e in events if e.name() == "svd_forward")
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = retained = 0
    for start, nbytes in memory:
        live += nbytes
        peak = max(peak, live)
        if start <= forward_end:
            retained = live
    return ActivationMemory(retained, peak)
