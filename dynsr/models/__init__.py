"""Every dynsr upscaler, built by name: ``dynsr.models.create("bicubic", scale=2)``."""

from dynsr.models import bicubic as _bicubic  # noqa: F401  (registers the model)
from dynsr.models.registry import ModelSpec, available, create, get_spec, register

__all__ = ["ModelSpec", "available", "create", "get_spec", "register"]
