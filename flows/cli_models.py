"""`svd models ...` (the commands live with the training CLI)."""

from flows.cli_train import register_models as register

__all__ = ["register"]
