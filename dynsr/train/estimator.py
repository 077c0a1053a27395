"""Training the degradation estimator (:mod:`dynsr.models.degradation_estimator`).

The estimator is not an upscaler (its output is UDVD's degradation map, not an image), so it
has this small loop of its own instead of :mod:`dynsr.train.engine`; it shares the data
pipeline (:class:`dynsr.train.datasets.HRFolderDataset` with ``degradation: blind``, seeded
per sample), the EMA and the atomic writes. A run resumes from ``OUT/state.pt`` to the same
samples; ``OUT/log.csv`` holds the losses and the validation rows, ``OUT/summary.json`` the
run, ``OUT/best.safetensors`` the EMA weights with the lowest validation kernel error.

Validation: ``val.samples`` fixed draws (seed ``val.seed``) of spatially invariant
degradations on whole ``val.hr`` images (Set5: not a training image), read with
``estimate(smoothing=None)``: the kernel error is the L2 distance between the true and the
estimated code (= the distance of the two 15×15 kernels in the PCA subspace, the basis being
orthonormal), the noise error |σ̂ − σ| on the 0..255 scale.

    python -m dynsr.train.estimator configs/estimator/x2_cpu.yaml [--resume]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save as save_safetensors
from torch.utils.data import DataLoader

from dynsr.blind import ESTIMATOR_NAME
from dynsr.hardware import describe_cpu
from dynsr.io import atomic_write_bytes, atomic_write_json, atomic_write_text, list_images
from dynsr.models.degradation_estimator import DegradationEstimator, estimator_loss
from dynsr.train.config import resolve_path
from dynsr.train.datasets import HRFolderDataset, SampleIndexSampler
from dynsr.train.ema import EMA
from dynsr.upscale.weights import (
    STORAGE_DTYPES,
    add_manifest_entry,
    default_weights_dir,
    load_state_dict,
    stored_bytes,
)

__all__ = ["train_estimator", "validate"]

STAT_SAMPLES = 256

DEFAULTS = {
    "model": {"channels": 64, "num_blocks": 8, "init": None},
    "data": {"patch_size": 192, "cache": True, "degradation_options": {}},
    "val": {"hr": None, "samples": 40, "seed": 1234, "every": 1000, "patch_size": 192},
    "train": {"iterations": 10000, "batch_size": 16, "lr": 5e-4, "warmup": 300,
              "min_lr": 1e-6, "seed": 0, "threads": None, "precision": "bf16",
              "ema_decay": 0.999, "grad_clip": 1.0},
    "checkpoint": {"every": 250},
    "log": {"every": 50},
}


def load_estimator_config(path: Path, overrides: list[str] | None = None) -> dict:
    """The YAML at ``path`` over :data:`DEFAULTS`; relative data paths resolve against the
    file's folder; ``overrides`` are ``section.key=value`` (YAML values)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    cfg = {"name": raw.get("name", Path(path).stem), "scale": raw["scale"]}
    for section, defaults in DEFAULTS.items():
        given = raw.get(section) or {}
        unknown = set(given) - set(defaults) - ({"paths"} if section == "data" else set())
        if unknown:
            raise ValueError(f"{path}: {section}.{sorted(unknown)[0]}: unknown key")
        cfg[section] = {**defaults, **given}
    for item in overrides or []:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in DEFAULTS or (name not in DEFAULTS[section] and name != "paths"):
            raise ValueError(f"override {item!r}: unknown key")
        cfg[section][name] = yaml.safe_load(value)
    # As dynsr train's recipes: relative to the file, or inside the package (dynsr:PATH).
    base = Path(path).resolve().parent
    cfg["data"]["paths"] = [resolve_path(str(p), base) for p in cfg["data"]["paths"]]
    cfg["val"]["hr"] = resolve_path(cfg["val"]["hr"], base)
    cfg["model"]["init"] = resolve_path(cfg["model"]["init"], base)
    return cfg


