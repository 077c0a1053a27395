"""dynsr: image super-resolution with dynamic kernels."""

__version__ = "0.1.0"

from dynsr.api import load as load  # noqa: E402  (after __version__: submodules import it)
