"""`svd models ...` (the commands live with the training CLI)."""

from flows.cli.train import register_models as register

__all__ = ["register"]
