"""build_learned_scorers: defaults, the single 'off' warning, config checks, bad paths, s3:// loading."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from svd_core import storage as svd_io
from svd_core.config import load_config, validate_config
from svd_core.curation.config import LearnedScorersConfig, shipped_craft_weights
from svd_core.curation.learned import build_learned_scorers
from svd_core.curation.model_loading import local_model_dir, local_weights_file
from svd_core.curation.schema import LVD_COLUMNS, SCORE_RANGES
from svd_core.errors import ConfigError, InputError, StorageError
from tests.scorer_fixtures import clip_frames, make_aesthetic_head, make_blip, make_clip, make_llm


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "clip": make_clip(root / "clip"),
        "head": make_aesthetic_head(root / "head.safetensors"),
        "blip": make_blip(root / "blip"),
        "llm": make_llm(root / "llm"),
    }


class MemoryStore:
    """An object store kept in memory, registered as s3:// for a test (the real S3 backend is flows')."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.downloads = 0

    def upload_folder(self, folder: Path, prefix: str) -> None:
        for path in folder.rglob("*"):
            if path.is_file():
                self.objects[f"{prefix}/{path.relative_to(folder)}"] = path.read_bytes()

    def read_bytes(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise StorageError(f"{uri}: no such object")
        return self.objects[uri]

    def write_bytes(self, uri: str, data: bytes) -> None:
        self.objects[uri] = data

    def put_file(self, local_path: str | Path, uri: str) -> None:
        self.objects[uri] = Path(local_path).read_bytes()

    def get_file(self, uri: str, local_path: str | Path) -> Path:
        self.downloads += 1
        path = Path(local_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.read_bytes(uri))
        return path

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def list(self, prefix_uri: str) -> list[str]:
        return sorted(uri for uri in self.objects if uri.startswith(prefix_uri))

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    store = MemoryStore()
    monkeypatch.setattr(svd_io, "_FACTORIES", dict(svd_io._FACTORIES))  # restored after the test
    monkeypatch.setattr(svd_io, "_INSTANCES", dict(svd_io._INSTANCES))
    svd_io.register_store("s3", lambda: store)
    return store


def _config(tmp_path: Path, **fields: object) -> LearnedScorersConfig:
    return LearnedScorersConfig(model_cache_dir=str(tmp_path / "cache"), device="cpu", **fields)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "svd.curation" and r.levelno == logging.WARNING]


def test_defaults_give_metadata_captions_and_shipped_craft(tmp_path: Path, caplog) -> None:
    cfg = _config(tmp_path, craft_long_side=256)
    assert cfg.craft_weights == shipped_craft_weights() and cfg.craft_weights is not None
    with caplog.at_level(logging.WARNING, logger="svd.curation"):
        scorers = build_learned_scorers(cfg)
    assert [s.name for s in scorers] == ["caption", "craft"]
    (warning,) = _warnings(caplog)
    message = warning.getMessage()
    for key in ("image_captioner_path", "video_captioner_path", "llm_merger_path", "clip_score_model_path"):
        assert key in message
    assert "aesthetic_clip_path + aesthetic_head_path" in message and "craft_weights" not in message
    row: dict[str, object] = {"title": "A red car"}
    for scorer in scorers:
        out = scorer.score(clip_frames(3), row)
        assert set(out) == set(scorer.columns) and set(out) <= set(LVD_COLUMNS)
        row.update(out)
    assert row["caption_source"] == "metadata" and 0.0 <= row["text_area_ratio"] <= 1.0  # type: ignore[operator]
    assert "aesthetic_score" not in row and "clip_score" not in row  # left null by the LVD build


def test_everything_configured_fills_every_column_without_warning(tmp_path: Path, models, caplog) -> None:
    cfg = _config(
        tmp_path,
        craft_long_side=128,
        aesthetic_clip_path=str(models["clip"]),
        aesthetic_head_path=str(models["head"]),
        clip_score_model_path=str(models["clip"]),
        image_captioner_path=str(models["blip"]),
        video_captioner_path=str(models["blip"]),
        llm_merger_path=str(models["llm"]),
        caption_max_new_tokens=5,
        llm_max_new_tokens=6,
    )
    with caplog.at_level(logging.WARNING, logger="svd.curation"):
        scorers = build_learned_scorers(cfg)
    assert _warnings(caplog) == []
    assert [s.name for s in scorers] == ["caption", "craft", "aesthetic", "clip_score"]
    caption, _, aesthetic, clip_score = scorers
    assert aesthetic.encoder is clip_score.encoder  # one CLIP folder -> loaded once  # type: ignore[attr-defined]
    assert caption.image is caption.video  # type: ignore[attr-defined]
    row: dict[str, object] = {}
    for scorer in scorers:
        row.update(scorer.score(clip_frames(5), row))
    assert row["caption_source"] == "image+video+llm" and isinstance(row["caption"], str)
    for column, (low, high) in SCORE_RANGES.items():
        if column in row:
            value = row[column]
            assert isinstance(value, float) and math.isfinite(value) and low <= value <= high, column
    assert len({s.version for s in scorers}) == 4


