"""Image input and output: float tensors in, faithful files out."""

from dynsr.io.image import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV_VAR,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    atomic_write_bytes,
    atomic_write_text,
    list_images,
    load_tensor,
    read_image,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV_VAR",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "atomic_write_bytes",
    "atomic_write_text",
    "list_images",
    "load_tensor",
    "read_image",
    "write_image",
]
