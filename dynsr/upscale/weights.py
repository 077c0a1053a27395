"""Shipped weights: a manifest of safetensors files, each checked against its sha256.

Layout of a weights folder (the package's ``dynsr/weights/`` by default, or the folder
named by ``$DYNSR_WEIGHTS_DIR``, or a ``weights_dir`` argument)::

    manifest.json
    ddet_x2.safetensors
    ...

``manifest.json``::

    {"version": 1,
     "models": {"ddet": {"2": {"file": "ddet_x2.safetensors",
                               "sha256": "<64 hex digits>",
                               "config": {}}}}}

``config`` (optional) holds the keyword arguments the weights were trained with, passed to
``dynsr.models.create``. A folder without a manifest ships no weights; so does a manifest
without the model or the scale (:func:`find_weights` returns ``None`` and callers say so).

:func:`publish_weights` adds a file that ``dynsr train`` wrote (``best.safetensors`` or
``model.safetensors``) to a weights folder and its manifest, with what the file's metadata
says about how it was made: the training data, iterations, wall time, the resolved training
configuration and the validation score. Maintainers run it as
``dynsr publish-weights RUN/best.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from dynsr.io import atomic_write_bytes, atomic_write_json
from dynsr.upscale.manifest import (
    MANIFEST_NAME,
    WEIGHTS_DIR_ENV_VAR,
    WeightsEntry,
    WeightsError,
    default_weights_dir,
    find_weights,
)

__all__ = [
    "MANIFEST_NAME",
    "add_manifest_entry",
    "WEIGHTS_DIR_ENV_VAR",
    "WeightsEntry",
    "WeightsError",
    "default_weights_dir",
    "file_sha256",
    "find_weights",
    "load_fitting_tensors",
    "weights_hint",
    "weights_model_config",
    "load_state_dict",
    "publish_weights",
]

def weights_hint(name: str, scale: int,
                 weights_dir: str | os.PathLike[str] | None = None) -> str:
    """For a model without shipped weights: the related names that have them at ``scale``
    (``ddet`` → ``ddet-rgb``), as a phrase to end a message with, or ``""``."""
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    try:
        models = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    family = name.split("-")[0]
    related = sorted(other for other, scales in models.items()
                     if other != name and other.split("-")[0] == family
                     and str(scale) in scales)
    return f" (shipped: {', '.join(related)} x{scale})" if related else ""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err


def load_state_dict(model: nn.Module, path: str | os.PathLike[str],
                    sha256: str | None = None) -> nn.Module:
    """Load a safetensors file into ``model`` (strict), checking ``sha256`` first if given."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file does not exist")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256.lower():
            # A truncated download or a wrong file must never run silently.
            raise WeightsError(f"{path}: sha256 mismatch (expected {sha256}, got {actual}); "
                               "the file is damaged or not the shipped one")
    state = _read_tensors(path)
    # Keep the model's dtype: weights may be stored in bf16/fp16 to save space.
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path}: weights do not fit the model ({err})") from err
    return model


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), "pt") as handle:
            return handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err


def weights_model_config(path: str | os.PathLike[str], name: str, scale: int) -> dict:
    """The model configuration a weights file was trained with (``dynsr train`` writes it in
    the metadata; ``{}`` for a file without it), refusing a file made for another model or
    scale: ``create(name, scale=scale, **config)`` then builds the network the file fits.
    Weights trained at scale 1 (pairs on the HR grid) serve every scale of their model, as in
    :func:`find_weights`."""
    path = Path(path)
    meta = _read_metadata(path)
    if "model" in meta and "scale" in meta:
        # Registry aliases (ddet-rgb is ddet with 3 channels) are told apart by their config.
        if meta["model"] != name or int(meta["scale"]) not in (scale, 1):
            raise WeightsError(f"{path}: weights of {meta['model']} x{meta['scale']}, not "
                               f"{name} x{scale}")
    return json.loads(meta["model_config"]) if "model_config" in meta else {}


