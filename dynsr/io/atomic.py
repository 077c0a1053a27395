"""Atomic file writes: readers see the old file or the complete new one, never a partial one."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from pathlib import Path

from dynsr.io.errors import ImageWriteError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``.

    The bytes go to a hidden ``.*.tmp`` file in the same folder, which is fsynced and renamed
    over ``path``; on failure it is removed and an existing ``path`` is left untouched.
    Missing parent folders are created. OS failures are :class:`ImageWriteError`.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageWriteError(path, "is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(
            path, f"cannot create folder {path.parent}: {exc.strerror or exc}"
        ) from exc

    temp_path, fd = _create_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())  # data on disk before the rename makes it visible
        os.replace(temp_path, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        if isinstance(exc, OSError):
            raise ImageWriteError(path, f"could not write the file: {exc.strerror or exc}") from exc
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write a text file (e.g. a metrics report) atomically, as :func:`atomic_write_bytes`."""
    return atomic_write_bytes(Path(path), text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> Path:
    """Write ``obj`` as indented JSON atomically. JSON has no infinity or NaN: such floats
    (e.g. the PSNR of identical images) are written as ``null``; other unknown values as
    ``str``."""
    text = json.dumps(_finite(obj), indent=2, default=str, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _finite(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _create_temp_file(path: Path) -> tuple[Path, int]:
    # os.open (not mkstemp) so the file gets the usual umask-based permissions, not 0600.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return temp_path, os.open(temp_path, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
            raise ImageWriteError(
                path, f"cannot create a file in {path.parent}: {reason or exc}"
            ) from exc
    raise ImageWriteError(path, "cannot find a free temporary file name")


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (or needed) everywhere.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