def _lr_at(cfg: dict, iteration: int) -> float:
    t = cfg["train"]
    if iteration < t["warmup"]:
        return t["lr"] * (iteration + 1) / t["warmup"]
    progress = (iteration - t["warmup"]) / max(1, t["iterations"] - t["warmup"])
    return t["min_lr"] + 0.5 * (t["lr"] - t["min_lr"]) * (1 + math.cos(math.pi * progress))


def _validation_set(cfg: dict) -> list[dict[str, torch.Tensor]]:
    """Fixed spatially invariant validation samples: random ``val.patch_size`` HR crops of the
    validation images (the seed is not a training seed)."""
    v, scale = cfg["val"], cfg["scale"]
    options = {**cfg["data"]["degradation_options"], "spatially_variant": 0.0}
    paths = list_images([Path(v["hr"])])
    data = HRFolderDataset(paths, scale=scale, seed=v["seed"],
                           patch_size=v["patch_size"], augment=False, cache=True,
                           degradation="blind", degradation_options=options)
    return [data.sample(n) for n in range(v["samples"])]


@torch.no_grad()
def validate(model: DegradationEstimator, samples: list[dict[str, torch.Tensor]]) -> dict:
    """Mean kernel-code L2 error and mean |σ̂ − σ| (0..255) of whole-image estimates."""
    model.eval()
    code_errors, sigma_errors = [], []
    for sample in samples:
        estimate = model.estimate(sample["lr"][None], smoothing=None)
        truth = sample["dmap"][:, 0, 0]
        got = estimate.dmap[0, :, 0, 0]
        code_errors.append(float((got[:-1] - truth[:-1]).norm()))
        sigma_errors.append(abs(float(got[-1] - truth[-1])) * 255.0)
    return {"code_l2": sum(code_errors) / len(code_errors),
            "sigma_abs": sum(sigma_errors) / len(sigma_errors)}


def _weights_bytes(model: DegradationEstimator, cfg: dict, extra: dict) -> bytes:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    architecture = {k: v for k, v in cfg["model"].items() if k != "init"}
    metadata = {"model": "degradation-estimator", "scale": str(cfg["scale"]),
                "model_config": json.dumps(architecture),
                **{k: json.dumps(v) for k, v in extra.items()}}
    return save_safetensors(state, metadata=metadata)


