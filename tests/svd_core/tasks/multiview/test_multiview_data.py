"""Multi-view data and model pieces: orbit renders, the orbit adapter, elevation conditioning, base checks,
metrics. Fast, no training (tests/test_multiview_flow.py trains and registers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from svd_core.config import validate_config
from svd_core.errors import InputError
from svd_core.model.build import build_components
from svd_core.model.config import TINY
from svd_core.model.export import export_pipeline
from svd_core.tasks.multiview import metrics
from svd_core.tasks.multiview.base import base_components, check_base_folder
from svd_core.tasks.multiview.config import MultiViewConfig, OrbitRenderConfig
from svd_core.tasks.multiview.dataset import (
    OrbitDataset,
    load_view,
    orbits_version,
    scan_orbits,
    split_orbits,
)
from svd_core.tasks.multiview.elevation import add_elevation_input, elevation_embedding, has_elevation_input
from svd_core.tasks.multiview.evaluate import MultiViewScores, results_table
from svd_core.tasks.multiview.orbits import CAMERAS_FILE, make_orbits, orbit_cameras

RENDER = OrbitRenderConfig(objects=3, views=8, size=64, supersample=1, seed=5)


@pytest.fixture(scope="module")
def orbit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("orbits")
    make_orbits(str(root), RENDER)
    return root


def _copy_orbits(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- renderer and layout ---------------------------------------------------------------------------------
def test_rendered_orbits_read_back_through_the_adapter(orbit_root: Path) -> None:
    orbits = scan_orbits(str(orbit_root), num_views=8)
    assert [o.name for o in orbits] == ["obj_000000", "obj_000001", "obj_000002"]
    for orbit in orbits:
        cameras = json.loads((orbit_root / orbit.name / CAMERAS_FILE).read_text())
        assert cameras["num_views"] == 8 and cameras["size"] == 64
        assert -5.0 <= cameras["elevation_deg"] <= 30.0  # paper: elevation uniform in [-5, 30]
        assert [v.azimuth_deg for v in orbit.views] == pytest.approx([45.0 * k for k in range(8)])
        assert {v.elevation_deg for v in orbit.views} == {cameras["elevation_deg"]}
        images = [np.asarray(Image.open(orbit_root / orbit.name / v.file)) for v in orbit.views]
        assert all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in images)
        assert all((i < 250).any(axis=-1).mean() > 0.05 for i in images)  # the object is in every view
        assert np.abs(images[0].astype(int) - images[2].astype(int)).mean() > 1  # views differ


def test_camera_looks_at_the_object_and_intrinsics_match() -> None:
    for cam in orbit_cameras(6, elevation_deg=20.0, radius=3.2, fov_deg=40.0, size=64):
        c2w = cam.c2w
        assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-9)
        origin_in_cam = np.linalg.inv(c2w) @ np.array([0, 0, 0, 1.0])
        assert origin_in_cam[:2] == pytest.approx([0, 0], abs=1e-9) and origin_in_cam[2] < 0  # ahead, centred
        assert np.degrees(np.arcsin(cam.position[1] / 3.2)) == pytest.approx(20.0)
    assert orbit_cameras(1, 0, 3.2, 90.0, 64)[0].focal == pytest.approx(32.0)


def test_culling_window_changes_no_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    from svd_core.tasks.multiview import orbits as orbits_module
    from svd_core.tasks.multiview.shapes import random_object

    scenes = [random_object(np.random.default_rng([9, i])) for i in range(3)]
    cams = orbit_cameras(3, elevation_deg=25.0, radius=3.2, fov_deg=40.0, size=32)
    culled = [orbits_module.render_view(s, c, 2) for s in scenes for c in cams]
    monkeypatch.setattr(orbits_module, "_object_window", lambda scene, cam, n: (slice(0, n), slice(0, n)))
    full = [orbits_module.render_view(s, c, 2) for s in scenes for c in cams]
    assert all(np.array_equal(a, b) for a, b in zip(culled, full, strict=True))


def test_render_is_deterministic_and_resumes(tmp_path: Path, orbit_root: Path) -> None:
    again = tmp_path / "again"
    make_orbits(str(again), RENDER)
    first = orbit_root / "obj_000001" / "003.png"
    assert (again / "obj_000001" / "003.png").read_bytes() == first.read_bytes()
    (again / "obj_000002" / CAMERAS_FILE).unlink()  # as if the run died before finishing object 2
    (again / "obj_000002" / "005.png").unlink()
    stamp = (again / "obj_000000" / CAMERAS_FILE).stat().st_mtime_ns
    seen: list[tuple[str, bool]] = []
    make_orbits(str(again), RENDER, progress=lambda name, rendered: seen.append((name, rendered)))
    assert seen == [("obj_000000", False), ("obj_000001", False), ("obj_000002", True)]
    assert (again / "obj_000000" / CAMERAS_FILE).stat().st_mtime_ns == stamp
    assert len(scan_orbits(str(again), 8)) == 3


def test_cli_orbits_renders_the_layout(tmp_path: Path) -> None:
    from flows.cli import data_orbits as cli_orbits

    app = typer.Typer()
    cli_orbits.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `orbits` a subcommand
    out = tmp_path / "cli_orbits"
    args = [
        "orbits",
        "--out",
        str(out),
        "--objects",
        "2",
        "--views",
        "4",
        "--size",
        "32",
        "--supersample",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 orbit folders (4 views, 32x32)" in result.output
    assert [len(o.views) for o in scan_orbits(str(out), 4)] == [4, 4]
    bad = CliRunner().invoke(app, ["orbits", "--out", str(out), "--views", "1"])
    assert bad.exit_code != 0 and "views" in str(bad.exception)


# --- adapter ---------------------------------------------------------------------------------------------
def test_samples_start_at_the_input_view_in_azimuth_order(orbit_root: Path) -> None:
    orbits = scan_orbits(str(orbit_root), 8)
    ds = OrbitDataset(orbits, size=32, seed=1, every_start_view=True)
    assert len(ds) == 3 * 8
    item = ds[8 + 3]  # object 1, input view 3
    assert item["frames"].shape == (8, 3, 32, 32) and item["frames"].dtype == torch.float32
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1
    views = [load_view(orbits[1].view_uri(k), 32) for k in range(8)]
    for position, k in enumerate([3, 4, 5, 6, 7, 0, 1, 2]):
        assert torch.equal(item["frames"][position], views[k])
    assert item["elevation"].item() == pytest.approx(orbits[1].views[3].elevation_deg)
    assert 0 < item["cond_aug"].item() < 1 and item["fps_id"].item() == 6.0
    assert torch.equal(ds[11]["frames"], item["frames"]) and ds[11]["cond_aug"] == item["cond_aug"]
    first_only = OrbitDataset(orbits, size=32, every_start_view=False)
    assert len(first_only) == 3 and torch.equal(first_only[1]["frames"][0], views[0])


def test_held_out_split_is_by_name_and_versions_follow_cameras(orbit_root: Path, tmp_path: Path) -> None:
    orbits = scan_orbits(str(orbit_root), 8)
    train, held = split_orbits(orbits, 1)
    assert len(train) == 2 and len(held) == 1 and held[0].name not in {o.name for o in train}
    assert split_orbits(list(reversed(orbits)), 1)[1] == held
    with pytest.raises(InputError, match="leaves no training object"):
        split_orbits(orbits, 3)
    copy = _copy_orbits(orbit_root, tmp_path / "copy")
    assert orbits_version(scan_orbits(str(copy), 8)) == orbits_version(orbits)
    cams = copy / "obj_000000" / CAMERAS_FILE
    cams.write_text(cams.read_text().replace('"azimuth_deg": 45.0', '"azimuth_deg": 46.0'))
    assert orbits_version(scan_orbits(str(copy), 8)) != orbits_version(orbits)


def test_missing_views_or_cameras_name_the_folder_and_file(orbit_root: Path, tmp_path: Path) -> None:
    root = _copy_orbits(orbit_root, tmp_path / "broken")
    (root / "obj_000001" / "004.png").unlink()
    with pytest.raises(InputError, match=r"obj_000001: view file 004\.png named in cameras\.json is missing"):
        scan_orbits(str(root), 8)
    (root / "obj_000001" / CAMERAS_FILE).unlink()
    with pytest.raises(InputError, match=r"obj_000001 has no cameras\.json"):
        scan_orbits(str(root), 8)
    (root / "obj_000001" / CAMERAS_FILE).write_text("{not json")
    with pytest.raises(InputError, match=r"obj_000001/cameras\.json is not valid JSON"):
        scan_orbits(str(root), 8)
    (root / "obj_000001" / CAMERAS_FILE).write_text(json.dumps({"views": [{"file": "000.png"}]}))
    with pytest.raises(InputError, match=r"obj_000001/cameras\.json: view 0 lacks a valid 'azimuth_deg'"):
        scan_orbits(str(root), 8)
    with pytest.raises(InputError, match=r"obj_000000 has 8 views but num_views=21"):
        scan_orbits(str(orbit_root), 21)
    with pytest.raises(InputError, match="no orbit folders under"):
        scan_orbits(str(tmp_path / "empty"), 8)


# --- elevation conditioning and base models ---------------------------------------------------------------
def _tiny_export(tmp_path: Path, name: str, mode: str = "image", image_unet: bool = False) -> Path:
    comp = build_components(TINY, mode, 4, sample_size=4, seed=0, image_unet=image_unet)
    stage = "image" if image_unet else "video"
    return export_pipeline(comp, tmp_path / name, info={"stage": stage, "preset": "tiny"})


def _unet_inputs(ids: torch.Tensor) -> dict:
    """One noisy sample twice (the rows differ only in their added time ids)."""
    gen = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(1, 4, 8, 4, 4, generator=gen).repeat(2, 1, 1, 1, 1),
        "timestep": torch.tensor([0.3, 0.3]),
        "encoder_hidden_states": torch.randn(1, 1, 32, generator=gen).repeat(2, 1, 1),
        "added_time_ids": ids,
    }


@torch.no_grad()
def test_elevation_slot_starts_neutral_is_learnable_and_round_trips(tmp_path: Path) -> None:
    comp = build_components(TINY, "image", 4, sample_size=4, seed=0)
    unet = comp.unet.eval()
    before = unet(**_unet_inputs(torch.tensor([[6.0, 127.0, 0.02]] * 2))).sample
    add_elevation_input(unet)
    assert has_elevation_input(unet) and unet.config.projection_class_embeddings_input_dim == 4 * 8
    ids = torch.tensor([[6.0, 127.0, 0.02, -5.0], [6.0, 127.0, 0.02, 30.0]])
    neutral = unet(**_unet_inputs(ids)).sample
    assert torch.allclose(neutral, before, atol=1e-6)  # zero-initialised columns: the base's output
    assert torch.allclose(neutral[0], neutral[1], atol=1e-6)  # ... whatever the elevation
    emb = elevation_embedding(unet, torch.tensor([-5.0, 30.0]))
    assert emb.shape == (2, 8) and not torch.allclose(emb[0], emb[1])  # sinusoidal, distinct per elevation
    unet.add_embedding.linear_1.weight[:, 24:].normal_()  # as training would make it
    trained = unet(**_unet_inputs(ids)).sample
    assert not torch.allclose(trained[0], trained[1], atol=1e-4)  # now the elevation changes the output
    unet.save_pretrained(tmp_path / "unet")
    loaded = type(unet).from_pretrained(tmp_path / "unet").eval()
    assert has_elevation_input(loaded)
    assert torch.allclose(loaded(**_unet_inputs(ids)).sample, trained, atol=1e-6)
    assert add_elevation_input(loaded) is loaded and has_elevation_input(loaded)  # idempotent


def test_base_must_be_image_to_video(tmp_path: Path) -> None:
    video = _tiny_export(tmp_path, "video")
    text = _tiny_export(tmp_path, "text", mode="text")
    image = _tiny_export(tmp_path, "image", image_unet=True)
    check_base_folder(video, "video")
    check_base_folder(image, "image_stage")
    with pytest.raises(InputError, match="is a text-to-video model"):
        check_base_folder(text, "video")
    with pytest.raises(InputError, match=r"is not an image-to-video model .*init\.base_kind=image_stage"):
        check_base_folder(image, "video")
    with pytest.raises(InputError, match="needs a stage-I image model"):
        check_base_folder(video, "image_stage")
    with pytest.raises(InputError, match="not a pipeline folder"):
        check_base_folder(tmp_path, "video")


def test_image_stage_base_is_inflated_into_a_multiview_unet(tmp_path: Path) -> None:
    image = _tiny_export(tmp_path, "image", image_unet=True)
    cfg = validate_config(
        MultiViewConfig,
        {"num_views": 6, "size": 32, "init": {"base_uri": str(image), "base_kind": "image_stage"}},
    )
    comp = base_components(cfg)
    assert type(comp.unet).__name__ == "UNetSpatioTemporalConditionModel"
    assert has_elevation_input(comp.unet) and comp.unet.config.num_frames == 6
    assert comp.unet.config.in_channels == 8 and comp.unet.config.sample_size == 4


# --- metrics ---------------------------------------------------------------------------------------------
def test_psnr_and_ssim_against_known_values() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert metrics.psnr(true, true) == metrics.PSNR_CAP_DB and metrics.ssim(true, true) == pytest.approx(1.0)
    off = np.clip(true.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((off.astype(float) - true.astype(float)) ** 2) / 255**2
    assert metrics.psnr(off, true) == pytest.approx(10 * np.log10(1 / mse))
    noisy = np.clip(true + rng.normal(0, 60, true.shape), 0, 255).astype(np.uint8)
    assert 0 < metrics.ssim(noisy, true) < metrics.ssim(off, true) < 1


def test_lpips_loads_released_key_names_and_measures_distance(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = metrics.Lpips()
    for name, param in reference.named_parameters():
        if name.startswith("lin"):
            param.data.abs_()  # released linear heads are non-negative
    path = tmp_path / "alex.pth"
    torch.save({k: v for k, v in reference.state_dict().items() if not k.startswith("scaling")}, path)
    model = metrics.load_lpips(path)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    same, different = metrics.lpips_distances(model, [a, a], [a, b])
    assert same == pytest.approx(0.0, abs=1e-6) and different > 0
    tv_names = {k.replace("net.slice1.", "features.").replace("net.slice2.", "features."): v
                for k, v in reference.state_dict().items()}  # fmt: skip
    tv_path = tmp_path / "tv.pth"
    torch.save({k.replace("net.slice3.", "features.").replace("net.slice4.", "features.")
                .replace("net.slice5.", "features."): v for k, v in tv_names.items()}, tv_path)  # fmt: skip
    assert metrics.lpips_distances(metrics.load_lpips(tv_path), [a], [b])[0] == pytest.approx(different)
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="does not hold LPIPS AlexNet weights"):
        metrics.load_lpips(tmp_path / "bad.pth")


def test_clip_s_from_a_local_clip_folder(tmp_path: Path) -> None:
    comp = build_components(TINY, "image", 2, seed=3)
    comp.image_encoder.save_pretrained(tmp_path / "clip")
    comp.feature_extractor.save_pretrained(tmp_path / "clip")
    scorer = metrics.ClipScorer(tmp_path / "clip")
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(2))
    same, other = scorer.scores([a, a], [a, b])
    assert same == pytest.approx(1.0, abs=1e-5) and -1 <= other < same
    with pytest.raises(InputError, match="clip_model_uri"):
        metrics.ClipScorer(tmp_path / "nope")


def test_results_table_has_the_papers_columns_and_no_invented_values() -> None:
    scores = MultiViewScores(
        psnr=16.834, ssim=0.5123, lpips=None, clip_s=0.891, objects=3, views_per_object=7
    )
    table = results_table([("SVD-MV (tiny)", scores)])
    assert table.splitlines()[0].startswith("| Method | LPIPS ↓ | PSNR ↑ | CLIP-S ↑")
    assert "| SVD-MV (tiny) | n/a | 16.83 | 0.89 | 0.512 | 3 |" in table
    assert scores.metrics() == {"mv_psnr": 16.834, "mv_ssim": 0.5123, "mv_clip_s": 0.891}
