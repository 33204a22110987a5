"""Camera-motion LoRA library: targets, frozen base, adapter export, load/unload, input checks (no processes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.utils.data import default_collate

from svd_core.config import load_config, validate_config
from svd_core.errors import ConfigError, InputError
from svd_core.model import lora_io
from svd_core.model.build import build_components
from svd_core.model.config import get_preset
from svd_core.model.export import export_pipeline
from svd_core.tasks.lora.task import (
    TRAIN_ADAPTER,
    BaseWeightsChangedError,
    LoraTrainConfig,
    LoraTrainTask,
    lora_train_task,
)
from tests.svd_core.data.test_video_dataset import write_lvd

HEIGHT, WIDTH, FRAMES = 32, 48, 4
TEMPORAL_ATTN = r"temporal_transformer_blocks.\d+.attn[12].(to_q|to_k|to_v|to_out.0)"


def write_motion_lvd(root: Path, labels: list[str | None], frames: list[int] | None = None) -> str:
    """An LVD table (real MP4 clips in a tar shard) whose rows carry the given camera_motion labels."""
    frames = frames or [24] * len(labels)
    clips = [{"num_frames": n, "fps": 24, "flow_score": float(i + 1)} for i, n in enumerate(frames)]
    uri = write_lvd(root, clips)
    path = Path(uri.removeprefix("file://"))
    table = pd.read_parquet(path)
    table["camera_motion"] = labels
    table.to_parquet(path)
    return uri


@pytest.fixture(scope="module", autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny models on a shared box: one intra-op thread avoids OpenMP spin-waiting (50x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    labels = ["horizontal", "zoom_in", "horizontal", "static", None]
    return write_motion_lvd(tmp_path_factory.mktemp("lvd"), labels, frames=[24, 24, 30, 2, 24])


def export_base(out: Path, mode: str = "image", stage_one: bool = False, seed: int = 0) -> Path:
    comp = build_components(get_preset("tiny"), mode, FRAMES, HEIGHT // 8, seed=seed, image_unet=stage_one)
    stage = "image" if stage_one else "finetune"
    info = {"stage": stage, "preset": "tiny", "num_frames": FRAMES, "height": HEIGHT, "width": WIDTH}
    return export_pipeline(comp, out, info=info)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_base(tmp_path_factory.mktemp("base") / "pipeline")


def load_unet(folder: Path) -> UNetSpatioTemporalConditionModel:
    """The pipeline's UNet alone (loading the VAE and CLIP towers too would only cost time)."""
    return UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet", local_files_only=True).eval()


def lora_config(base: Path, table: str, **fields) -> LoraTrainConfig:
    config = {
        "preset": "tiny",
        "num_frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
        "motion_class": "horizontal",
        "data": {"table_uri": table},
        "init": {"kind": "pipeline", "pipeline_uri": str(base)},
        "trainer": {"max_steps": 2, "warmup_steps": 0, "num_workers": 0, "device": "cpu"},
        **fields,
    }
    return validate_config(LoraTrainConfig, config)


def one_step(task: LoraTrainTask) -> tuple[torch.nn.Module, torch.Tensor]:
    """Build the model, run one loss/backward on a real batch of the class's clips, return (model, loss)."""
    torch.manual_seed(0)
    model = task.build_model()
    dataset = task.build_dataset()
    batch = default_collate([dataset[0], dataset[1]])
    loss = task.compute_loss(model, batch, torch.Generator().manual_seed(0))
    loss.backward()
    return model, loss