def test_models_load_from_an_s3_prefix_once(tmp_path: Path, models, s3: MemoryStore) -> None:
    s3.upload_folder(models["clip"], "s3://bucket/models/clip")
    s3.objects["s3://bucket/models/head.safetensors"] = models["head"].read_bytes()
    s3.objects["s3://bucket/models/clip-old/config.json"] = b"{}"  # a sibling prefix must not leak in
    cfg = _config(
        tmp_path,
        craft_weights=None,
        aesthetic_clip_path="s3://bucket/models/clip",
        aesthetic_head_path="s3://bucket/models/head.safetensors",
        clip_score_model_path="s3://bucket/models/clip/",
    )
    scorers = build_learned_scorers(cfg)
    assert [s.name for s in scorers] == ["caption", "aesthetic", "clip_score"]
    local = local_model_dir("s3://bucket/models/clip", "k", cfg.model_cache_dir)
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in models["clip"].iterdir())
    out = scorers[2].score(clip_frames(3), {"caption": "a dog"})
    assert -1.0 <= out["clip_score"] <= 1.0
    downloads = s3.downloads
    build_learned_scorers(cfg)  # the cache holds the copy: nothing fetched again
    assert s3.downloads == downloads
    local_scorer = build_learned_scorers(
        _config(tmp_path, craft_weights=None, clip_score_model_path=str(models["clip"]))
    )
    assert local_scorer[1].version == scorers[2].version  # same weights, same version wherever they came from


def test_an_empty_s3_prefix_is_a_clear_error(tmp_path: Path, s3: MemoryStore) -> None:
    cfg = _config(tmp_path, craft_weights=None, clip_score_model_path="s3://bucket/nothing-here")
    with pytest.raises(InputError, match=r"clip_score_model_path: no objects under s3://bucket/nothing-here"):
        build_learned_scorers(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # no half copy left


def test_a_failed_copy_leaves_no_cached_folder(tmp_path: Path, models, s3: MemoryStore) -> None:
    s3.upload_folder(models["clip"], "s3://bucket/clip")
    real_get = s3.get_file

    def flaky_get(uri: str, local_path: str | Path) -> Path:
        if uri.endswith("model.safetensors"):
            raise StorageError(f"{uri}: connection reset")
        return real_get(uri, local_path)

    s3.get_file = flaky_get  # type: ignore[method-assign]
    cfg = _config(tmp_path, craft_weights=None, clip_score_model_path="s3://bucket/clip")
    with pytest.raises(InputError, match=r"clip_score_model_path: cannot copy .*model\.safetensors"):
        build_learned_scorers(cfg)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())  # no half-copied model folder
    s3.get_file = real_get  # type: ignore[method-assign]
    assert build_learned_scorers(cfg)[-1].name == "clip_score"  # a retry copies it whole
    with pytest.raises(InputError, match=r"aesthetic_head_path: cannot fetch s3://bucket/no-head\.pth"):
        local_weights_file("s3://bucket/no-head.pth", "aesthetic_head_path", tmp_path / "cache")


def test_missing_model_folder_names_the_key_and_the_fix(tmp_path: Path) -> None:
    cfg = _config(tmp_path, clip_score_model_path=str(tmp_path / "nope"))
    with pytest.raises(
        InputError, match=r"clip_score_model_path: .*nope does not exist.*save_pretrained.*null"
    ):
        build_learned_scorers(cfg)


def test_folder_without_a_model_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"image_captioner_path: .*empty is not a model folder"):
        build_learned_scorers(_config(tmp_path, image_captioner_path=str(tmp_path / "empty")))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(InputError, match=r"clip_score_model_path: cannot load CLIPModel from .*broken"):
        build_learned_scorers(_config(tmp_path, craft_weights=None, clip_score_model_path=str(broken)))


def test_a_captioner_folder_is_not_a_clip_folder(tmp_path: Path, models) -> None:
    cfg = _config(tmp_path, craft_weights=None, clip_score_model_path=str(models["blip"]))
    with pytest.raises(InputError, match=r"clip_score_model_path: .*'blip' model"):
        build_learned_scorers(cfg)


def test_missing_weights_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"craft_weights: .*gone\.pth is not a file"):
        build_learned_scorers(_config(tmp_path, craft_weights=str(tmp_path / "gone.pth")))
    with pytest.raises(InputError, match="aesthetic_head_path"):
        local_weights_file(str(tmp_path / "x.pth"), "aesthetic_head_path", tmp_path)


def test_config_rejects_half_an_aesthetic_pair_and_a_lonely_llm(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="aesthetic_clip_path and aesthetic_head_path go together"):
        validate_config(LearnedScorersConfig, {"aesthetic_clip_path": "/m/clip"})
    with pytest.raises(ConfigError, match=r"llm_merger_path .* needs image_captioner_path"):
        validate_config(LearnedScorersConfig, {"llm_merger_path": "/m/llm"})
    with pytest.raises(ConfigError, match="craft_long_side"):
        load_config(LearnedScorersConfig, overrides=["craft_long_side=10"])
    with pytest.raises(ConfigError, match="captions"):
        validate_config(LearnedScorersConfig, {"llm_prompt": "no placeholder"})


def test_every_config_field_has_a_docstring() -> None:
    for name, field in LearnedScorersConfig.model_fields.items():
        assert field.description, name


def test_score_scorers_names_each_score_columns_scorer() -> None:
    """The validation gate finds a score's scorer in `scorer_versions` by SCORE_SCORERS: it must match."""
    from svd_core.curation.aesthetic import AestheticScorer
    from svd_core.curation.clip_score import ClipScoreScorer
    from svd_core.curation.motion import MotionScorer
    from svd_core.curation.schema import SCORE_COLUMNS, SCORE_SCORERS
    from svd_core.curation.text_detect import TextAreaScorer

    by_column = {
        c: s.name for s in (MotionScorer, TextAreaScorer, AestheticScorer, ClipScoreScorer) for c in s.columns
    }
    assert by_column == SCORE_SCORERS and list(SCORE_SCORERS) == SCORE_COLUMNS
