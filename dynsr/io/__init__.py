"""Image input and output: float tensors in, faithful files out.

- :mod:`dynsr.io.image`: read and list images (Pillow, plus the codecs below);
  :mod:`dynsr.io.image_writer`: write them.
- :mod:`dynsr.io.png16`: the 16-bit colour PNG codec Pillow lacks.
- :mod:`dynsr.io.tiff`: TIFF through tifffile (8 and 16 bit, which Pillow truncates).
- :mod:`dynsr.io.atomic`: atomic file writes (temporary file, fsync, rename).
- :mod:`dynsr.io.errors`: the one-line ``"{path}: {reason}"`` errors.
"""

from dynsr.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from dynsr.io.errors import ImageReadError, ImageWriteError
from dynsr.io.image import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV_VAR,
    LoadedImage,
    list_images,
    load_tensor,
    read_image,
)
from dynsr.io.image_writer import PNG_COMPRESSION, SIXTEEN_BIT_SUFFIXES, write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV_VAR",
    "PNG_COMPRESSION",
    "SIXTEEN_BIT_SUFFIXES",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "list_images",
    "load_tensor",
    "read_image",
    "write_image",
]
