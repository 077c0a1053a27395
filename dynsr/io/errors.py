"""Errors about one file, each printed as a single ``"{path}: {reason}"`` line."""

from __future__ import annotations

import os

__all__ = ["ImageReadError", "ImageWriteError", "PathError"]


class PathError(Exception):
    """An error about one file, printed as a single ``"{path}: {reason}"`` line."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        # Pillow and OS messages can span lines; the CLI prints exactly one.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Two-argument __init__ would break pickling (e.g. across DataLoader workers).
        return (type(self), (self.path, self.reason))


# Both are OSErrors, like Pillow's UnidentifiedImageError, so `except OSError` still works.
class ImageReadError(PathError, OSError):
    """An image file could not be read; ``str(err)`` is ``"{path}: {reason}"``."""


class ImageWriteError(PathError, OSError):
    """A file could not be written; ``str(err)`` is ``"{path}: {reason}"``."""
