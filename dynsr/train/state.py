"""A run's resumable state (``state.pt``): the random generators' states it holds besides the
model and optimiser, how it is read back without executing pickled code, and when a run may
continue from it.

Resuming
--------
``--resume`` loads ``state.pt`` and continues; the result is bit-identical to a run that was
never interrupted, because nothing in an iteration depends on history other than what the
state holds: the data of iteration i is a function of (seed, i), the learning rate a function
of i, and model, EMA and optimiser tensors are restored exactly. (Bit-identity assumes the
same machine, torch build and ``train.threads``: a different thread count may reorder
floating-point sums.) Keys that change the weights must be the same as in the state; the
others (``train.stop_after``, ``train.time_limit``, ``train.workers``, ``train.threads``,
``data.val``, ``checkpoint``, ``log``) may differ. SIGTERM or Ctrl-C stops at the end of the
current iteration with a checkpoint; a second one stops at once.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from dynsr.train.config import (
    Config,
    config_from_dict,
    config_to_dict,
    resolve_paths,
    weight_affecting_changes,
)

__all__ = [
    "STATE_FORMAT",
    "load_state",
    "resumable_state",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

STATE_FORMAT = "dynsr-train-state-1"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (model initialisation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states as tensors and plain numbers (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: str | Path) -> dict:
    """Read a training state written by :class:`Trainer` (no pickled code is executed)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no training state to resume from") from None
    except Exception as err:  # unpickling errors have many types
        raise ValueError(f"{path}: not a readable training state ({err})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a dynsr training state")
    return state


def resumable_state(state_path: Path, cfg: Config, *, resume: bool,
                    reschedule: bool) -> dict | None:
    """The saved state to continue from (None to start afresh), checked against the
    configuration: keys that change the weights must not differ (``reschedule``: except
    ``train.iterations``, whose change is recorded in the state)."""
    t = cfg.train
    state = None
    if resume and state_path.exists():
        state = load_state(state_path)
        # Resolve the saved configuration again so that keys added to dynsr since the
        # run started get their defaults instead of counting as changes, and relative paths
        # of states saved before paths were resolved (they were relative to the current
        # folder) become the absolute paths a configuration now holds.
        saved = config_to_dict(config_from_dict(resolve_paths(state["config"], Path.cwd())))
        changed = weight_affecting_changes(saved, config_to_dict(cfg))
        if reschedule and "train.iterations" in changed:
            # A longer or shorter schedule from here on: the learning rate follows the new
            # length from the saved iteration; the change is kept in the state and summary.
            changed.remove("train.iterations")
            old_length = state["config"]["train"]["iterations"]
            if t.iterations <= int(state["iteration"]):
                raise ValueError(f"--reschedule: train.iterations={t.iterations} is not "
                                 f"past the saved iteration {state['iteration']}")
            state.setdefault("schedule_changes", []).append(
                {"iteration": int(state["iteration"]), "from": old_length,
                 "to": t.iterations})
        if changed:
            raise ValueError(f"--resume: the configuration differs from the saved run in "
                             f"{', '.join(changed)} (these change the weights)")
    elif not resume and state_path.exists():
        raise ValueError(f"{state_path.parent} already holds a run (state.pt): continue it "
                         f"with --resume, or give another --out")
    return state
