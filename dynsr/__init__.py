"""dynsr: image super-resolution with dynamic kernels.

``dynsr.load(name, scale)`` gives a trained model's upscaler; ``dynsr.zeroshot(image,
scale)`` runs zero-shot DualSR on one image (imported on first use).
"""

__version__ = "0.1.0"

from dynsr.api import load as load  # noqa: E402  (after __version__: submodules import it)


def __getattr__(name: str) -> object:
    # dynsr.zeroshot is a callable package; import it only when first asked for.
    if name == "zeroshot":
        import importlib

        return importlib.import_module("dynsr.zeroshot")
    raise AttributeError(f"module 'dynsr' has no attribute {name!r}")
