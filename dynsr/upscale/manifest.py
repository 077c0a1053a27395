"""The weights manifest: which model and scale ship which file, with its sha256.

Plain JSON reading, without torch, so that listing what ships (``dynsr models``) is quick;
loading and publishing weights is :mod:`dynsr.upscale.weights`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MANIFEST_NAME",
    "WEIGHTS_DIR_ENV_VAR",
    "WeightsEntry",
    "WeightsError",
    "default_weights_dir",
    "find_weights",
]

MANIFEST_NAME = "manifest.json"
WEIGHTS_DIR_ENV_VAR = "DYNSR_WEIGHTS_DIR"


class WeightsError(ValueError):
    """Weights that cannot be used (bad manifest, missing file, checksum mismatch)."""


@dataclass(frozen=True)
class WeightsEntry:
    """One shipped weights file for a model name and scale."""

    name: str
    scale: int
    path: Path
    sha256: str | None
    config: dict = field(default_factory=dict)


def default_weights_dir() -> Path:
    """``$DYNSR_WEIGHTS_DIR`` if set, else the ``weights`` folder inside the package."""
    env = os.environ.get(WEIGHTS_DIR_ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights"


def find_weights(name: str, scale: int,
                 weights_dir: str | os.PathLike[str] | None = None) -> WeightsEntry | None:
    """The manifest entry for ``name`` at ``scale``, or ``None`` when none is shipped.

    Without an entry at ``scale``, the model's x1 entry serves: x1 weights are trained on
    pairs whose LR is already on the HR grid (``ddet-real``), and such a network restores the
    bicubic-upscaled image whatever the factor, so the same file holds at every scale (the
    entry keeps its own ``scale``, 1)."""
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        scales = manifest.get("models", {}).get(name, {})
        entry = scales.get(str(scale))
        if entry is None and scale != 1:
            entry, scale = scales.get("1"), 1
    except (OSError, ValueError, AttributeError) as err:
        raise WeightsError(f"{manifest_path}: not a valid weights manifest ({err})") from err
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise WeightsError(f"{manifest_path}: entry {name} x{scale} has no \"file\"")
    sha = entry.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise WeightsError(f"{manifest_path}: entry {name} x{scale}: sha256 must be 64 hex "
                           "digits")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise WeightsError(f"{manifest_path}: entry {name} x{scale}: config must be an object")
    return WeightsEntry(name, scale, folder / entry["file"], sha and sha.lower(), config)