@pytest.fixture(scope="module")
def trained(base_dir: Path, table_uri: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One optimizer step on the adapter, exported; returns (adapter folder, model state after the step)."""
    task = lora_train_task(lora_config(base_dir, table_uri).to_dict())
    model, _ = one_step(task)
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = tmp_path_factory.mktemp("runs") / "export"
    task.export(state, out)
    return out, state


def unet_inputs(unet: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    cfg = unet.config
    h = HEIGHT // 8
    return {
        "sample": torch.randn(1, FRAMES, cfg.in_channels, h, WIDTH // 8, generator=gen),
        "timestep": torch.tensor(0.3),
        "encoder_hidden_states": torch.randn(1, 1, cfg.cross_attention_dim, generator=gen),
        "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]]),
    }


@torch.no_grad()
def run_unet(unet: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return unet(**inputs).sample


# --- config and targets --------------------------------------------------------------------------------


def test_shipped_config_has_the_paper_rank_and_targets_only_temporal_attention() -> None:
    cfg = load_config(LoraTrainConfig, "configs/train/lora.yaml")
    assert cfg.lora.rank == 16 and cfg.stage == "finetune" and cfg.conditioning == "image"
    assert cfg.trainer.zero_stage in (0, 2) and not cfg.trainer.ema


def test_adapters_sit_on_the_temporal_attention_projections_only(base_dir: Path, table_uri: str) -> None:
    import re

    task = lora_train_task(lora_config(base_dir, table_uri, lora={"rank": 4}).to_dict())
    plain = {name for name, m in load_unet(base_dir).named_modules() if isinstance(m, torch.nn.Linear)}
    wanted = {name for name in plain if re.search(TEMPORAL_ATTN + "$", name)}
    model = task.build_model()
    adapted = {name for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == wanted and len(wanted) == 32  # 4 temporal blocks x 2 attentions x 4 projections
    assert not any(".transformer_blocks." in name for name in adapted)  # spatial attention untouched
    assert all(model.get_submodule(n).r[TRAIN_ADAPTER] == 4 for n in adapted)
    only_self = lora_train_task(
        lora_config(
            base_dir, table_uri, lora={"attentions": ["attn1"], "projections": ["to_q", "to_v"]}
        ).to_dict()
    ).build_model()
    names = {n for n, m in only_self.named_modules() if isinstance(m, LoraLayer)}
    assert len(names) == 8 and all(re.search(r"attn1\.to_[qv]$", n) for n in names)


def test_config_rejects_other_classes_and_modes(base_dir: Path, table_uri: str) -> None:
    with pytest.raises(ConfigError, match="motion_class"):
        lora_config(base_dir, table_uri, motion_class="complex")
    with pytest.raises(ConfigError, match="conditioning"):
        lora_config(base_dir, table_uri, conditioning="text")
    with pytest.raises(ConfigError, match=r"lora\.attentions"):
        lora_config(base_dir, table_uri, lora={"attentions": []})


# --- training -----------------------------------------------------------------------------------------


def test_only_adapter_parameters_receive_gradients(base_dir: Path, table_uri: str) -> None:
    task = lora_train_task(lora_config(base_dir, table_uri).to_dict())
    model, loss = one_step(task)
    assert torch.isfinite(loss)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    adapter = {n for n, _ in model.named_parameters() if ".lora_" in n}
    assert trainable == with_grad == adapter and len(adapter) == 64
    # lora_B starts at zero, so only B gets a non-zero gradient on the first step (A's is B^T-weighted)
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in adapter if ".lora_B." in n)
    assert len(task.build_dataset()) == 2  # horizontal clips only


def test_export_writes_only_the_adapter_and_the_unchanged_base_hash(
    trained: tuple[Path, dict], base_dir: Path
) -> None:
    folder, _ = trained
    assert sorted(p.name for p in folder.iterdir()) == [
        lora_io.PEFT_CONFIG, lora_io.ADAPTER_WEIGHTS, lora_io.ADAPTER_INFO
    ]  # fmt: skip
    adapter = lora_io.read_adapter(folder)
    assert adapter.weights and all(".lora_A." in k or ".lora_B." in k for k in adapter.weights)
    assert adapter.spec.rank == 16 and adapter.spec.alpha == 16.0
    info = adapter.info
    assert info["motion_class"] == "horizontal" and info["base_info"]["stage"] == "finetune"
    assert info["num_clips"] == 2 and info["lora"]["target_modules"].endswith(r"(to_q|to_k|to_v|to_out\.0)")
    independent = lora_io.base_weights_sha256(load_unet(base_dir).state_dict())
    assert info["base_sha256"] == info["base_sha256_after_training"] == independent
    assert any(v.abs().sum() > 0 for k, v in adapter.weights.items() if ".lora_B." in k)  # it trained
    assert json.loads((folder / lora_io.PEFT_CONFIG).read_text())["r"] == 16


def test_export_refuses_when_the_base_weights_changed(base_dir: Path, table_uri: str, tmp_path: Path) -> None:
    task = lora_train_task(lora_config(base_dir, table_uri).to_dict())
    model = task.build_model()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    key = next(k for k in state if k.endswith("conv_in.weight"))
    state[key][0, 0, 0, 0] += 1e-3
    with pytest.raises(BaseWeightsChangedError, match="frozen base weights changed"):
        task.export(state, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_bf16_training_compares_the_base_as_the_engine_holds_it(
    base_dir: Path, table_uri: str, tmp_path: Path
) -> None:
    trainer = {"max_steps": 2, "warmup_steps": 0, "num_workers": 0, "device": "cpu", "precision": "bf16"}
    task = lora_train_task(lora_config(base_dir, table_uri, trainer=trainer).to_dict())
    model = task.build_model()
    # DeepSpeed bf16 casts every parameter, frozen base included; the export gathers them back as fp32
    state = {k: v.detach().to(torch.bfloat16).float() for k, v in model.state_dict().items()}
    task.export(state, tmp_path / "a")
    info = lora_io.read_adapter(tmp_path / "a").info
    base = load_unet(base_dir).state_dict()
    assert info["train_dtype"] == "bfloat16" and info["base_sha256"] == lora_io.base_weights_sha256(base)
    assert info["base_sha256_after_training"] == lora_io.base_weights_sha256(base, torch.bfloat16)


# --- load / unload -----------------------------------------------------------------------------------


def test_loading_changes_the_output_and_unloading_restores_it_bit_for_bit(
    trained: tuple[Path, dict], base_dir: Path
) -> None:
    folder, _ = trained
    unet = load_unet(base_dir)
    modules_before = [(n, type(m)) for n, m in unet.named_modules()]
    keys_before = list(unet.state_dict())
    inputs = unet_inputs(unet)
    base_out = run_unet(unet, inputs)
    name = lora_io.load_adapter(unet, f"file://{folder}", scale=1.0, verify_base=True)
    assert name == "motion_horizontal" and lora_io.loaded_adapters(unet) == [name]
    adapted = run_unet(unet, inputs)
    assert not torch.equal(adapted, base_out)
    lora_io.set_adapter_scale(unet, name, 0.0)
    assert torch.equal(run_unet(unet, inputs), base_out)  # scale 0 adds exact zeros
    lora_io.set_adapter_scale(unet, name, 2.0)
    assert not torch.allclose(run_unet(unet, inputs), adapted)
    lora_io.unload_adapter(unet, name)
    assert torch.equal(run_unet(unet, inputs), base_out)
    assert [(n, type(m)) for n, m in unet.named_modules()] == modules_before
    assert list(unet.state_dict()) == keys_before and not hasattr(unet, "peft_config")


def test_loaded_adapter_reproduces_the_trained_model(trained: tuple[Path, dict], base_dir: Path) -> None:
    folder, state = trained
    unet = load_unet(base_dir)
    lora_io.load_adapter(unet, folder)
    reference = load_unet(base_dir)
    lora_io.load_adapter(reference, folder, name=TRAIN_ADAPTER)
    reference.load_state_dict(state)  # the in-training module's weights, adapter named as in training
    inputs = unet_inputs(unet, seed=1)
    assert torch.equal(run_unet(unet, inputs), run_unet(reference, inputs))


def test_two_adapters_add_up_and_unloading_one_leaves_the_other(
    trained: tuple[Path, dict], base_dir: Path, tmp_path: Path
) -> None:
    folder, _ = trained
    adapter = lora_io.read_adapter(folder)
    other_weights = {k: -2 * v for k, v in adapter.weights.items()}
    other = lora_io.save_adapter(
        tmp_path / "zoom", other_weights, adapter.spec, {**adapter.info, "motion_class": "zoom_in"}
    )
    unet = load_unet(base_dir)
    inputs = unet_inputs(unet)
    only_zoom = load_unet(base_dir)
    lora_io.load_adapter(only_zoom, other)
    expected = run_unet(only_zoom, inputs)
    first = lora_io.load_adapter(unet, folder)
    second = lora_io.load_adapter(unet, other)
    assert lora_io.loaded_adapters(unet) == sorted([first, second])
    both = run_unet(unet, inputs)
    assert not torch.allclose(both, expected)
    lora_io.unload_adapter(unet, first)
    assert torch.equal(run_unet(unet, inputs), expected)
    with pytest.raises(InputError, match="already loaded"):
        lora_io.load_adapter(unet, other)


def test_adapter_on_the_wrong_unet_is_refused_and_leaves_it_untouched(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    folder, _ = trained
    other_base = export_base(tmp_path / "other", seed=7)
    unet = load_unet(other_base)
    with pytest.raises(InputError, match="trained on other base weights"):
        lora_io.load_adapter(unet, folder, verify_base=True)
    narrower = {**load_unet(other_base).config, "block_out_channels": (32, 32)}
    wider = UNetSpatioTemporalConditionModel.from_config(narrower)  # same module names, other widths
    modules = [(n, type(m)) for n, m in wider.named_modules()]
    with pytest.raises(InputError, match="does not fit this UNet"):
        lora_io.load_adapter(wider, folder)
    assert [(n, type(m)) for n, m in wider.named_modules()] == modules
    assert not any(isinstance(m, BaseTunerLayer) for m in wider.modules())
    image_unet = UNet2DConditionModel.from_pretrained(
        export_base(tmp_path / "stage1", stage_one=True) / "unet"
    )
    with pytest.raises(InputError, match="does not fit this UNet"):  # no temporal blocks to adapt at all
        lora_io.load_adapter(image_unet, folder)
    assert not any(isinstance(m, BaseTunerLayer) for m in image_unet.modules())
    with pytest.raises(InputError, match="not a LoRA adapter folder"):
        lora_io.read_adapter(tmp_path / "other")


# --- bad input, before anything is launched -----------------------------------------------------------


def test_a_base_that_is_not_image_to_video_is_refused(table_uri: str, tmp_path: Path) -> None:
    stage_one = export_base(tmp_path / "stage1", stage_one=True)
    text = export_base(tmp_path / "text", mode="text")
    with pytest.raises(InputError, match="stage-I image model"):
        lora_train_task(lora_config(stage_one, table_uri).to_dict())
    with pytest.raises(InputError, match="text-to-video model"):
        lora_train_task(lora_config(text, table_uri).to_dict())
    with pytest.raises(InputError, match="cannot be read"):
        lora_train_task(lora_config(tmp_path / "missing", table_uri).to_dict())


def test_preset_mismatch_with_the_base_is_refused(base_dir: Path, table_uri: str, tmp_path: Path) -> None:
    other = shutil.copytree(base_dir, tmp_path / "base")
    info = json.loads((other / "svd_model.json").read_text())
    (other / "svd_model.json").write_text(json.dumps({**info, "preset": "small"}))
    with pytest.raises(ConfigError, match="preset: tiny but the base was trained with preset small"):
        lora_train_task(lora_config(other, table_uri).to_dict())


def test_a_class_without_clips_is_refused_with_the_labels_present(
    base_dir: Path, table_uri: str, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"no clip has camera_motion=vertical; .*: horizontal 2, zoom_in 1"):
        lora_train_task(lora_config(base_dir, table_uri, motion_class="vertical").to_dict())
    with pytest.raises(
        InputError, match=r"its 1 clip\(s\) with camera_motion=static are all too short for 4"
    ):
        lora_train_task(lora_config(base_dir, table_uri, motion_class="static").to_dict())
    unlabelled = write_lvd(tmp_path / "plain", [{"num_frames": 24, "fps": 24}])
    with pytest.raises(InputError, match="has no camera_motion column"):
        lora_train_task(lora_config(base_dir, unlabelled).to_dict())