def load_fitting_tensors(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Load the tensors of a safetensors file whose name and shape fit ``model``; return the
    names of the model's tensors left as they were (missing from the file or of another
    shape). For fine-tuning one scale from another's weights."""
    path = Path(path)
    given = _read_tensors(path)
    own = model.state_dict()
    fitting = {k: v.to(own[k].dtype) for k, v in given.items()
               if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise WeightsError(f"{path}: no tensor fits the model")
    model.load_state_dict(fitting, strict=False)
    return sorted(k for k in own if k not in fitting)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {"version": 1, "models": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise WeightsError(f"{path}: not a valid weights manifest ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models", {}), dict):
        raise WeightsError(f"{path}: not a valid weights manifest (no \"models\" object)")
    manifest.setdefault("models", {})
    return manifest


def _recorded_paths(paths: str | list[str] | None) -> list[str]:
    """A recipe's path or paths as the manifest lists them: absolute ones (``dynsr train``
    resolves a recipe's paths) relative to where the publishing runs, the repository's root,
    so that the manifest names no machine's folders; others as they are."""
    listed = [paths] if isinstance(paths, str) else paths or []
    return [os.path.relpath(p) if os.path.isabs(p) else p for p in listed]


def _stage_record(meta: dict[str, str], run: dict) -> dict:
    """What one ``dynsr train`` run cost and how: run, init, iterations, loss, hours, CPUs."""
    init = run["model"].get("init")
    return {
        "run": run.get("name"),
        **({"init": _recorded_paths(init)[0]} if init else {}),
        "iterations": int(meta["iterations"]),
        "schedule_iterations": run["train"]["iterations"],
        "loss": run["train"].get("loss"),
        "wall_time_h": round(float(meta["wall_time_s"]) / 3600, 2),
        # The CPUs of the training sessions (weights trained before this was recorded have
        # none).
        **({"machines": json.loads(meta["machines"])} if "machines" in meta else {}),
    }


def _init_stages(init: str | None) -> list[dict]:
    """The earlier training stages of weights fine-tuned from ``init``, oldest first.

    A fine-tune's own iterations and wall time leave out the run it started from; when
    ``init`` (a path relative to where the publishing runs, as in the recipe) is itself a
    ``dynsr train`` file, its stage is listed (and its own stages before it), so the
    manifest states the whole budget. Empty when it is not readable.
    """
    if not init:
        return []
    try:
        meta = _read_metadata(Path(init))
    except WeightsError:
        return []
    if not {"config", "iterations", "wall_time_s"} <= meta.keys():
        return []
    run = yaml.safe_load(meta["config"])
    return [*_init_stages(run["model"].get("init")), _stage_record(meta, run)]


STORAGE_DTYPES = {"fp32": None, "fp16": torch.float16}


def stored_bytes(source: str | os.PathLike[str], storage: str = "fp32",
                 metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file as it ships: as it is (``"fp32"``), or with every
    floating tensor rounded to float16 (``"fp16"``, half the size; the metadata kept).
    ``metadata`` replaces the file's. :func:`load_state_dict` brings stored tensors back to
    the model's dtype."""
    if storage not in STORAGE_DTYPES:
        raise WeightsError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, "
                           f"got {storage!r}")
    source = Path(source)
    dtype = STORAGE_DTYPES[storage]
    if dtype is None and metadata is None:
        return source.read_bytes()
    meta = _read_metadata(source) if metadata is None else metadata
    tensors = load_file(str(source))
    return save({k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
                 for k, v in tensors.items()}, metadata=meta)


def _config_as(name: str, trained: str, config: dict, source: Path) -> dict:
    """The configuration under which registered model ``name`` builds the network trained as
    ``trained`` with ``config`` (the same builder, the defaults of ``name`` left out); a
    WeightsError if ``name`` cannot build it."""
    from dynsr.models.registry import get_spec

    try:
        new, old = get_spec(name), get_spec(trained)
    except KeyError as err:
        raise WeightsError(f"{source}: {err}") from None

    def plain(d: dict) -> dict:  # tuples as lists, as the metadata's JSON has them
        return json.loads(json.dumps(d))

    full, defaults = plain({**old.defaults, **config}), plain(new.defaults)
    under = {k: v for k, v in full.items() if k not in defaults or defaults[k] != v}
    if new.builder is not old.builder or {**defaults, **under} != full:
        raise WeightsError(f"{source}: trained as {trained} with {json.dumps(config)}, a "
                           f"network {name} does not build")
    return under


def publish_weights(source: str | os.PathLike[str],
                    weights_dir: str | os.PathLike[str] | None = None,
                    storage: str = "fp32", name: str | None = None) -> WeightsEntry:
    """Copy a trained weights file into ``weights_dir`` as ``NAME_xS.safetensors`` and list it.

    The file must carry ``dynsr train``'s metadata (model, scale, model_config, config,
    iterations, wall_time_s). An existing entry for the same model and scale is replaced.
    The copy and the manifest are written atomically; the entry records the sha256, and
    ``storage`` (:func:`stored_bytes`) when it is not fp32. ``name``: list the weights under
    this registered model instead of the one they were trained as, when it builds the same
    network (a ``udvd-lite`` run with ``channels: 128`` is ``udvd-wide``); the copy's
    metadata then names it, with its configuration relative to its defaults.
    """
    source = Path(source)
    meta = _read_metadata(source)
    missing = [k for k in ("model", "scale", "model_config", "config", "iterations",
                           "wall_time_s") if k not in meta]
    if missing:
        raise WeightsError(f"{source}: no {', '.join(missing)} in the metadata (not written "
                           "by dynsr train)")
    scale = int(meta["scale"])
    rename = None
    if name is not None and name != meta["model"]:
        config = _config_as(name, meta["model"], json.loads(meta["model_config"]), source)
        meta = rename = {**meta, "model": name, "model_config": json.dumps(config)}
    name = meta["model"]
    run = yaml.safe_load(meta["config"])
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    file_name = f"{name}_x{scale}.safetensors"
    data = stored_bytes(source, storage, rename)
    atomic_write_bytes(folder / file_name, data)
    digest = hashlib.sha256(data).hexdigest()
    train_data = dict(run["data"]["train"])
    if "paths" in train_data:
        train_data["paths"] = _recorded_paths(train_data["paths"])
    stages = _init_stages(run["model"].get("init"))
    entry = {
        "file": file_name,
        "sha256": digest,
        **({"storage": storage} if storage != "fp32" else {}),
        "config": json.loads(meta["model_config"]),
        "training": {
            **_stage_record(meta, run),
            "data": {k: train_data[k] for k in ("type", "paths", "degradation", "patch_size")
                     if k in train_data},
            "batch_size": run["train"]["batch_size"],
            **({"earlier_stages": stages} if stages else {}),
            "weights": meta.get("weights"),
            "dynsr_version": meta.get("dynsr_version"),
            "date": meta.get("date"),
        },
    }
    if "val_psnr_y" in meta:
        val = run["data"].get("val") or {}
        # The degradation the validation LR had (none listed: MATLAB bicubic alone).
        degradation = {k: val[k] for k in ("realistic", "blur", "kernel", "noise", "downsample",
                                           "random_kernel") if val.get(k) not in (None, False, 0)
                       and not (k == "downsample" and val[k] == "bicubic")}
        entry["validation"] = {"data": _recorded_paths(val.get("hr")) or None, **degradation,
                               **({"seed": val.get("seed", 0)} if degradation else {}),
                               "psnr_y": round(float(meta["val_psnr_y"]), 4),
                               "ssim_y": round(float(meta["val_ssim_y"]), 5)}
    add_manifest_entry(folder, name, scale, entry)
    return WeightsEntry(name, scale, folder / file_name, digest, entry["config"])


def add_manifest_entry(folder: str | os.PathLike[str], name: str, scale: int,
                       entry: dict) -> None:
    """Set the manifest entry of ``name`` at ``scale`` in ``folder`` (replacing one that is
    there), keeping the manifest sorted; written atomically."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    manifest["models"].setdefault(name, {})[str(scale)] = entry
    manifest["models"][name] = dict(sorted(manifest["models"][name].items()))
    manifest["models"] = dict(sorted(manifest["models"].items()))
    atomic_write_json(folder / MANIFEST_NAME, manifest)

