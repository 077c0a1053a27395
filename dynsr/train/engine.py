"""The training loop: from a checked configuration to weights, resumable and validated.

``dynsr train CONFIG.yaml [key=value ...] [--resume] [--out DIR]`` calls :func:`train`; the
configuration keys are documented in :mod:`dynsr.train.config`.

One iteration
-------------
1. ``model.set_progress(iteration / iterations)`` for models that anneal something (DyConvSR's
   attention temperature); the learning rate of this step from :func:`learning_rate`.
2. A batch of samples ``n = (iteration · processes + rank) · batch_size + b`` from
   :func:`dynsr.train.datasets.build_dataset`, whose every random choice (crop, flips,
   degradation, noise) is a function of ``(train.seed, n)`` only.
3. Forward under bf16 autocast when ``train.precision: bf16``: ``model(lr)``;
   ``model(lr, blur=, noise=)`` for non-blind models (UDVD), with ``return_all=True`` when
   the loss is multistage; ``model.forward_prescaled(lr)`` when the data gives LR images
   already at the HR size (DDet on RealSR pairs).
4. Loss in float32 (:mod:`dynsr.train.losses`), backward, gradients averaged over processes
   (DistributedDataParallel), optional clipping of their global norm, Adam/AdamW step, EMA.

Every ``data.val.every`` iterations (and at the end) the EMA weights, or the raw weights
without EMA, are measured on ``data.val`` by the function ``dynsr eval`` uses
(:func:`dynsr.evaluation.evaluate_images`): PSNR-Y / SSIM-Y, SR rounded to 8 bit,
``crop = scale``.

Resuming (:mod:`dynsr.train.state`) and several processes (:mod:`dynsr.train.distributed`)
are described where they are done.

Files written to the output folder (by the first process only)
--------------------------------------------------------------
* ``config.yaml``: the resolved configuration (every default filled in).
* ``state.pt``: everything needed to continue: model, EMA, optimiser, schedule, the RNG
  states of torch / numpy / Python, iteration, best PSNR, validation history, elapsed time,
  configuration, and the bytes of ``best.safetensors`` (run artefacts stay on the machine
  that wrote them, so a run resumed elsewhere from its state alone still ends with its best
  weights). Written atomically (temporary file, fsync, rename) every
  ``checkpoint.every`` iterations, when stopped early, and at the end. Loaded with
  ``torch.load(weights_only=True)``: no pickled code.
* ``model.safetensors``: the final weights (EMA when enabled); ``best.safetensors``: the
  weights at the best validation PSNR (``checkpoint.keep_best``). Metadata (all strings):
  ``model``, ``scale``, ``model_config`` (JSON), ``config`` (the resolved training
  configuration, YAML), ``iterations``, ``wall_time_s``, ``machines`` (JSON: the CPUs the
  run trained on, :func:`dynsr.hardware.describe_cpu`), ``weights`` (``ema`` or ``raw``),
  ``val_psnr_y`` / ``val_ssim_y`` when measured, ``dynsr_version``.
* ``log.csv``: iteration, loss (mean since the previous row), lr, it/s, elapsed seconds and,
  when measured at that iteration, val_psnr_y / val_ssim_y. ``summary.json``: the run at a
  glance (progress, throughput, the machines, best and latest validation).

"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save as safetensors_save
from torch import nn
from tqdm import tqdm

from dynsr import __version__
from dynsr.hardware import describe_cpu
from dynsr.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from dynsr.models import create, get_spec
from dynsr.train.config import (
    Config,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
)
from dynsr.train.datasets import SampleIndexSampler, build_dataset
from dynsr.train.distributed import DistributedContext, torch_settings
from dynsr.train.ema import EMA
from dynsr.train.forward import TrainingForward, resolve_multistage
from dynsr.train.losses import pixel_loss, sr_loss
from dynsr.train.run_log import CsvLog, StopSignals, log_line
from dynsr.train.schedule import learning_rate
from dynsr.train.state import (
    STATE_FORMAT,
    resumable_state,
    rng_state,
    seed_everything,
    set_rng_state,
)
from dynsr.train.validation import Validation
from dynsr.upscale.weights import WeightsError, load_fitting_tensors, load_state_dict

# EMA, the processes, the state file, the log, the schedule and the model's training call
# have their own modules (dynsr.train.ema, .distributed, .state, .run_log, .schedule,
# .forward); this one is the loop.
__all__ = ["TrainResult", "Trainer", "train"]


def _tensors_for_export(module: nn.Module) -> dict[str, torch.Tensor]:
    # Own contiguous CPU copies: safetensors refuses tensors that share memory.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------
# the trainer


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns (on every process)."""

    out_dir: Path
    iteration: int
    completed: bool
    model: nn.Module
    ema_model: nn.Module | None
    best_psnr_y: float | None
    wall_time_s: float
    last_loss: float | None


