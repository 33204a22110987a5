"""Discrete-time vs continuous (EDM) noise conditioning: the stage-I import and adaptation of an image model
such as SD 2.1, the refusal to inflate an unadapted one, and training and sampling feeding the same values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

from svd_core.errors import ConfigError
from svd_core.model.config import scheduler_config
from svd_core.model.pipeline_io import load_components
from svd_core.training.edm import discrete_log_sigmas, sigma_to_timestep, v_scalings
from tests.svd_core.tasks.stages.test_stage import export, make_task, table_uri, train_steps

__all__ = ["table_uri"]  # the module fixture, shared


def test_sigma_to_timestep_is_the_mapping_diffusers_samples_with() -> None:
    config = scheduler_config()
    log_sigmas = discrete_log_sigmas(config)
    scheduler = EulerDiscreteScheduler.from_config({**config, "timestep_type": "discrete"})
    assert torch.allclose(log_sigmas.exp(), scheduler.sigmas[:-1].flip(0), rtol=1e-4)
    sigma = torch.tensor([1e-3, 0.03, 0.2, 1.0, 3.0, 14.0, 100.0])
    ours = sigma_to_timestep(sigma, log_sigmas)
    theirs = scheduler._sigma_to_t(sigma.numpy(), log_sigmas.numpy())
    assert np.allclose(ours.numpy(), theirs, atol=1e-3)
    assert ours[0] == 0 and ours[-1] == 999  # clipped to the schedule, as diffusers does
    assert torch.allclose(v_scalings(sigma).c_noise, 0.25 * sigma.log())
    assert torch.equal(v_scalings(sigma, log_sigmas).c_noise, ours)


@pytest.fixture(scope="module")
def discrete_unet(table_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare diffusers UNet folder (as SD 2.1's unet/), trained a little with discrete timesteps."""
    task = make_task(
        table_uri, stage="image", num_frames=1, objective={"noise_conditioning": "discrete", "p_std": 1.2}
    )
    model, _ = train_steps(task, steps=2)
    folder = tmp_path_factory.mktemp("sd") / "unet"
    task.components.unet.load_state_dict(model.state_dict())
    cast(UNet2DConditionModel, task.components.unet).save_pretrained(folder)
    return folder


def test_an_unadapted_discrete_image_unet_is_not_inflated_under_continuous_conditioning(
    table_uri: str, discrete_unet: Path
) -> None:
    with pytest.raises(ConfigError, match=r"trained on discrete noise conditioning.*run stage I first"):
        _ = make_task(table_uri, init={"kind": "inflate", "image_unet_uri": str(discrete_unet)}).components
    kept = make_task(
        table_uri,
        objective={"noise_conditioning": "discrete"},
        init={"kind": "inflate", "image_unet_uri": str(discrete_unet)},
    )
    assert kept.components.unet is not None


def test_stage_one_imports_and_adapts_then_stage_two_inflates_the_export(
    table_uri: str, discrete_unet: Path, tmp_path: Path
) -> None:
    task = make_task(
        table_uri,
        stage="image",
        num_frames=1,
        objective={"p_mean": -1.2, "p_std": 1.2},
        init={"kind": "import", "image_unet_uri": str(discrete_unet)},
    )
    imported = UNet2DConditionModel.from_pretrained(discrete_unet)
    for name, tensor in imported.state_dict().items():
        assert torch.equal(task.components.unet.state_dict()[name], tensor), name
    # The discrete stage feeds the schedule's timesteps, the continuous one 0.25 ln(sigma)
    batch_task = make_task(
        table_uri,
        stage="image",
        num_frames=1,
        objective={"p_mean": -1.2, "p_std": 1.2, "noise_conditioning": "discrete"},
        init={"kind": "import", "image_unet_uri": str(discrete_unet)},
    )
    assert batch_task._log_sigmas() is not None and task._log_sigmas() is None
    model, _ = train_steps(task, steps=2)
    out = export(task, model, tmp_path / "adapted")
    info = json.loads((out / "svd_model.json").read_text())
    assert info["noise_conditioning"] == "continuous"
    assert load_components(out).scheduler.config["timestep_type"] == "continuous"
    video = make_task(table_uri, init={"kind": "inflate", "image_unet_uri": str(out)})
    assert video.components.unet is not None  # adapted: accepted under continuous conditioning


def test_a_discrete_export_samples_with_the_timesteps_training_fed(table_uri: str, tmp_path: Path) -> None:
    task = make_task(table_uri, objective={"noise_conditioning": "discrete"})
    model, _ = train_steps(task, steps=1)
    out = export(task, model, tmp_path / "discrete")
    scheduler = load_components(out).scheduler
    assert scheduler.config["timestep_type"] == "discrete"
    assert json.loads((out / "svd_model.json").read_text())["noise_conditioning"] == "discrete"
    scheduler.set_timesteps(8)
    trained = sigma_to_timestep(scheduler.sigmas[:-1], discrete_log_sigmas(scheduler.config))
    assert torch.allclose(scheduler.timesteps.float(), trained, atol=1e-2)


def test_import_is_a_stage_one_kind_only(table_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"init\.kind: import brings a 2D image UNet into stage image"):
        make_task(table_uri, init={"kind": "import", "image_unet_uri": "x"})
    with pytest.raises(ConfigError, match=r"init\.image_unet_uri: required when init\.kind=import"):
        make_task(table_uri, stage="image", num_frames=1, init={"kind": "import"})
