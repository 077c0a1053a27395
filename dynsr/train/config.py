"""Training configuration: the schema, YAML loading, ``key=value`` overrides, saving.

A run is described by one YAML file whose keys are checked against the dataclasses below:
a key the schema does not know is an error naming its full dotted path
(``train.lerning_rate: unknown key``), a value of the wrong type or outside its choices is
an error naming the key and what is accepted. Command-line overrides use the same dotted
paths, with values read as YAML scalars (``train.lr=2e-4 data.train.patch_size=64
train.ema_decay=null``). The resolved configuration (every default filled in) is written
beside the results as ``OUT/config.yaml`` and stored in checkpoints and weight files.

Schema (defaults in brackets)::

    name: str                          ["run"] run name; default output folder runs/NAME
    model:
      name: str                        required; a registered model (``dynsr models``)
      scale: int                       required; 2, 3 or 4; or 1 for pairs whose LR is
                                       already on the HR grid (``-real`` models)
      config: {key: value}             [{}] keyword arguments for the model's builder
      init: path                       [null] safetensors weights to start from (fine-tuning)
      init_strict: bool                [true] every tensor of ``init`` must fit the model;
                                       false: load those whose name and shape fit (e.g. a
                                       x3 model from x2 weights), the rest stays initialised
    data:
      train: {key: value}              required; passed to dynsr.train.datasets.build_dataset
                                       (type, paths, degradation, patch_size, augment, ...)
      val:                             [null = no validation]
        hr: path or [paths]            required; HR images or folders
        lr: path                       [null] folder of given LR images (as ``dynsr eval --lr``)
        recursive: bool                [false] look into sub-folders of ``hr``
        blur: float                    [null] \\
        kernel: path                   [null]  | how LR images are made from HR, exactly as
        kernel_size: int               [15]    | ``dynsr eval``'s flags of the same names
        noise: float                   [0.0]   | (the scale is model.scale)
        downsample: bicubic|direct     [bicubic]
        seed: int                      [0]    |
        random_kernel: div2krk         [null]  |
        realistic: bool                [false] /
        crop: int                      [null = the scale] border left out of the metrics
        precision: fp32|bf16           [fp32] inference precision for validation
        every: int                     [1000] validate every N iterations (and at the end)
        at_start: bool                 [false] also validate the untrained network (row 0)
    train:
      iterations: int                  [100000] optimiser steps in the whole schedule
      batch_size: int                  [16] samples per step *per process*
      loss: l1|l2|charbonnier          [l1] pixel loss (charbonnier: sqrt(d² + 1e-6))
      loss_channels: rgb|y             [rgb] y: the loss compares the Y channel (BT.601
                                       studio range / 255) of SR and HR, as DDet's release
                                       trains; a Y-only model (ddet, in_channels 1) returns
                                       its input's chroma, which an RGB loss would count too
      multistage: auto|true|false      [auto] sum the loss over every block output (UDVD,
                                       paper Eq. 4); auto = on for models that return them
      multistage_smaller: bicubic|skip [bicubic] targets of outputs smaller than HR
      optimizer: adam|adamw            [adam]
      lr: float                        [2e-4] peak learning rate
      betas: [float, float]            [[0.9, 0.999]]
      weight_decay: float              [0.0] (AdamW: decoupled)
      schedule: constant|step|cosine   [cosine] after the warm-up
      warmup: int                      [0] iterations of linear warm-up to ``lr``
      milestones: [int]                [[]] step: multiply by ``gamma`` at each of these
      gamma: float                     [0.5]
      min_lr: float                    [0.0] cosine: the learning rate at the last iteration
      grad_clip: float                 [null = off] max global L2 norm of the gradients
      ema_decay: float                 [null = off] EMA of the weights, e.g. 0.999 (reached
                                       after ~10/(1-decay) steps, see engine.EMA); validation
                                       and the exported weights then use the EMA
      precision: fp32|bf16             [fp32] bf16 = autocast on the CPU (or GPU)
      channels_last: bool              [false] channels_last memory format for the model
      seed: int                        [0] model initialisation and every training sample
      workers: int                     [0] data-loading processes (0: in the main process)
      threads: int                     [null = torch's default] torch.set_num_threads
      stop_after: int                  [null] stop (with a checkpoint) after this iteration;
                                       resume later with --resume
      time_limit: float                [null] stop (with a checkpoint) after this many
                                       seconds of this session's training
    checkpoint:
      every: int                       [1000] write OUT/state.pt every N iterations
      keep_best: bool                  [true] OUT/best.safetensors at the best val PSNR
    log:
      every: int                       [100] a row of OUT/log.csv every N iterations
      progress: auto|always|never      [auto] progress bar; auto = only on a terminal

``train.stop_after``, ``train.time_limit``, ``train.workers``, ``train.threads``, ``log``,
``checkpoint`` and ``data.val`` do not change the weights and may differ when a run is
resumed; the other keys must be the same (checked on ``--resume``).

Paths
-----
A relative path in a configuration file is relative to the file's folder, so a recipe works
from any current folder; one given as a command-line override is relative to the current
folder, as typed. ``dynsr:PATH`` names a file inside the installed package
(``dynsr:examples/astronaut.png``, ``dynsr:weights/udvd-lite_x2.safetensors``), which holds
wherever the recipe and the package are. The resolved configuration holds absolute paths.
The path keys: ``model.init``, ``data.train.paths`` / ``hr`` / ``lr``, ``data.val.hr`` /
``lr`` / ``kernel``. The recipes ship with the package (``dynsr/configs``, the repository's
``configs/``): ``dynsr train NAME`` finds ``NAME.yaml`` there (:func:`find_recipe`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "RESUMABLE_CHANGES",
    "TrainConfig",
    "ValConfig",
    "apply_overrides",
    "changed_keys",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "find_recipe",
    "load_config",
    "parse_override",
    "read_yaml",
    "resolve_paths",
    "weight_affecting_changes",
]

# Keys that may change between a run and its resumption (they do not affect the weights).
RESUMABLE_CHANGES = (
    "name", "data.val", "train.stop_after", "train.time_limit", "train.workers",
    "train.threads", "checkpoint", "log",
)


class _Required:
    """Marker default of a key that has no default."""

    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


def _required() -> Any:
    return field(default=REQUIRED)


@dataclass
class ModelConfig:
    name: str = _required()
    scale: int = _required()
    config: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_strict: bool = True


@dataclass
class ValConfig:
    hr: list[str] = _required()
    lr: str | None = None
    recursive: bool = False
    blur: float | None = None
    kernel: str | None = None
    kernel_size: int = 15
    noise: float = 0.0
    downsample: Literal["bicubic", "direct"] = "bicubic"
    seed: int = 0
    random_kernel: Literal["div2krk"] | None = None
    realistic: bool = False
    crop: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    every: int = 1000
    at_start: bool = False


@dataclass
class DataConfig:
    train: dict[str, Any] = _required()
    val: ValConfig | None = None


@dataclass
class TrainConfig:
    iterations: int = 100_000
    batch_size: int = 16
    loss: Literal["l1", "l2", "charbonnier"] = "l1"
    loss_channels: Literal["rgb", "y"] = "rgb"
    multistage: bool | Literal["auto"] = "auto"
    multistage_smaller: Literal["bicubic", "skip"] = "bicubic"
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    warmup: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    min_lr: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    stop_after: int | None = None
    time_limit: float | None = None


@dataclass
class CheckpointConfig:
    every: int = 1000
    keep_best: bool = True


@dataclass
class LogConfig:
    every: int = 100
    progress: Literal["auto", "always", "never"] = "auto"


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = _required()
    data: DataConfig = _required()
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ------------------------------------------------------------------------------------------
# YAML reading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (PyYAML follows YAML 1.1, which
    wants ``1.0e-4``; every user writes ``1e-4``)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def read_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with the float fix above; syntax errors become ``ValueError``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from None


# ------------------------------------------------------------------------------------------
# checking a mapping against the schema


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a).lower() if isinstance(a, bool) else str(a)
                          for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a)
                           for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


class _Mismatch(Exception):
    pass


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against type ``tp`` (and converted: int → float, str → [str])."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        choices = typing.get_args(tp)
        # `True == 1` in Python: compare types too so that 1 is not taken for true.
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e5 iterations
            return int(value)
        raise _Mismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        (item,) = typing.get_args(tp)
        if item is str and isinstance(value, str):  # a single path where a list is accepted
            value = [value]
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return [_checked(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{key}: keys must be strings, got {bad[0]!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, key)
    raise TypeError(f"schema type {tp!r} not supported")


def _checked(value: Any, tp: Any, key: str) -> Any:
    try:
        return _convert(value, tp, key)
    except _Mismatch:
        shown = "null" if value is None else repr(value)
        raise ValueError(f"{key}: expected {_describe(tp)}, got {shown}") from None


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            raise ValueError(f"{dotted}: unknown key (known here: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            values[f.name] = _checked(data[f.name], hints[f.name], dotted)
        elif f.default is REQUIRED:
            raise ValueError(f"{dotted}: required key missing")
    return cls(**values)


def _validate(cfg: Config) -> None:
    """Value checks the types cannot express."""
    t = cfg.train
    positive = {"train.iterations": t.iterations, "train.batch_size": t.batch_size,
                "checkpoint.every": cfg.checkpoint.every, "log.every": cfg.log.every}
    if cfg.data.val is not None:
        positive["data.val.every"] = cfg.data.val.every
        positive["data.val.kernel_size"] = cfg.data.val.kernel_size
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"{key}: must be at least 1, got {value}")
    if cfg.model.scale not in (1, 2, 3, 4):
        raise ValueError(f"model.scale: must be 2, 3 or 4 (or 1 for pairs on the HR grid), got "
                         f"{cfg.model.scale}")
    if cfg.model.scale == 1 and cfg.data.val is not None and cfg.data.val.lr is None:
        raise ValueError("data.val.lr: required at scale 1 (the validation pairs' LR images, on "
                         "the HR grid)")
    if not t.lr > 0:
        raise ValueError(f"train.lr: must be > 0, got {t.lr}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ValueError(f"train.betas: must be two numbers in [0, 1), got {t.betas}")
    for key, value in {"train.warmup": t.warmup, "train.weight_decay": t.weight_decay,
                       "train.min_lr": t.min_lr, "train.workers": t.workers}.items():
        if value < 0:
            raise ValueError(f"{key}: must be >= 0, got {value}")
    if t.warmup >= t.iterations:
        raise ValueError(f"train.warmup: must be below train.iterations ({t.iterations}), "
                         f"got {t.warmup}")
    if sorted(t.milestones) != t.milestones or any(m < 1 for m in t.milestones):
        raise ValueError(f"train.milestones: must be increasing positive iterations, "
                         f"got {t.milestones}")
    if not 0 < t.gamma <= 1:
        raise ValueError(f"train.gamma: must be in (0, 1], got {t.gamma}")
    if t.grad_clip is not None and not t.grad_clip > 0:
        raise ValueError(f"train.grad_clip: must be > 0 or null, got {t.grad_clip}")
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        raise ValueError(f"train.ema_decay: must be in (0, 1) or null, got {t.ema_decay}")
    if t.threads is not None and t.threads < 1:
        raise ValueError(f"train.threads: must be at least 1 or null, got {t.threads}")
    if t.stop_after is not None and t.stop_after < 1:
        raise ValueError(f"train.stop_after: must be at least 1 or null, got {t.stop_after}")
    if t.time_limit is not None and not t.time_limit > 0:
        raise ValueError(f"train.time_limit: must be > 0 seconds or null, got {t.time_limit}")
    val = cfg.data.val
    if val is not None:
        if val.blur is not None and val.kernel is not None:
            raise ValueError("data.val: give blur or kernel, not both")
        if val.blur is not None and not val.blur > 0:
            raise ValueError(f"data.val.blur: must be > 0, got {val.blur}")
        if val.noise < 0:
            raise ValueError(f"data.val.noise: must be >= 0, got {val.noise}")
        if val.kernel_size % 2 == 0:
            raise ValueError(f"data.val.kernel_size: must be odd, got {val.kernel_size}")
        if not val.hr:
            raise ValueError("data.val.hr: give at least one HR image or folder")


def config_from_dict(data: Any) -> Config:
    """A checked :class:`Config` from a parsed YAML mapping (``ValueError`` naming the key)."""
    if not isinstance(data, dict):
        raise ValueError("the configuration must be a YAML mapping (key: value lines)")
    cfg = _build(Config, data, "")
    _validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain data (YAML/JSON-ready)."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------------------------
# overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=2e-4"`` → (["train", "lr"], 0.0002); the value is read as a YAML scalar
    (or a flow list/mapping such as ``[1000, 2000]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r}: expected dotted.key=value")
    return key.split("."), read_yaml(raw, f"override {key}") if raw.strip() else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of the raw mapping ``data`` with each ``dotted.key=value`` set.

    Missing intermediate mappings are created (so ``data.val.hr=...`` can add validation to
    a file without it); unknown keys are caught afterwards by the schema, with their path.
    """
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ValueError(f"override {text!r}: {where} is not a mapping")
            node = child
        node[path[-1]] = value
    return result


PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: The recipes shipped with dynsr (the repository's ``configs/``).
RECIPES_DIR = PACKAGE_DIR / "configs"
PACKAGE_PREFIX = "dynsr:"
# Where paths sit in a configuration: (section, key) pairs; values are a path or a list.
PATH_KEYS = (("model", "init"), ("data.train", "paths"), ("data.train", "hr"),
             ("data.train", "lr"), ("data.val", "hr"), ("data.val", "lr"),
             ("data.val", "kernel"))


def resolve_path(value: Any, base: Path) -> Any:
    """``value`` made absolute against ``base``, or against the package for ``dynsr:PATH``
    (non-strings and empty strings pass through)."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(PACKAGE_PREFIX):
        return os.path.normpath(PACKAGE_DIR / value[len(PACKAGE_PREFIX):])
    return os.path.normpath(base / Path(value).expanduser())  # absolute stays absolute


def resolve_paths(data: Any, base: str | Path) -> Any:
    """A copy of the raw configuration mapping ``data`` with every relative path made
    absolute against ``base`` and every ``dynsr:`` path against the package (module doc)."""
    if not isinstance(data, dict):
        return data
    result = copy.deepcopy(data)
    base = Path(base).expanduser().absolute()
    for section, key in PATH_KEYS:
        node = result
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node:
            value = node[key]
            node[key] = ([resolve_path(v, base) for v in value] if isinstance(value, list)
                         else resolve_path(value, base))
    return result


def find_recipe(name: str | Path) -> Path:
    """``name`` itself when it is a file; else the shipped recipe ``NAME.yaml``."""
    path = Path(name)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    recipe = RECIPES_DIR / f"{name}.yaml"
    if recipe.is_file():
        return recipe
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ValueError(f"{name}: no such configuration file, nor a shipped recipe of that name "
                     f"(recipes: {known})")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (YAML; or the name of a shipped recipe), apply ``overrides``, check
    everything against the schema. Paths are resolved (module doc)."""
    path = find_recipe(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read the configuration: {err.strerror or err}") \
            from None
    data = read_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a YAML mapping")
    # The file's paths against its own folder (symlinks resolved: the repository's folder
    # layout, not the link's), then the overrides' against the current folder.
    data = resolve_paths(data, path.resolve().parent)
    try:
        return config_from_dict(resolve_paths(apply_overrides(data, overrides or []),
                                              Path.cwd()))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configuration dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}.{key}" if prefix else key
        a, b = old.get(key, REQUIRED), new.get(key, REQUIRED)
        if isinstance(a, dict) and isinstance(b, dict):
            keys.extend(changed_keys(a, b, dotted))
        elif a != b:
            keys.append(dotted)
    return keys


def weight_affecting_changes(old: dict, new: dict) -> list[str]:
    """:func:`changed_keys` without those listed in :data:`RESUMABLE_CHANGES`."""
    return [k for k in changed_keys(old, new)
            if not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES)]