class _LossWindow:
    """The steps since the last log row: their summed loss and their training time (the
    pauses for validation and checkpoints left out)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.loss, self.steps = 0.0, 0
        self.start, self.pause = time.perf_counter(), 0.0

    def add(self, loss: float) -> None:
        self.loss += loss
        self.steps += 1


class Trainer:
    """One training run: built from a :class:`~dynsr.train.config.Config`; :meth:`run` trains.

    The pieces of an iteration are separate methods (:meth:`next_batch`,
    :meth:`forward_loss`, :meth:`backward`, :meth:`optimizer_step`) so that the benchmark can
    time them; :meth:`train_step` chains them.
    """

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path,
        *,
        resume: bool = False,
        reschedule: bool = False,
        context: DistributedContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ctx = context or DistributedContext()
        self.state_path = self.out_dir / "state.pt"
        t = cfg.train

        state = resumable_state(self.state_path, cfg, resume=resume, reschedule=reschedule)
        self.resumed = state is not None

        # Same seed on every process: identical initial weights (DDP also broadcasts them).
        seed_everything(t.seed)
        self.model, self.forward_module = self._build_model(fresh=state is None)

        self.loss_fn = pixel_loss(t.loss, t.loss_channels)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
        self.optimizer = optimizer_cls(params, lr=learning_rate(t, 0), betas=tuple(t.betas),
                                       weight_decay=t.weight_decay)
        self.ema = EMA(self.model, t.ema_decay) if t.ema_decay is not None else None

        try:
            self.dataset = build_dataset(dict(cfg.data.train), cfg.model.scale, t.seed)
        except (KeyError, TypeError) as err:
            raise ValueError(f"data.train: {err}") from None

        self.iteration = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions
        self.best: dict[str, Any] = {"psnr_y": None, "ssim_y": None, "iteration": None}
        self.val_history: list[dict] = []
        self.schedule_changes: list[dict] = []
        self.last_loss: float | None = None
        self.best_file: bytes | None = None  # best.safetensors as written
        # Every machine the run has trained on (sessions may land on different CPUs), so
        # that the wall time can be read against them.
        self.machines: list[dict] = []
        if state is not None:
            self._load(state)
        machine = describe_cpu()
        if machine not in self.machines:
            self.machines.append(machine)

        self._batches: Iterator[dict] | None = None
        self._session_start: float | None = None
        self._validation: Validation | None = None

    # -- state ----------------------------------------------------------------------------

    def _build_model(self, fresh: bool) -> tuple[nn.Module, nn.Module]:
        """The model (with ``model.init`` loaded into a fresh run's) and the module training
        calls (DistributedDataParallel around it under torchrun)."""
        cfg, t = self.cfg, self.cfg.train
        spec = get_spec(cfg.model.name)
        try:
            model = create(cfg.model.name, scale=cfg.model.scale, **cfg.model.config)
        except TypeError as err:
            raise ValueError(f"model.config: {err}") from None
        if next(model.parameters(), None) is None:
            raise ValueError(f"model {cfg.model.name!r} has no trainable parameters")
        self.init_skipped: list[str] = []
        if cfg.model.init is not None and fresh:
            # A resumed run's state already holds the weights that grew from the init.
            try:
                if cfg.model.init_strict:
                    load_state_dict(model, cfg.model.init)
                else:
                    self.init_skipped = load_fitting_tensors(model, cfg.model.init)
            except WeightsError as err:
                raise ValueError(f"model.init: {err}") from None
        model.to(self.ctx.device)
        if t.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        self.multistage = resolve_multistage(cfg, model)
        forward_module: nn.Module = TrainingForward(
            model, spec.needs_degradation, self.multistage)
        if self.ctx.distributed:
            forward_module = nn.parallel.DistributedDataParallel(
                forward_module,
                device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None)
        return model, forward_module

    def _load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state["ema"] is None:
                raise ValueError("--resume: the saved run has no EMA weights")
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.elapsed_before = float(state["elapsed_s"])
        self.best = dict(state["best"])
        self.val_history = list(state["val_history"])
        self.last_loss = state.get("last_loss")
        self.schedule_changes = list(state.get("schedule_changes", []))
        self.machines = list(state.get("machines", []))  # older states have none
        best_file = state.get("best_file")  # older states have none
        if best_file is not None:
            self.best_file = best_file.numpy().tobytes()
            if self.ctx.is_main and not (self.out_dir / "best.safetensors").exists():
                atomic_write_bytes(self.out_dir / "best.safetensors", self.best_file)

    def state_dict(self) -> dict:
        """The resumable training state (see the module doc)."""
        return {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            # The learning rate is a pure function of the iteration (learning_rate()).
            "scheduler": {"schedule": self.cfg.train.schedule,
                          "lr": learning_rate(self.cfg.train, self.iteration)},
            "rng": rng_state(),
            "best": dict(self.best),
            "val_history": list(self.val_history),
            "last_loss": self.last_loss,
            "schedule_changes": list(self.schedule_changes),
            "elapsed_s": self.elapsed_s,
            "machines": list(self.machines),
            # A uint8 tensor: torch.load(weights_only=True) takes tensors, not bytes.
            "best_file": (None if self.best_file is None else
                          torch.frombuffer(bytearray(self.best_file), dtype=torch.uint8)),
            "config": config_to_dict(self.cfg),
            "dynsr_version": __version__,
            "torch_version": str(torch.__version__),
        }

    def save_state(self) -> None:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(self.state_path, buffer.getvalue())

    @property
    def export_module(self) -> nn.Module:
        """The weights validation and export use: EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def export(self, path: Path, scores: dict | None = None) -> bytes:
        """Write the weights of :attr:`export_module` as safetensors with metadata; return
        the file's bytes."""
        metadata = {
            "format": "pt",
            "model": self.cfg.model.name,
            "scale": str(self.cfg.model.scale),
            "model_config": json.dumps(self.cfg.model.config, sort_keys=True),
            "config": config_to_yaml(self.cfg),
            "iterations": str(self.iteration),
            "wall_time_s": f"{self.elapsed_s:.1f}",
            "machines": json.dumps(self.machines),
            "weights": "ema" if self.ema is not None else "raw",
            "dynsr_version": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if scores is not None:
            metadata["val_psnr_y"] = repr(scores["psnr_y"])
            metadata["val_ssim_y"] = repr(scores["ssim_y"])
        data = safetensors_save(_tensors_for_export(self.export_module), metadata=metadata)
        atomic_write_bytes(path, data)
        return data

    # -- one iteration --------------------------------------------------------------------

    def _make_batches(self) -> Iterator[dict]:
        t = self.cfg.train
        sampler = SampleIndexSampler(t.batch_size, rank=self.ctx.rank,
                                     world_size=self.ctx.world_size,
                                     start_iteration=self.iteration, iterations=t.iterations)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=t.batch_size, sampler=sampler, num_workers=t.workers,
            persistent_workers=t.workers > 0, drop_last=False,
            # Own generator: creating the loader must not draw from the global RNG.
            generator=torch.Generator().manual_seed(t.seed))
        return iter(loader)

    def next_batch(self) -> dict:
        """The samples of the current iteration (this process's share)."""
        if self._batches is None:
            self._batches = self._make_batches()
        try:
            return next(self._batches)
        except StopIteration:
            raise RuntimeError(f"the sampler ran out of samples at iteration "
                               f"{self.iteration}") from None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_loss(self, batch: dict) -> torch.Tensor:
        """Forward pass and loss of ``batch`` (float32 scalar)."""
        device = self.ctx.device
        memory_format = (torch.channels_last if self.cfg.train.channels_last
                         else torch.contiguous_format)
        lr = batch["lr"].to(device).contiguous(memory_format=memory_format)
        hr = batch["hr"].to(device)
        prescaled_flags = batch.get("prescaled")
        prescaled = bool(prescaled_flags.all()) if prescaled_flags is not None else False
        if prescaled_flags is not None and prescaled != bool(prescaled_flags.any()):
            raise ValueError("a batch mixes pre-upscaled and LR-size inputs")
        if prescaled and not hasattr(self.model, "forward_prescaled"):
            raise ValueError(f"data.train gives LR images at the HR size (pre-upscaled), but "
                             f"model {self.cfg.model.name!r} takes LR-size input")
        blur, noise = batch.get("blur"), batch.get("noise")
        with self._autocast():
            outputs = self.forward_module(
                lr, prescaled,
                blur.to(device) if blur is not None else None,
                noise.to(device) if noise is not None else None)
        return sr_loss(outputs, hr, self.loss_fn, self.multistage,
                       self.cfg.train.multistage_smaller)

    def backward(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is {loss.item()} at iteration {self.iteration}: lower "
                             f"train.lr, or set train.grad_clip")
        loss.backward()

    def optimizer_step(self) -> None:
        """Clip, step with this iteration's learning rate, clear gradients, update the EMA."""
        t = self.cfg.train
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        lr = learning_rate(t, self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.iteration)
        self.iteration += 1

    def _set_progress(self) -> None:
        fraction = self.iteration / self.cfg.train.iterations
        for module in (self.model, self.ema.module if self.ema is not None else None):
            if module is not None and hasattr(module, "set_progress"):
                module.set_progress(fraction)

    def train_step(self) -> float:
        """One whole iteration; returns its loss."""
        self._set_progress()
        batch = self.next_batch()
        loss = self.forward_loss(batch)
        self.backward(loss)
        self.optimizer_step()
        return loss.item()

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> dict[str, float] | None:
        """PSNR-Y / SSIM-Y of :attr:`export_module` on ``data.val`` (None without it)."""
        if self.cfg.data.val is None:
            return None
        if self._validation is None:
            self._validation = Validation(self.cfg.data.val, self.cfg.model.name,
                                          self.cfg.model.scale)
        return self._validation.measure(self.export_module)

    # -- the loop -------------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        start = self._session_start
        return self.elapsed_before + (time.perf_counter() - start if start is not None else 0.0)

    def run(self, progress: bool | None = None) -> TrainResult:
        """Train to ``train.iterations`` (or until a stop condition) and write the results.

        ``progress``: force the progress bar on/off (default: ``log.progress``).
        """
        cfg, t, main = self.cfg, self.cfg.train, self.ctx.is_main
        self._session_start = session_start = time.perf_counter()
        if main:
            atomic_write_text(self.out_dir / "config.yaml", _config_header(cfg) +
                              config_to_yaml(cfg))
        log = CsvLog(self.out_dir / "log.csv", self.iteration, append=self.resumed) \
            if main else None
        if progress is None:
            progress = {"always": True, "never": False}.get(cfg.log.progress)
        bar = tqdm(total=t.iterations, initial=self.iteration, unit="it", dynamic_ncols=True,
                   desc=cfg.name, disable=not main or (progress is False) or
                   (progress is None and not sys.stderr.isatty()), leave=True)
        stop_at = t.iterations if t.stop_after is None else min(t.stop_after, t.iterations)

        if (main and cfg.data.val is not None and cfg.data.val.at_start
                and self.iteration == 0 and not self.val_history):
            # The untrained network's score: the baseline the curve rises from.
            scores = self._validation_round()
            log.write({"iteration": 0, "lr": learning_rate(t, 0), "elapsed_s": self.elapsed_s,
                       "val_psnr_y": scores["psnr_y"], "val_ssim_y": scores["ssim_y"]})

        window = _LossWindow()
        stop_reason = None
        with StopSignals() as signals:
            while self.iteration < stop_at:
                loss = self.train_step()
                window.add(loss)
                self.last_loss = loss
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}",
                                lr=f"{learning_rate(t, self.iteration - 1):.3g}", refresh=False)
                # Every process takes the same decisions in the same order (collectives).
                stop = self.ctx.any(
                    signals.requested
                    or (t.time_limit is not None
                        and time.perf_counter() - session_start >= t.time_limit))
                self._after_step(window, log, last=self.iteration >= stop_at or stop,
                                 print_rows=bar.disable)
                if stop:
                    stop_reason = "signal" if signals.requested else "time limit"
                    break
        bar.close()
        return self._finish(log, stop_reason)

    def _after_step(self, window: _LossWindow, log: CsvLog | None, *, last: bool,
                    print_rows: bool) -> None:
        """Validation, the log row and the checkpoint that are due after a step."""
        cfg, t, main, it = self.cfg, self.cfg.train, self.ctx.is_main, self.iteration
        pause_start = time.perf_counter()
        validate_now = cfg.data.val is not None and (
            it % cfg.data.val.every == 0 or it == t.iterations)
        scores = self._validation_round() if validate_now and main else None
        row_due = it % cfg.log.every == 0 or last or validate_now
        if row_due:
            mean_loss = self.ctx.mean(window.loss / window.steps)
            if main:
                # Throughput of training alone: validation and checkpoint time excluded.
                busy = pause_start - window.start - window.pause
                row = {"iteration": it, "loss": mean_loss, "lr": learning_rate(t, it - 1),
                       "it_per_s": window.steps / busy if busy > 0 else math.nan,
                       "elapsed_s": self.elapsed_s,
                       "val_psnr_y": scores["psnr_y"] if scores else None,
                       "val_ssim_y": scores["ssim_y"] if scores else None}
                log.write(row)
                if print_rows:
                    print(log_line(row, t.iterations), flush=True)
        if main and (it % cfg.checkpoint.every == 0 or last):
            self.save_state()
            self._write_summary(completed=it >= t.iterations)
        if row_due:
            window.restart()
        else:
            window.pause += time.perf_counter() - pause_start

    def _finish(self, log: CsvLog | None, stop_reason: str | None) -> TrainResult:
        """The final weights, summary and message of a session that ended or stopped."""
        t = self.cfg.train
        completed = self.iteration >= t.iterations
        if self.ctx.is_main:
            if completed:
                self.export(self.out_dir / "model.safetensors",
                            self.val_history[-1] if self.val_history and
                            self.val_history[-1]["iteration"] == self.iteration else None)
            self._write_summary(completed=completed)
            if log is not None:
                log.close()
            from dynsr.report.curves import plot_after_training  # curves.png if matplotlib
            plot_after_training(self.out_dir)
            note = "finished" if completed else f"stopped ({stop_reason or 'stop_after'})"
            print(f"dynsr train: {note} at iteration {self.iteration}/{t.iterations}; "
                  f"results in {self.out_dir}", file=sys.stderr)
        if completed:
            self._check_ranks_agree()
        return TrainResult(self.out_dir, self.iteration, completed, self.model,
                           self.ema.module if self.ema is not None else None,
                           self.best["psnr_y"], self.elapsed_s, self.last_loss)

    def _validation_round(self) -> dict[str, float]:
        scores = self.validate()
        entry = {"iteration": self.iteration, **scores}
        self.val_history.append(entry)
        better = self.best["psnr_y"] is None or scores["psnr_y"] > self.best["psnr_y"]
        if better:
            self.best = dict(entry)
            if self.cfg.checkpoint.keep_best:
                self.best_file = self.export(self.out_dir / "best.safetensors", scores)
        mark = " (best)" if better else ""
        tqdm.write(f"validation at {self.iteration}: PSNR-Y {scores['psnr_y']:.4f} dB, "
                   f"SSIM-Y {scores['ssim_y']:.5f}{mark}", file=sys.stderr)
        return scores

    def _write_summary(self, completed: bool) -> None:
        t = self.cfg.train
        summary = {
            "name": self.cfg.name,
            "model": self.cfg.model.name,
            "scale": self.cfg.model.scale,
            "iteration": self.iteration,
            "iterations": t.iterations,
            "completed": completed,
            "wall_time_s": round(self.elapsed_s, 3),
            "mean_it_per_s": self.iteration / self.elapsed_s if self.elapsed_s > 0 else None,
            "processes": self.ctx.world_size,
            "machines": self.machines,
            "last_loss": self.last_loss,
            "best": self.best,
            "validation": self.val_history,
            **({"schedule_changes": self.schedule_changes} if self.schedule_changes else {}),
            "weights": "ema" if self.ema is not None else "raw",
            "dynsr_version": __version__,
            "torch_version": str(torch.__version__),
        }
        atomic_write_json(self.out_dir / "summary.json", summary)

    def _check_ranks_agree(self) -> None:
        """DDP keeps replicas identical; a per-tensor checksum proves it at the end."""
        if not self.ctx.distributed:
            return
        sums = torch.stack([p.detach().double().sum() for p in self.model.parameters()])
        sums = sums.to(self.ctx.device)
        low, high = sums.clone(), sums.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError("processes ended with different weights")


