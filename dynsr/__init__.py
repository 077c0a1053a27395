"""dynsr: image super-resolution with dynamic kernels."""

__version__ = "0.1.0"
