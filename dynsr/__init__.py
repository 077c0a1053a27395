"""dynsr: image super-resolution with dynamic kernels.

``dynsr.load(name, scale)`` gives a trained model's upscaler; ``dynsr.zeroshot(image,
scale)`` runs zero-shot DualSR on one image. Both are imported on first use, so that
commands which need no torch (``dynsr models``) start at once.
"""

__version__ = "0.1.0"

__all__ = ["load", "zeroshot"]


def __getattr__(name: str) -> object:
    import importlib

    if name == "load":
        return importlib.import_module("dynsr.api").load
    if name == "zeroshot":  # a callable package
        return importlib.import_module("dynsr.zeroshot")
    raise AttributeError(f"module 'dynsr' has no attribute {name!r}")
