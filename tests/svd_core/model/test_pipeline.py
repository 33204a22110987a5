"""Pipeline folders: atomic export, safe loading by class whitelist, clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from svd_core.errors import InputError
from svd_core.model.build import build_components
from svd_core.model.config import TINY
from svd_core.model.export import export_pipeline
from svd_core.model.pipeline_io import load_components, read_model_info


@pytest.fixture(scope="module")
def components():
    return build_components(TINY, "image", 2, seed=0)


def test_export_round_trips_every_component(components, tmp_path: Path) -> None:
    out = export_pipeline(components, tmp_path / "pipe", info={"stage": "video"})
    loaded = load_components(out)
    for name in ("unet", "vae", "image_encoder"):
        original, reloaded = getattr(components, name).state_dict(), getattr(loaded, name).state_dict()
        assert original.keys() == reloaded.keys()
        assert all(torch.equal(original[k], reloaded[k]) for k in original), name
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert read_model_info(out) == {"conditioning": "image", "video": True, "stage": "video"}


def test_failed_export_keeps_the_previous_folder_and_leaves_no_temp(components, tmp_path: Path) -> None:
    out = export_pipeline(components, tmp_path / "pipe", info={"stage": "first"})

    class Broken(torch.nn.Module):
        def save_pretrained(self, *args, **kwargs):
            raise OSError("disk full")

    broken = dataclasses.replace(components, text_encoder=Broken(), tokenizer=None)
    with pytest.raises(OSError, match="disk full"):
        export_pipeline(broken, out, info={"stage": "second"})
    assert read_model_info(out)["stage"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    load_components(out)  # still complete


def test_loading_refuses_unknown_classes_and_incomplete_folders(components, tmp_path: Path) -> None:
    out = export_pipeline(components, tmp_path / "pipe")
    index = json.loads((out / "model_index.json").read_text())
    (out / "model_index.json").write_text(json.dumps({**index, "unet": ["evil_module", "Payload"]}))
    with pytest.raises(InputError, match="supported classes"):
        load_components(out)
    (out / "model_index.json").write_text(json.dumps({k: v for k, v in index.items() if k != "vae"}))
    with pytest.raises(InputError, match=r"lacks components \['vae'\]"):
        load_components(out)
    with pytest.raises(InputError, match="not a model folder"):
        load_components(tmp_path / "nowhere")