def _config_header(cfg: Config) -> str:
    return (f"# resolved configuration of run {cfg.name!r} (dynsr {__version__}); "
            f"all defaults filled in\n")




def train(
    cfg: Config | dict,
    out_dir: str | Path,
    *,
    resume: bool = False,
    reschedule: bool = False,
    progress: bool | None = None,
    on_trainer: Callable[[Trainer], None] | None = None,
) -> TrainResult:
    """Train as ``cfg`` says, writing results to ``out_dir``; see the module doc.

    ``resume``: continue from ``out_dir/state.pt`` when it exists (else start afresh).
    ``reschedule``: on resume, ``train.iterations`` may differ from the saved run's (the
    schedule is stretched or shortened from the saved iteration on, and that is recorded).
    Joins the torchrun process group when ``WORLD_SIZE`` > 1. ``on_trainer`` is called with
    the built trainer before the loop (benchmarks, tests).
    """
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    ctx = DistributedContext.from_environment()
    try:
        with torch_settings(cfg.train.threads):
            trainer = Trainer(cfg, out_dir, resume=resume, reschedule=reschedule,
                              context=ctx)
            if ctx.is_main:
                where = f"resuming at {trainer.iteration}" if trainer.resumed else "starting"
                print(f"dynsr train: {cfg.model.name} x{cfg.model.scale}, {where} "
                      f"(of {cfg.train.iterations} iterations), {ctx.world_size} "
                      f"process(es), output {out_dir}", file=sys.stderr)
                if trainer.init_skipped:
                    print(f"dynsr train: model.init {cfg.model.init}: "
                          f"{len(trainer.init_skipped)} tensors did not fit and stay "
                          f"initialised: {', '.join(trainer.init_skipped)}", file=sys.stderr)
            if on_trainer is not None:
                on_trainer(trainer)
            result = trainer.run(progress=progress)
            # Nobody leaves (and takes the rendezvous store with it) before all are done.
            ctx.barrier()
            return result
    finally:
        ctx.close()
