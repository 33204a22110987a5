"""Config of the camera-motion LoRA task (paper section 4.3): the adapter's shape and the training stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from svd_core.tasks.stages.config import TrainStageConfig

if TYPE_CHECKING:  # lora_io imports torch and peft; configs stay importable without them
    from svd_core.model.lora_io import AdapterSpec

CAMERA_MOTION_CLASSES = ("static", "horizontal", "vertical", "zoom_in", "zoom_out")
"""Labels of svd_core.curation.camera that describe one camera motion (`complex` is the catch-all)."""
MotionClass = Literal["static", "horizontal", "vertical", "zoom_in", "zoom_out"]


class LoraAdapterConfig(BaseModel):
    """Shape and placement of the adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    rank: int = Field(16, ge=1)
    """LoRA rank (paper: 16)."""
    alpha: float | None = Field(None, gt=0)
    """LoRA alpha; the update is scaled by alpha / rank. None: alpha = rank (scale 1; the paper gives none)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapter's input (peft's lora_dropout)."""
    attentions: list[Literal["attn1", "attn2"]] = Field(
        default_factory=lambda: list[Literal["attn1", "attn2"]](["attn1", "attn2"])
    )
    """Which attention of each temporal transformer block: attn1 (temporal self-attention), attn2
    (cross-attention to the CLIP image embedding)."""
    projections: list[Literal["to_q", "to_k", "to_v", "to_out.0"]] = Field(
        default_factory=lambda: list[Literal["to_q", "to_k", "to_v", "to_out.0"]](
            ["to_q", "to_k", "to_v", "to_out.0"]
        )
    )
    """Projections of those attentions that get an adapter."""

    @model_validator(mode="after")
    def _check_lists(self) -> LoraAdapterConfig:
        for name in ("attentions", "projections"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"lora.{name}: list each entry once and at least one (got {values})")
        return self

    def target_regex(self) -> str:
        """peft `target_modules` regex (re.fullmatch on module names): temporal attention projections only."""
        attns = "|".join(self.attentions)
        projs = "|".join(p.replace(".", r"\.") for p in self.projections)
        return rf".*\.temporal_transformer_blocks\.\d+\.({attns})\.({projs})"

    def spec(self) -> AdapterSpec:
        from svd_core.model.lora_io import AdapterSpec

        return AdapterSpec(self.rank, float(self.alpha or self.rank), self.dropout, self.target_regex())


class LoraTrainConfig(TrainStageConfig):
    """A camera-motion LoRA on an image-to-video base (paper: rank 16, 5k iterations, per class)."""

    stage: Literal["finetune"] = "finetune"
    """The objective is the base model's finetune objective; the base is `init.pipeline_uri`."""
    conditioning: Literal["image"] = "image"
    """Camera-motion LoRAs adapt image-to-video models only."""
    motion_class: MotionClass = "horizontal"
    """Camera-motion class whose clips train this adapter (paper: horizontal, zoom, static)."""
    motion_column: str = "camera_motion"
    """Table column holding the class labels (written by the LVD pass, svd_core.curation.camera)."""
    base_model: str = ""
    """Registry URI of the base version (models:/NAME/N), recorded in the adapter; set by `svd train lora`."""
    lora: LoraAdapterConfig = Field(default_factory=LoraAdapterConfig)
    """Adapter rank, alpha, dropout and target modules."""
