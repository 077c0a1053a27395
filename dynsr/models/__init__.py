"""Every dynsr upscaler, built by name: ``dynsr.models.create("bicubic", scale=2)``.

Each model lives in its own module here and registers its names with
:func:`dynsr.models.registry.register` when imported; importing this package imports them
all (like timm), so adding a model is adding a file.
"""

import importlib
import pkgutil

from dynsr.models.registry import (
    ModelSpec,
    OnnxAdapter,
    available,
    create,
    get_spec,
    onnx_adapter,
    register,
    register_onnx,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ModelSpec",
    "OnnxAdapter",
    "available",
    "create",
    "get_spec",
    "onnx_adapter",
    "register",
    "register_onnx",
]