class _EstimatorRun:
    """One training run's model, optimiser, EMA and record, resumed from ``OUT/state.pt``."""

    def __init__(self, cfg: dict, out: Path, resume: bool) -> None:
        t = cfg["train"]
        self.cfg, self.out, self.state_path = cfg, out, out / "state.pt"
        architecture = {k: v for k, v in cfg["model"].items() if k != "init"}
        self.model = DegradationEstimator(cfg["scale"], **architecture)
        resuming = resume and self.state_path.exists()
        if cfg["model"]["init"] and not resuming:
            # Fine-tuning another scale's estimator: the architecture does not depend on s.
            load_state_dict(self.model, cfg["model"]["init"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t["lr"])
        self.ema = EMA(self.model, t["ema_decay"])
        self.start, self.wall, self.history, self.best = 0, 0.0, [], None
        self.best_file: bytes | None = None  # best.safetensors as written
        if resuming:
            state = torch.load(self.state_path, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.ema.module.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.start, self.wall = state["iteration"], state["wall_time_s"]
            self.history, self.best = state["history"], state["best"]
            # The state carries the best weights: a run resumed on another machine from its
            # state alone (run artefacts stay behind) still ends with them.
            self.best_file = state.get("best_file")
            if self.best_file is not None and not (self.out / "best.safetensors").exists():
                atomic_write_bytes(self.out / "best.safetensors", self.best_file)
        self.session_start = time.perf_counter()

    def elapsed(self) -> float:
        return self.wall + time.perf_counter() - self.session_start

    def step(self, batch: dict, iteration: int) -> tuple[float, dict, float]:
        """One optimiser step; returns the loss, its parts and the learning rate."""
        lr_now = _lr_at(self.cfg, iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        with torch.autocast("cpu", dtype=torch.bfloat16,
                            enabled=self.cfg["train"]["precision"] == "bf16"):
            out_map = self.model(batch["lr"])
        loss, parts = estimator_loss(self.model, out_map.float(), batch["dmap"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["train"]["grad_clip"])
        self.optimizer.step()
        self.ema.update(self.model, iteration)
        return float(loss.detach()), parts, lr_now

    def validate(self, samples: list[dict], iteration: int) -> dict:
        """Score the EMA weights; keep them as best.safetensors when they are the best."""
        scores = validate(self.ema.module, samples)
        self.model.train()
        self.history.append({"iteration": iteration, **scores})
        if self.best is None or scores["code_l2"] < self.best["code_l2"]:
            self.best = {"iteration": iteration, **scores}
            self.best_file = _weights_bytes(self.ema.module, self.cfg, {"validation": self.best})
            atomic_write_bytes(self.out / "best.safetensors", self.best_file)
        print(f"estimator x{self.cfg['scale']} it {iteration}: val kernel-code L2 "
              f"{scores['code_l2']:.4f}, sigma error {scores['sigma_abs']:.2f}", flush=True)
        return scores

    def save_state(self, iteration: int) -> None:
        buffer = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "ema": self.ema.module.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "iteration": iteration,
                    "wall_time_s": self.elapsed(), "history": self.history,
                    "best": self.best, "best_file": self.best_file}, buffer)
        atomic_write_bytes(self.state_path, buffer.getvalue())

    def summary(self, iteration: int) -> dict:
        cfg = self.cfg
        return {"name": cfg["name"], "model": "degradation-estimator", "scale": cfg["scale"],
                "iteration": iteration, "iterations": cfg["train"]["iterations"],
                "completed": iteration >= cfg["train"]["iterations"],
                "wall_time_s": round(self.elapsed(), 1), "best": self.best,
                "validation": self.history, "machine": describe_cpu(),
                "torch_version": torch.__version__}


def _training_data(cfg: dict) -> HRFolderDataset:
    # No flips or rotations of the LR: they would turn an anisotropic kernel while its code
    # target stays (the sampler's random kernels cover every orientation already).
    return HRFolderDataset(list_images([Path(p) for p in cfg["data"]["paths"]]),
                           scale=cfg["scale"], seed=cfg["train"]["seed"],
                           patch_size=cfg["data"]["patch_size"], augment=False,
                           cache=cfg["data"]["cache"], degradation="blind",
                           degradation_options=cfg["data"]["degradation_options"])


def train_estimator(cfg: dict, out: Path, resume: bool = False) -> dict:
    """Train (or resume) the estimator described by ``cfg``; results in ``out``."""
    t = cfg["train"]
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t["seed"])
    run = _EstimatorRun(cfg, out, resume)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    data = _training_data(cfg)
    loader = DataLoader(data, batch_size=t["batch_size"],
                        sampler=SampleIndexSampler(t["batch_size"], start_iteration=run.start,
                                                   iterations=t["iterations"]))
    if run.start == 0 and not cfg["model"]["init"]:
        # Output standardisation from the training degradations themselves (samples far
        # beyond any the run draws); fine-tuned runs keep their start's statistics.
        maps = torch.stack([data.sample(10**9 + n)["dmap"] for n in range(STAT_SAMPLES)])
        run.model.set_target_statistics(maps)
        run.ema.module.set_target_statistics(maps)
    val_samples = _validation_set(cfg) if cfg["val"]["hr"] else []
    log_path = out / "log.csv"
    if run.start == 0 or not log_path.exists():
        atomic_write_text(log_path, "iteration,loss,code_l1,sigma_l1,lr,it_per_s,time_s,"
                                    "val_code_l2,val_sigma_abs\n")
    iteration, tick, tick_it = run.start, time.perf_counter(), run.start
    run.model.train()
    for batch in loader:
        loss, parts, lr_now = run.step(batch, iteration)
        iteration += 1
        last = iteration == t["iterations"]
        logged = iteration % cfg["log"]["every"] == 0 or last
        validated = bool(val_samples) and (iteration % cfg["val"]["every"] == 0 or last)
        if logged or validated:
            speed = ""
            if logged:
                now = time.perf_counter()
                speed, tick, tick_it = f"{(iteration - tick_it) / (now - tick):.3f}", now, \
                    iteration
            scores = run.validate(val_samples, iteration) if validated else None
            row = [iteration, f"{loss:.5f}", f"{parts['code_l1']:.5f}",
                   f"{parts['sigma_l1']:.3f}", f"{lr_now:.3g}", speed, f"{run.elapsed():.1f}",
                   f"{scores['code_l2']:.5f}" if scores else "",
                   f"{scores['sigma_abs']:.3f}" if scores else ""]
            with open(log_path, "a") as log:
                log.write(",".join(map(str, row)) + "\n")
        if iteration % cfg["checkpoint"]["every"] == 0 or last:
            run.save_state(iteration)
    summary = run.summary(iteration)
    atomic_write_json(out / "summary.json", summary)
    return summary


def publish_estimator(run: Path, weights_dir: Path | None = None,
                      storage: str = "fp32") -> Path:
    """Ship a finished run's best (EMA) weights: ``degradation-estimator_xS.safetensors`` in
    the weights folder (``storage``: :func:`dynsr.upscale.weights.stored_bytes`), with a
    manifest entry (sha256, architecture, training and validation)."""
    summary = json.loads((run / "summary.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    data = stored_bytes(run / "best.safetensors", storage)
    scale = int(summary["scale"])
    folder = weights_dir or default_weights_dir()
    name = f"degradation-estimator_x{scale}.safetensors"
    atomic_write_bytes(folder / name, data)

    def short(path: str) -> str:  # data folders by their last three parts, not this disk's
        return "/".join(Path(path).parts[-3:])

    entry = {
        "file": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        **({"storage": storage} if storage != "fp32" else {}),
        "config": {k: v for k, v in cfg["model"].items() if k != "init"},
        "training": {
            "run": cfg["name"],
            **({"init": Path(cfg["model"]["init"]).name} if cfg["model"].get("init") else {}),
            "iterations": summary["best"]["iteration"],
            "schedule_iterations": cfg["train"]["iterations"],
            "wall_time_h": round(summary["wall_time_s"] / 3600, 2),
            "data": {"paths": [short(p) for p in cfg["data"]["paths"]],
                     "degradation": "blind", "patch_size": cfg["data"]["patch_size"]},
            "batch_size": cfg["train"]["batch_size"],
            "weights": "ema",
            "machines": [summary.get("machine")],
        },
        "validation": {"data": short(cfg["val"]["hr"]),
                       "samples": cfg["val"]["samples"], "seed": cfg["val"]["seed"],
                       "code_l2": round(summary["best"]["code_l2"], 5),
                       "sigma_abs": round(summary["best"]["sigma_abs"], 4)},
    }
    add_manifest_entry(folder, ESTIMATOR_NAME, scale, entry)
    return folder / name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--publish", action="store_true",
                    help="ship the finished run in --out (its best weights) into dynsr/weights")
    ap.add_argument("--storage", choices=tuple(STORAGE_DTYPES), default="fp32",
                    help="--publish: fp16 stores the weights in float16 (half the size)")
    args = ap.parse_args(argv)
    cfg = load_estimator_config(args.config, args.overrides)
    out = args.out or Path("runs") / cfg["name"]
    if args.publish:
        print(publish_estimator(out, storage=args.storage))
        return 0
    train_estimator(cfg, out, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
