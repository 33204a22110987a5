"""Eval sets: the shipped defaults, user files and folders, content-hash versions, clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from svd_core.errors import InputError
from svd_core.evaluation.evalsets import (
    DATA_DIR,
    default_eval_set,
    derived_seed,
    load_eval_set,
    resolve_eval_set,
)
from svd_core.evaluation.make_default_set import write_default_sets


def test_default_sets_ship_with_the_package():
    t2v = default_eval_set("text-to-video")
    assert t2v.name == "default-t2v" and len(t2v.items) == 16
    assert len(set(t2v.prompt_ids)) == 16 and all(i.image_uri is None and i.prompt for i in t2v.items)
    i2v = default_eval_set("image-to-video")
    assert len(i2v.items) == 4
    for item in i2v.items:
        assert (
            item.image_uri.endswith(".png")
            and (DATA_DIR / "images" / item.image_uri.rsplit("/", 1)[-1]).is_file()
        )
    assert len({i.seed for i in t2v.items + i2v.items}) == 20
    assert default_eval_set("text-to-video").version == t2v.version  # stable
    assert resolve_eval_set(None, "image-to-video") == i2v
    with pytest.raises(InputError, match="no default eval set"):
        default_eval_set("text-to-3d")


def test_the_generator_reproduces_the_shipped_files_byte_for_byte(tmp_path):
    write_default_sets(tmp_path)
    for path in [*DATA_DIR.glob("*.json"), *DATA_DIR.glob("images/*.png")]:
        assert (tmp_path / path.relative_to(DATA_DIR)).read_bytes() == path.read_bytes(), path.name


def test_user_yaml_file_with_relative_images_and_derived_seeds(tmp_path):
    shutil.copy(DATA_DIR / "images" / "waves.png", tmp_path / "w.png")
    spec = {
        "name": "mine",
        "items": [{"prompt_id": "a", "prompt": "a cat", "seed": 5}, {"prompt_id": "b", "image": "w.png"}],
    }
    (tmp_path / "set.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_eval_set(tmp_path / "set.yaml")
    assert loaded.name == "mine" and loaded.item("a").seed == 5
    assert loaded.item("b").seed == derived_seed("b") and loaded.item("b").image_uri == f"{tmp_path}/w.png"
    assert loaded.to_dict()["items"][0] == {"prompt_id": "a", "prompt": "a cat", "image_uri": None, "seed": 5}
    # same content as JSON in a folder manifest: same version; new image bytes: new version
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(tmp_path / "w.png", folder / "w.png")
    (folder / "evalset.json").write_text(json.dumps(spec))
    assert load_eval_set(str(folder)).version == loaded.version
    shutil.copy(DATA_DIR / "images" / "road.png", folder / "w.png")
    assert load_eval_set(str(folder)).version != loaded.version


def test_folder_of_images_is_an_image_to_video_set(tmp_path):
    for name in ("sunset", "road"):
        shutil.copy(DATA_DIR / "images" / f"{name}.png", tmp_path / f"{name}.png")
    loaded = load_eval_set(str(tmp_path))
    assert loaded.name == tmp_path.name and loaded.prompt_ids == ["road", "sunset"]
    assert all(i.image_uri and i.seed == derived_seed(i.prompt_id) for i in loaded.items)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"prompt_id": "a", "prompt": "x"}, {"prompt_id": "a", "prompt": "y"}], "appears twice"),
        ([{"prompt_id": "a", "prompt": "x", "seed": -1}], "seed must be an integer"),
        ([{"prompt_id": "a", "prompt": "x", "seed": True}], "seed must be an integer"),
        ([{"prompt_id": "a", "image": "missing.png"}], "does not exist"),
        ([{"prompt_id": "a"}], "needs a prompt"),
        ([{"prompt_id": "", "prompt": "x"}], "non-empty string prompt_id"),
        ([{"prompt_id": "a", "prompt": "x", "negative": "y"}], "unknown keys"),
        ([], "non-empty 'items'"),
    ],
)
def test_bad_sets_name_the_item_and_the_fix(tmp_path, items, message):
    (tmp_path / "bad.json").write_text(json.dumps({"items": items}))
    with pytest.raises(InputError, match=message):
        load_eval_set(str(tmp_path / "bad.json"))


def test_unreadable_and_empty_sources(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_eval_set(str(tmp_path / "bad.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a JSON/YAML file"):
        load_eval_set(str(tmp_path / "empty"))
